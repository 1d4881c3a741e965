package dns

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/service"
)

// digPath is Debian's dig (dnsutils); the tests ask the server as a user
// would.
func digPath(t testing.TB) string {
	p, err := exec.LookPath("dig")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dig is not installed (Debian's dnsutils; make deps installs it)")
		}
		t.Skip("dig is not installed (Debian's dnsutils; make deps installs it)")
	}
	return p
}

// dig runs dig against s and returns its answer lines (+short) sorted, or
// the status line's rcode when short is false.
func dig(t *testing.T, s *Server, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(s.Addr())
	argv := append([]string{"@" + host, "-p", port, "+time=2", "+tries=1"}, args...)
	out, err := exec.Command(digPath(t), argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func short(t *testing.T, s *Server, name, typ string) []string {
	t.Helper()
	out := strings.TrimSpace(dig(t, s, "+short", name, typ))
	if out == "" {
		return nil
	}
	lines := strings.Split(out, "\n")
	sort.Strings(lines)
	return lines
}

func status(t *testing.T, s *Server, name, typ string) string {
	t.Helper()
	out := dig(t, s, name, typ)
	i := strings.Index(out, "status: ")
	if i < 0 {
		t.Fatalf("no status in dig's output:\n%s", out)
	}
	rest := out[i+len("status: "):]
	return rest[:strings.IndexByte(rest, ',')]
}

func api(i int, label, host string, port int) service.Instance {
	return service.Instance{ID: "daemon.api[" + label + "]#" + string(rune('a'+i)), Addr: "daemon.api[" + label + "]",
		Service: "api", Label: label, Host: host, Port: port}
}

func serve(t *testing.T, reg *service.Registry) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", "orch.internal.", reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestDigAnswersReadyInstances(t *testing.T) {
	reg := service.New()
	s := serve(t, reg)
	reg.Set(api(0, "0", "127.0.0.1", 8080))
	reg.Set(api(1, "1", "127.0.0.2", 8081))
	reg.Set(api(2, "2", "::1", 8082))

	if got := short(t, s, "api.orch.internal", "A"); strings.Join(got, " ") != "127.0.0.1 127.0.0.2" {
		t.Errorf("A api: %q", got)
	}
	if got := short(t, s, "API.Orch.Internal.", "AAAA"); strings.Join(got, " ") != "::1" {
		t.Errorf("AAAA api (any case): %q", got)
	}
	if got := short(t, s, "0.api.orch.internal", "A"); strings.Join(got, " ") != "127.0.0.1" {
		t.Errorf("A 0.api: %q", got)
	}
	if got := short(t, s, "1.api.orch.internal", "A"); strings.Join(got, " ") != "127.0.0.2" {
		t.Errorf("A 1.api: %q", got)
	}
	want := "0 1 8080 0.api.orch.internal. 0 1 8081 1.api.orch.internal. 0 1 8082 2.api.orch.internal."
	if got := short(t, s, "api.orch.internal", "SRV"); strings.Join(got, " ") != want {
		t.Errorf("SRV api: %q, want %q", got, want)
	}
	if got := short(t, s, "_api._tcp.orch.internal", "SRV"); strings.Join(got, " ") != want {
		t.Errorf("SRV _api._tcp: %q, want %q", got, want)
	}
	if got := short(t, s, "2.api.orch.internal", "SRV"); strings.Join(got, " ") != "0 1 8082 2.api.orch.internal." {
		t.Errorf("SRV 2.api: %q", got)
	}
	// The SRV answer carries the targets' addresses.
	if out := dig(t, s, "api.orch.internal", "SRV"); !strings.Contains(out, "ADDITIONAL SECTION") || !regexp.MustCompile(`(?m)^0\.api\.orch\.internal\.\s+0\s+IN\s+A\s+127\.0\.0\.1$`).MatchString(out) {
		t.Errorf("SRV without the targets' addresses:\n%s", out)
	}
	if got := status(t, s, "api.orch.internal", "A"); got != "NOERROR" {
		t.Errorf("status %s", got)
	}
	if out := dig(t, s, "api.orch.internal", "A"); !strings.Contains(out, " aa") {
		t.Errorf("not authoritative:\n%s", out)
	}
	// A name of the zone that holds no such record: NODATA; no such name:
	// NXDOMAIN; the apex: its SOA.
	if got := status(t, s, "2.api.orch.internal", "A"); got != "NOERROR" || short(t, s, "2.api.orch.internal", "A") != nil {
		t.Errorf("2.api A (it is IPv6): %s %q", got, short(t, s, "2.api.orch.internal", "A"))
	}
	for _, n := range []string{"web.orch.internal", "7.api.orch.internal", "a.b.api.orch.internal"} {
		if got := status(t, s, n, "A"); got != "NXDOMAIN" {
			t.Errorf("%s: %s, want NXDOMAIN", n, got)
		}
	}
	if got := short(t, s, "orch.internal", "SOA"); len(got) != 1 || !strings.HasPrefix(got[0], "ns.orch.internal. hostmaster.orch.internal.") {
		t.Errorf("SOA: %q", got)
	}
}

func TestDigRefusesOutsideTheZone(t *testing.T) {
	reg := service.New()
	s := serve(t, reg)
	reg.Set(api(0, "0", "127.0.0.1", 8080))
	for _, n := range []string{"example.com", "internal", "api.orch.internal.example.com", "."} {
		if got := status(t, s, n, "A"); got != "REFUSED" {
			t.Errorf("%s: %s, want REFUSED", n, got)
		}
	}
	// Over TCP too.
	if out := dig(t, s, "+tcp", "example.com", "A"); !strings.Contains(out, "status: REFUSED") {
		t.Errorf("over TCP:\n%s", out)
	}
	if got := short(t, s, "api.orch.internal", "A"); strings.Join(got, " ") != "127.0.0.1" {
		t.Errorf("A api over UDP after the refusals: %q", got)
	}
}

// An instance leaves DNS when it stops being ready and comes back when it
// is ready again.
func TestDigFollowsReadiness(t *testing.T) {
	reg := service.New()
	s := serve(t, reg)
	a, b := api(0, "0", "127.0.0.1", 8080), api(1, "1", "127.0.0.2", 8081)
	reg.Set(a)
	reg.Set(b)
	reg.Remove(a.ID)
	if got := short(t, s, "api.orch.internal", "A"); strings.Join(got, " ") != "127.0.0.2" {
		t.Errorf("after 0 left: %q", got)
	}
	if got := status(t, s, "0.api.orch.internal", "A"); got != "NXDOMAIN" {
		t.Errorf("0.api after it left: %s", got)
	}
	reg.Remove(b.ID)
	if got := status(t, s, "api.orch.internal", "A"); got != "NXDOMAIN" {
		t.Errorf("api with none ready: %s", got)
	}
	reg.Set(a)
	if got := short(t, s, "api.orch.internal", "A"); strings.Join(got, " ") != "127.0.0.1" {
		t.Errorf("after 0 came back: %q", got)
	}
	if got := short(t, s, "0.api.orch.internal", "SRV"); strings.Join(got, " ") != "0 1 8080 0.api.orch.internal." {
		t.Errorf("0.api SRV after it came back: %q", got)
	}
}

func TestListenInUse(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_, err = Listen(pc.LocalAddr().String(), "", service.New())
	var le *service.ListenError
	if !errors.As(err, &le) || le.Listener != "dns" || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("got %v, want a ListenError of dns, address in use", err)
	}
	want := `orch { dns { listen = "` + pc.LocalAddr().String() + `" } }: address already in use`
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	// The one in use still works; nothing else was bound.
	if pc.LocalAddr() == nil {
		t.Fatal("lost")
	}
}

// TestCloseRightAfterListen: a server closed at once (orch up stopping as
// it starts) releases its address and returns; it used to find its
// servers not started yet and then wait for them forever.
func TestCloseRightAfterListen(t *testing.T) {
	for range 50 {
		s, err := Listen("127.0.0.1:0", "orch.internal.", service.New())
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Close right after Listen did not return in 30 s")
		}
	}
}
