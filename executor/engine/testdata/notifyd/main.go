// Command notifyd is a test daemon that speaks sd_notify through
// go-systemd: it says READY=1 after -ready-after, then WATCHDOG=1 every
// -watchdog-every (half of WATCHDOG_USEC when 0 and the variable is set)
// until -watchdog-stop-after, and writes a line to -mark when it is ready.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

func main() {
	readyAfter := flag.Duration("ready-after", 0, "wait this long before READY=1")
	every := flag.Duration("watchdog-every", 0, "WATCHDOG=1 this often (0: half of WATCHDOG_USEC, if set)")
	stopAfter := flag.Duration("watchdog-stop-after", 0, "stop sending WATCHDOG=1 after this long (0: never)")
	status := flag.String("status", "", "STATUS= to send with READY=1")
	mark := flag.String("mark", "", "append \"ready <pid>\" to this file once READY=1 is sent")
	flag.Parse()

	if os.Getenv("NOTIFY_SOCKET") == "" {
		fmt.Fprintln(os.Stderr, "notifyd: no NOTIFY_SOCKET")
		os.Exit(2)
	}
	time.Sleep(*readyAfter)
	msg := daemon.SdNotifyReady
	if *status != "" {
		msg += "\nSTATUS=" + *status
	}
	if ok, err := daemon.SdNotify(false, msg); !ok || err != nil {
		fmt.Fprintln(os.Stderr, "notifyd: READY=1 not sent:", ok, err)
		os.Exit(3)
	}
	if *mark != "" {
		f, err := os.OpenFile(*mark, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err == nil {
			fmt.Fprintf(f, "ready %d %d\n", os.Getpid(), time.Now().UnixNano())
			f.Close()
		}
	}
	if *every == 0 {
		if d, err := daemon.SdWatchdogEnabled(false); err == nil && d > 0 {
			*every = d / 2
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if *every <= 0 {
		<-stop
		return
	}
	start := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-time.After(*every):
		}
		if *stopAfter > 0 && time.Since(start) > *stopAfter {
			continue
		}
		daemon.SdNotify(false, daemon.SdNotifyWatchdog)
	}
}
