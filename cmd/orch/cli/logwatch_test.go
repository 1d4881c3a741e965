package cli

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/engine"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/spec"
	"golang.org/x/sys/unix"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// startForwarder starts a log forwarder on a new state directory's logs
// directory, writing to a file that output reads meanwhile.
func startForwarder(t *testing.T) (lf *logForwarder, logs string, output func() string) {
	t.Helper()
	state := t.TempDir()
	logs = filepath.Join(state, "logs")
	if err := os.Mkdir(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	output = func() string {
		b, err := os.ReadFile(out.Name())
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	lf = newLogForwarder(out, &spec.Config{}, state, false, true, false)
	lf.start()
	return lf, logs, output
}

// The forwarder looks at a log when the watch says it changed, and not
// at the logs that say nothing: idle logs cost orch up nothing, however
// many there are. A log created after its follower began, and one
// rotated, are followed.
func TestForwarderWatchesLogs(t *testing.T) {
	lf, logs, output := startForwarder(t)
	defer lf.stop()
	addr := func(n string) spec.Address { return spec.Address{Kind: spec.KindDaemon, Name: n} }
	path := func(n string) string { return filepath.Join(logs, process.FileName(addr(n))+".log") }

	// "quiet" and "loud" exist; "late" is created after its follower.
	const idle = 50
	for i := 0; i < idle; i++ {
		appendFile(t, path("quiet"+string(rune('a'+i%26))+string(rune('a'+i/26))), "")
	}
	appendFile(t, path("loud"), "")
	for i := 0; i < idle; i++ {
		lf.event(engine.Event{Type: engine.EventStarted, Addr: addr("quiet" + string(rune('a'+i%26)) + string(rune('a'+i/26)))})
	}
	lf.event(engine.Event{Type: engine.EventStarted, Addr: addr("loud")})
	lf.event(engine.Event{Type: engine.EventStarted, Addr: addr("late")})

	appendFile(t, path("loud"), "one\n")
	waitFor(t, `"one"`, func() bool { return strings.Contains(output(), "loud") && strings.Contains(output(), "| one") })
	lf.mu.Lock()
	watched := lf.watch != nil
	lf.mu.Unlock()
	if !watched {
		t.Fatal("the forwarder did not watch the logs directory (inotify)")
	}

	// Once the log that was written has had a look with nothing new (its
	// watch armed), 20 ticks of silence: no log is looked at.
	cold := func() bool {
		lf.mu.Lock()
		defer lf.mu.Unlock()
		return len(lf.hot) == 0
	}
	waitFor(t, "look that found nothing new", cold)
	lf.mu.Lock()
	before, tick := lf.looks, lf.ticks
	lf.mu.Unlock()
	waitFor(t, "20 ticks", func() bool {
		lf.mu.Lock()
		defer lf.mu.Unlock()
		return lf.ticks >= tick+20
	})
	lf.mu.Lock()
	after := lf.looks
	lf.mu.Unlock()
	if after != before {
		t.Errorf("%d looks at %d silent logs over 20 ticks, want none", after-before, idle+1)
	}

	// A write is seen, and only its log is looked at: once for what it
	// wrote, then once at the next tick, twice (before and after its watch
	// is armed), when it had nothing more.
	appendFile(t, path("loud"), "two\n")
	waitFor(t, `"two"`, func() bool { return strings.Contains(output(), "| two") })
	waitFor(t, "look that found nothing new", cold)
	lf.mu.Lock()
	if n := lf.looks - after; n > 4 {
		t.Errorf("%d looks for one write to one log of %d", n, idle+1)
	}
	lf.mu.Unlock()

	// A log that appears after its follower began.
	appendFile(t, path("late"), "hello\n")
	waitFor(t, `"hello"`, func() bool {
		return strings.Contains(output(), "late") && strings.Contains(output(), "| hello")
	})

	// Rotation: the rest of the old log, then the new one.
	appendFile(t, path("loud"), "three\n")
	if err := os.Rename(path("loud"), path("loud")+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path("loud"), "four\n")
	waitFor(t, `"three" and "four"`, func() bool {
		s := output()
		i, j := strings.Index(s, "| three"), strings.Index(s, "| four")
		return i >= 0 && j > i
	})
	// Written again after the rotation: the new log's watch is armed.
	appendFile(t, path("loud"), "five\n")
	waitFor(t, `"five"`, func() bool { return strings.Contains(output(), "| five") })

	// The logs directory replaced under orch up (its state directory
	// removed and made anew): the logs there now are followed, and
	// watched again.
	if err := os.Rename(logs, logs+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path("loud"), "six\n")
	waitFor(t, `"six"`, func() bool { return strings.Contains(output(), "| six") })
	waitFor(t, "watch of the new logs directory", func() bool {
		lf.mu.Lock()
		defer lf.mu.Unlock()
		return lf.watch != nil
	})
	waitFor(t, "look that found nothing new", cold)
	appendFile(t, path("late"), "seven\n")
	waitFor(t, `"seven"`, func() bool { return strings.Contains(output(), "| seven") })
}

// An overflow of the kernel's queue marks every log; a rotated log's
// name marks the log it came from; other names mark nothing; the logs
// directory moved away ends what the watch can tell.
func TestLogWatchMarks(t *testing.T) {
	w := &logWatch{dirWd: 1, wdName: map[int32]string{7: "daemon.a.log"}, armed: map[string]int32{"daemon.a.log": 7, "daemon.b.log": 9}, changed: map[string]bool{}}
	ev := func(wd int32, mask uint32, name string) []byte {
		n := 0
		if name != "" {
			n = (len(name) + 1 + 15) / 16 * 16
		}
		b := make([]byte, unix.SizeofInotifyEvent+n)
		binary.NativeEndian.PutUint32(b[0:], uint32(wd))
		binary.NativeEndian.PutUint32(b[4:], mask)
		binary.NativeEndian.PutUint32(b[12:], uint32(n))
		copy(b[unix.SizeofInotifyEvent:], name)
		return b
	}
	var b []byte
	b = append(b, ev(7, unix.IN_MODIFY, "")...)
	b = append(b, ev(7, unix.IN_IGNORED, "")...)
	b = append(b, ev(1, unix.IN_CREATE, "daemon.b.log")...)
	b = append(b, ev(1, unix.IN_MOVED_TO, "daemon.c.log.3")...)
	b = append(b, ev(1, unix.IN_CREATE, "registry")...)
	b = append(b, ev(1, unix.IN_CREATE, "daemon.d.log.x")...)
	w.mark(b)
	got := map[string]bool{}
	if w.take(got) || w.ended() {
		t.Error("take said every log, or the watch ended, without an overflow or the directory's end")
	}
	want := []string{"daemon.a.log", "daemon.b.log", "daemon.c.log"}
	if len(got) != len(want) {
		t.Errorf("marked %v, want %v", got, want)
	}
	for _, n := range want {
		if !got[n] {
			t.Errorf("%s not marked (marked: %v)", n, got)
		}
	}
	if _, ok := w.wdName[7]; ok {
		t.Error("a fired one-shot watch is still known after IN_IGNORED")
	}
	if len(w.armed) != 0 {
		t.Errorf("watches still taken as armed: %v (daemon.a.log's fired; daemon.b.log's name appeared anew)", w.armed)
	}
	w.mark(ev(-1, unix.IN_Q_OVERFLOW, ""))
	if !w.take(got) {
		t.Error("an overflow did not mark every log")
	}
	w.mark(ev(1, unix.IN_MOVE_SELF, ""))
	if !w.ended() {
		t.Error("the logs directory moved away did not end the watch")
	}
}

// TestLogWatchCloseHandsOver: close gives its inotify descriptor to later
// before its own close, so that the copy taken there (the log daemon's,
// in orch up) keeps the instance open past it: orch's close is then not
// the last, which would wait for the kernel's SRCU grace period.
func TestLogWatchCloseHandsOver(t *testing.T) {
	dir := t.TempDir()
	w, err := newLogWatch(dir)
	if err != nil {
		t.Fatalf("newLogWatch: %v", err)
	}
	kept := -1
	w.close(func(fd int) error {
		var err error
		kept, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		return err
	})
	if kept < 0 {
		t.Fatal("close did not hand its descriptor to later")
	}
	defer unix.Close(kept)
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(kept))
	if err != nil || target != "anon_inode:inotify" {
		t.Fatalf("the copy handed over is %q (%v), want the inotify instance", target, err)
	}
	// The instance still watches the directory: an event queued after
	// close is there to read from the copy.
	if err := os.WriteFile(filepath.Join(dir, "daemon.a.log"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	// Waited for, at most 10 s (the descriptor is non-blocking).
	pfd := []unix.PollFd{{Fd: int32(kept), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(pfd, 10_000)
		if err == nil {
			break
		}
		if err != unix.EINTR {
			t.Fatalf("poll of the copy after close: %v", err)
		}
	}
	n, err := unix.Read(kept, buf)
	if err != nil || n < unix.SizeofInotifyEvent {
		t.Fatalf("read of the copy after close: %d bytes, %v", n, err)
	}
}

// orch up's last look at the logs, when it stops, reads what was written
// just before (a line, and a line not ended), and looks only at the logs
// the watch marked: not at every idle one.
func TestForwarderLastLookReadsMarkedOnly(t *testing.T) {
	lf, logs, output := startForwarder(t)
	addr := func(i int) spec.Address { return spec.Address{Kind: spec.KindDaemon, Name: "d" + strconv.Itoa(i)} }
	path := func(i int) string { return filepath.Join(logs, process.FileName(addr(i))+".log") }
	const n = 200
	for i := 0; i < n; i++ {
		appendFile(t, path(i), "")
		lf.event(engine.Event{Type: engine.EventStarted, Addr: addr(i)})
	}
	appendFile(t, path(0), "hello\n")
	waitFor(t, `"hello"`, func() bool { return strings.Contains(output(), "| hello") })
	// Every log has had a look that found nothing: each one's watch waits.
	waitFor(t, "every watch armed", func() bool {
		lf.mu.Lock()
		defer lf.mu.Unlock()
		if len(lf.hot) > 0 || lf.watch == nil {
			return false
		}
		lf.watch.mu.Lock()
		defer lf.watch.mu.Unlock()
		return len(lf.watch.armed) == n
	})
	appendFile(t, path(7), "last words\n")
	appendFile(t, path(9), "no newline")
	lf.mu.Lock()
	before := lf.looks
	lf.mu.Unlock()
	lf.stop()
	got := output()
	for _, want := range []string{"| last words", "| no newline"} {
		if !strings.Contains(got, want) {
			t.Errorf("the last look missed %q:\n%s", want, got)
		}
	}
	if looks := lf.looks - before; looks > 10 {
		t.Errorf("the last look read %d of %d logs, two of which had something new", looks, n)
	}
	if ents, _ := os.ReadDir(logs); len(ents) != n {
		t.Errorf("%d files in the logs directory after the stop, want the %d logs", len(ents), n)
	}
}
