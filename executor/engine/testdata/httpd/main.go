// Command httpd is a tiny HTTP server for the engine's health-check tests:
// GET /healthz answers 200, or 503 while the file named by -sick exists;
// GET / answers its -id. It listens on -addr (127.0.0.1 only) after
// -delay, with SO_REUSEPORT under -reuseport (so that a new instance can
// bind beside the old one, as servers do for a zero-downtime replace; its
// health is then served on an -health-addr of its own, since a probe of
// the shared port may reach either), and
// exits on SIGTERM after closing its listener (at once under -abrupt).
// GET /slow?d=1s answers its head at once and its body after d.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	sick := flag.String("sick", "", "answer 503 while this file exists")
	delay := flag.Duration("delay", 0, "wait this long before listening")
	reuse := flag.Bool("reuseport", false, "listen with SO_REUSEPORT")
	id := flag.String("id", "", "what GET / answers")
	healthAddr := flag.String("health-addr", "", "serve /healthz on this address of its own (an admin port) instead")
	abrupt := flag.Bool("abrupt", false, "exit at once on SIGTERM, dropping the requests in flight")
	flag.Parse()
	time.Sleep(*delay)
	mux := http.NewServeMux()
	hmux := mux
	if *healthAddr != "" {
		hmux = http.NewServeMux()
	}
	hmux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if *sick != "" {
			if _, err := os.Stat(*sick); err == nil {
				http.Error(w, "sick", http.StatusServiceUnavailable)
				return
			}
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(*id + "\n")) })
	// GET /slow?d=DURATION answers its head at once and "done" after d.
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		w.Header().Set("Content-Length", "5")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		time.Sleep(d)
		w.Write([]byte("done\n"))
	})
	lc := net.ListenConfig{}
	if *reuse {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	ln, err := lc.Listen(context.Background(), "tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// The health port opens only once the service port is bound: were it
	// served first, a check could pass while the service port still
	// refuses, and a replace would stop the old instance too early.
	if *healthAddr != "" {
		hln, err := net.Listen("tcp", *healthAddr)
		if err != nil {
			log.Fatal(err)
		}
		go func() { log.Fatal(http.Serve(hln, hmux)) }()
	}
	srv := &http.Server{Handler: mux}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM)
		<-ch
		if *abrupt {
			os.Exit(0)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx) // stop accepting, finish what is in flight
		os.Exit(0)
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	select {}
}
