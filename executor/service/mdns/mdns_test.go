package mdns

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	hmdns "github.com/hashicorp/mdns"
	"github.com/miekg/dns"
	"github.com/orch-dev/orch/executor/service"
)

// TestMain doubles as the browser that the test runs in a second network
// namespace (ORCH_MDNS_BROWSE=<interface>:<service type>).
func TestMain(m *testing.M) {
	if spec := os.Getenv("ORCH_MDNS_BROWSE"); spec != "" {
		os.Exit(browse(spec))
	}
	os.Exit(m.Run())
}

// browse listens on the link for announcements of a service type and
// prints "add <instance> <port> <ip>" and "bye <instance>" for each; once
// it saw one, it asks for the type itself (a browser's query, answered by
// the responder) and prints "found <instance> <port> <ip>". It exits after
// the first goodbye, or after 30 s.
func browse(spec string) int {
	ifname, typ, _ := strings.Cut(spec, ":")
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	c, err := net.ListenMulticastUDP("udp4", ifi, group)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready")
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 9000)
	queried := false
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		m := new(dns.Msg)
		if m.Unpack(buf[:n]) != nil || !m.Response {
			continue
		}
		var ip string
		for _, rr := range append(m.Answer, m.Extra...) {
			if a, ok := rr.(*dns.A); ok {
				ip = a.A.String()
			}
		}
		for _, rr := range m.Answer {
			srv, ok := rr.(*dns.SRV)
			if !ok || !strings.HasSuffix(srv.Hdr.Name, "."+typ+".local.") {
				continue
			}
			inst := strings.TrimSuffix(srv.Hdr.Name, "."+typ+".local.")
			if srv.Hdr.Ttl == 0 {
				fmt.Println("bye", inst)
				return 0
			}
			fmt.Println("add", inst, srv.Port, ip)
			if !queried {
				queried = true
				entries := make(chan *hmdns.ServiceEntry, 16)
				go func() {
					for e := range entries {
						fmt.Println("found", strings.TrimSuffix(e.Name, "."+typ+".local."), e.Port, e.AddrV4)
					}
				}()
				p := hmdns.DefaultParams(typ)
				p.Interface, p.Entries, p.Timeout, p.WantUnicastResponse, p.DisableIPv6 = ifi, entries, 2*time.Second, true, true
				p.Logger = log.New(io.Discard, "", 0)
				if err := hmdns.Query(p); err != nil {
					fmt.Println("error query", err)
				}
				close(entries)
			}
		}
	}
}

// netns is a network namespace linked to this one by a veth pair: the
// outside end in the test's namespace, the inside end in the new one.
type netns struct {
	name, outside, inside string
}

func run(t *testing.T, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// newNetns creates the namespace and the veth pair (10.231.N.1/24 outside,
// .2 inside), removed when the test ends. Without root or iproute2 it
// fails in CI and skips elsewhere.
func newNetns(t *testing.T) *netns {
	t.Helper()
	ip, err := exec.LookPath("ip")
	why := ""
	switch {
	case err != nil:
		why = "ip (Debian's iproute2) is not installed; make deps installs it"
	case os.Geteuid() != 0:
		why = "creating a network namespace needs root"
	}
	id := rand.IntN(200) + 20
	n := &netns{name: fmt.Sprintf("orchmdns%d", id), outside: fmt.Sprintf("omo%d", id), inside: fmt.Sprintf("omi%d", id)}
	if why == "" {
		if out, err := exec.Command(ip, "netns", "add", n.name).CombinedOutput(); err != nil {
			why = fmt.Sprintf("ip netns add: %v: %s", err, out)
		}
	}
	if why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot create a network namespace: %s", why)
		}
		t.Skipf("cannot create a network namespace: %s", why)
	}
	t.Cleanup(func() {
		exec.Command(ip, "link", "del", n.outside).Run()
		exec.Command(ip, "netns", "del", n.name).Run()
	})
	run(t, ip, "link", "add", n.outside, "type", "veth", "peer", "name", n.inside)
	run(t, ip, "link", "set", n.inside, "netns", n.name)
	run(t, ip, "addr", "add", fmt.Sprintf("10.231.%d.1/24", id), "dev", n.outside)
	run(t, ip, "link", "set", n.outside, "up")
	run(t, ip, "-n", n.name, "addr", "add", fmt.Sprintf("10.231.%d.2/24", id), "dev", n.inside)
	run(t, ip, "-n", n.name, "link", "set", n.inside, "up")
	run(t, ip, "-n", n.name, "link", "set", "lo", "up")
	// Multicast leaves by the link (the namespace has no default route).
	run(t, ip, "-n", n.name, "route", "add", "224.0.0.0/4", "dev", n.inside)
	return n
}

// A browser in another network namespace, across a veth link, sees the
// instance announced once it is ready, finds it by asking, and sees its
// goodbye once it is no longer ready.
func TestBrowseFromAnotherNamespace(t *testing.T) {
	ns := newNetns(t)
	cmd := exec.Command("ip", "netns", "exec", ns.name, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ORCH_MDNS_BROWSE="+ns.inside+":_orchtest._tcp")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the browser ended while waiting for %s", what)
			}
			return l
		case <-time.After(20 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
		}
		return ""
	}
	if l := next("the browser to be ready"); l != "ready" {
		t.Fatalf("browser: %q", l)
	}
	reg := service.New()
	a, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	inst := service.Instance{ID: "daemon.api[0]#x", Addr: "daemon.api[0]", Service: "api", Label: "0", Host: "127.0.0.1", Port: 8080, MDNS: "_orchtest._tcp"}
	name := a.InstanceName(inst)
	reg.Set(inst)
	sawAdd, sawFound := false, false
	for !sawAdd || !sawFound {
		l := next("the announcement and the answer to the browser's query")
		f := strings.Fields(l)
		switch {
		case len(f) == 4 && f[0] == "add" && f[1] == name && f[2] == "8080":
			sawAdd = true
		case len(f) == 4 && f[0] == "found" && f[1] == name && f[2] == "8080":
			sawFound = true
			if f[3] == "<nil>" {
				t.Errorf("found without an address: %q", l)
			}
		case f[0] == "error":
			t.Fatalf("browser: %s", l)
		case f[0] == "add" || f[0] == "found":
			// the second announcement, or another address
		default:
			t.Fatalf("browser: %q, want add/found %s 8080", l, name)
		}
	}
	reg.Remove(inst.ID)
	for {
		l := next("the goodbye")
		if l == "bye "+name {
			break
		}
		if !strings.HasPrefix(l, "add ") && !strings.HasPrefix(l, "found ") {
			t.Fatalf("browser: %q, want bye %s", l, name)
		}
	}
}
