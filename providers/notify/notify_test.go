package notify

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/spec"
)

func send(t *testing.T, path, msg string) {
	t.Helper()
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
}

func waitSeq(t *testing.T, s *Socket, seq uint64) State {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		st, wake := s.State()
		if st.Seq >= seq {
			return st
		}
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("no message %d", seq)
		}
	}
}

func TestReadyStatusWatchdogAndCredentials(t *testing.T) {
	p, err := Path(t.TempDir(), spec.Address{Kind: spec.KindDaemon, Name: "api"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listen(p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if again, err := Listen(p); err != nil || again != s {
		t.Fatalf("a second Listen of one path: %p %v, want the same socket", again, err)
	} else {
		again.Close()
	}
	send(t, p, "READY=1\nSTATUS=serving")
	st := waitSeq(t, s, 1)
	if st.Ready == nil || st.Ready.Pid != os.Getpid() || st.Status != "serving" {
		t.Fatalf("state %+v", st)
	}
	if !st.Ready.From(os.Getpid(), "") || st.Ready.From(os.Getpid()+100000, "") {
		t.Fatalf("From: %+v", st.Ready)
	}
	send(t, p, "WATCHDOG=1")
	st = waitSeq(t, s, 2)
	if m := st.Messages[len(st.Messages)-1]; m.Fields["WATCHDOG"] != "1" || m.From.Pid != os.Getpid() {
		t.Fatalf("message %+v", m)
	}
}

// An orch started later binds the socket again at the same path and
// knows the daemon said READY=1 to the one before.
func TestReadySurvivesRebind(t *testing.T) {
	p, _ := Path(t.TempDir(), spec.Address{Kind: spec.KindDaemon, Name: "api"})
	s, err := Listen(p)
	if err != nil {
		t.Fatal(err)
	}
	send(t, p, "READY=1")
	waitSeq(t, s, 1)
	s.Close()
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the socket file went with the socket: %v", err)
	}
	s2, err := Listen(p)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if st, _ := s2.State(); st.Ready == nil || st.Ready.Pid != os.Getpid() {
		t.Fatalf("READY=1 forgotten across a rebind: %+v", st)
	}
	send(t, p, "STATUS=again") // the same path works again
	waitSeq(t, s2, 1)
	s2.Reset()
	if st, _ := s2.State(); st.Ready != nil {
		t.Fatal("Reset kept READY=1")
	}
}

func TestPathTooLong(t *testing.T) {
	_, err := Path("/"+strings.Repeat("d", 120), spec.Address{Kind: spec.KindDaemon, Name: "api"})
	if err == nil || !strings.Contains(err.Error(), "daemon.api") {
		t.Fatalf("err = %v", err)
	}
}

func TestListenRefusesNonSocket(t *testing.T) {
	p, _ := Path(t.TempDir(), spec.Address{Kind: spec.KindDaemon, Name: "api"})
	os.MkdirAll(filepath.Dir(p), 0o700)
	os.WriteFile(p, []byte("x"), 0o600)
	if _, err := Listen(p); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
}

// TestBound: Bound says whether this process holds any socket, as long
// as a Listen is not closed.
func TestBound(t *testing.T) {
	if Bound() {
		t.Fatal("Bound before any Listen")
	}
	s, err := Listen(filepath.Join(t.TempDir(), SocketName))
	if err != nil {
		t.Fatal(err)
	}
	if !Bound() {
		t.Fatal("not Bound while a socket is listening")
	}
	s.Close()
	if Bound() {
		t.Fatal("Bound after the last Close")
	}
}
