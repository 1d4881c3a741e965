package process_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/process"
)

// TestListens: a daemon that listens on a port is told from one that
// does not, and from a port this test process holds itself.
func TestListens(t *testing.T) {
	e := newEnv(t, process.Options{})
	theirs := freePort(t, "tcp")
	mine, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	ours := mine.Addr().(*net.TCPAddr).Port
	server := res("server", "python3", "-c", fmt.Sprintf(
		"import socket,time; s=socket.socket(); s.bind(('127.0.0.1', %d)); s.listen(); time.sleep(60)", theirs))
	hs, _ := e.start(server)
	hq, _ := e.start(res("quiet", "sleep", "60"))
	listens := func(name string, h providers.Handle, port int) bool {
		t.Helper()
		ok, err := e.p.Listens(context.Background(), providers.ListensRequest{Addr: addr(name), Handle: h, Port: port})
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !poll(10*time.Second, func() bool { return listens("server", hs, theirs) }) {
		t.Fatalf("the server daemon does not listen on %d after 10 s", theirs)
	}
	if listens("quiet", hq, theirs) {
		t.Error("a daemon that listens on nothing is said to listen on the server's port")
	}
	if listens("server", hs, ours) {
		t.Error("the server daemon is said to listen on the test's own port")
	}
}

// TestListensWithoutCgroup: without a cgroup, the daemon's process group
// is looked at: a server its shell started as a child (no exec) counts.
func TestListensWithoutCgroup(t *testing.T) {
	e := newEnv(t, process.Options{NoCgroups: true})
	port := freePort(t, "tcp")
	r := res("wrapped", "sh", "-c", fmt.Sprintf(
		"python3 -c \"import socket,time; s=socket.socket(); s.bind(('127.0.0.1', %d)); s.listen(); time.sleep(60)\"; true", port))
	h, _ := e.start(r)
	listens := func() bool {
		ok, err := e.p.Listens(context.Background(), providers.ListensRequest{Addr: addr("wrapped"), Handle: h, Port: port})
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !poll(10*time.Second, listens) {
		t.Fatalf("the server its shell started does not count as listening on %d after 10 s", port)
	}
}

// TestListensUDP: a daemon with a UDP socket bound to the port listens
// there when the request counts UDP, and not otherwise (a TCP check).
func TestListensUDP(t *testing.T) {
	e := newEnv(t, process.Options{})
	port := freePort(t, "udp")
	h, _ := e.start(res("dns", "python3", "-c", fmt.Sprintf(
		"import socket,time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', %d)); time.sleep(60)", port)))
	listens := func(udp bool) bool {
		t.Helper()
		ok, err := e.p.Listens(context.Background(), providers.ListensRequest{Addr: addr("dns"), Handle: h, Port: port, UDP: udp})
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !poll(10*time.Second, func() bool { return listens(true) }) {
		t.Fatalf("the daemon's UDP socket on %d is not seen after 10 s", port)
	}
	if listens(false) {
		t.Error("a UDP socket counts as a TCP listener")
	}
}

// freePort is a port of 127.0.0.1 free for network ("tcp" or "udp") a
// moment ago, for a daemon to bind.
func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
