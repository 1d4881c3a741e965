// Package etcdtest starts a real etcd cluster (Debian's etcd-server, the
// etcd binary on PATH) for tests: three members on 127.0.0.1, .2 and .3,
// their data in the test's temporary directory, each stopped by its pid
// when the test ends.
package etcdtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Member is one etcd process of a Cluster.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	dir       string
	args      []string
	mu        sync.Mutex
	cmd       *exec.Cmd
	out       *bytes.Buffer
	waitDone  chan struct{}
}

// Cluster is a running etcd cluster.
type Cluster struct {
	t       testing.TB
	Members []*Member
}

// Endpoints are the client URLs of every member.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Start starts a cluster of n members and waits until it answers. When
// the etcd binary is missing it fails the test if CI=true, and skips it
// otherwise.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	ips := make([]string, n)
	for i := range ips {
		ips[i] = fmt.Sprintf("127.0.0.%d", i+1)
	}
	return StartOn(t, ips...)
}

// StartOn is Start with one member per address of ips (the same address
// may come more than once: each member has ports of its own), for the
// tests whose hosts reach etcd through a network of their own (the
// gateway of a Docker network).
func StartOn(t testing.TB, ips ...string) *Cluster {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("etcd is not installed (Debian package etcd-server; make deps installs it): %v", err)
		}
		t.Skipf("etcd is not installed (Debian package etcd-server; make deps installs it): %v", err)
	}
	// The ports are picked free and let go before etcd binds them, so
	// another process may take one meanwhile (a busy machine running
	// other tests): a member that exits for an address in use has the
	// whole cluster started again on new ports, a few times.
	for attempt := 1; ; attempt++ {
		c := startCluster(t, bin, ips)
		t.Cleanup(c.Stop)
		err := c.waitStarted(90 * time.Second)
		if err == nil {
			return c
		}
		c.Stop()
		if attempt < 3 && c.portTaken() {
			t.Logf("etcd: a port was taken before a member bound it (%v); starting the cluster again on new ports", err)
			continue
		}
		msg := fmt.Sprintf("etcd cluster did not start: %v", err)
		for _, m := range c.Members {
			msg += fmt.Sprintf("\n--- %s:\n%s", m.Name, m.Output())
		}
		t.Fatal(msg)
	}
}

// startCluster starts one member per address of ips, on ports free when
// they were picked, in data directories of their own.
func startCluster(t testing.TB, bin string, ips []string) *Cluster {
	c := &Cluster{t: t}
	var initial []string
	for i, ip := range ips {
		m := &Member{Name: fmt.Sprintf("m%d", i+1),
			ClientURL: "http://" + pickAddr(t, ip), PeerURL: "http://" + pickAddr(t, ip),
			dir: filepath.Join(t.TempDir(), "etcd")}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	token := fmt.Sprintf("orch-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	for _, m := range c.Members {
		m.args = []string{bin, "--name", m.Name, "--data-dir", m.dir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			// Fast elections, so that tests of a killed member are quick.
			"--heartbeat-interval", "100", "--election-timeout", "1000",
			"--log-level", "warn", "--logger", "zap"}
		m.start(t)
	}
	return c
}

// waitStarted is WaitHealthy for a cluster just started, which gives up
// at once when a member has exited.
func (c *Cluster) waitStarted(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		for _, m := range c.Members {
			if m.exited() {
				return fmt.Errorf("%s exited", m.Name)
			}
		}
		err := c.WaitHealthy(time.Second)
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}

// portTaken reports whether a member said that its address was in use.
func (c *Cluster) portTaken() bool {
	for _, m := range c.Members {
		if strings.Contains(m.Output(), "address already in use") {
			return true
		}
	}
	return false
}

// pickAddr picks a member's address (freeAddr; a test of the retry
// hands out a taken one).
var pickAddr = freeAddr

func freeAddr(t testing.TB, ip string) string {
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (m *Member) start(t testing.TB) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cmd := exec.Command(m.args[0], m.args[1:]...)
	m.out = &bytes.Buffer{}
	// Written by exec's copying goroutine while Output may read it.
	cmd.Stdout, cmd.Stderr = memberOutput{m}, memberOutput{m}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd %s: %v", m.Name, err)
	}
	m.cmd = cmd
	done := make(chan struct{})
	m.waitDone = done
	go func() { cmd.Wait(); close(done) }()
}

// memberOutput appends what a member prints to its buffer, under its lock.
type memberOutput struct{ m *Member }

func (w memberOutput) Write(p []byte) (int, error) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	return w.m.out.Write(p)
}

// exited reports whether the member's process has ended (while it was
// not stopped).
func (m *Member) exited() bool {
	m.mu.Lock()
	done := m.waitDone
	running := m.cmd != nil
	m.mu.Unlock()
	if !running || done == nil {
		return false
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Output is what the member printed.
func (m *Member) Output() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.out == nil {
		return ""
	}
	return m.out.String()
}

// Stop kills the member (SIGKILL to its pid) and waits for it.
func (m *Member) Stop() {
	m.mu.Lock()
	cmd, done := m.cmd, m.waitDone
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Restart starts a stopped member again on its data directory.
func (m *Member) Restart(t testing.TB) {
	for i, a := range m.args {
		if a == "new" && m.args[i-1] == "--initial-cluster-state" {
			m.args[i] = "existing"
		}
	}
	m.start(t)
}

// Stop stops every member.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		m.Stop()
	}
}

// Client is a client of the whole cluster.
func (c *Cluster) Client() *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// WaitHealthy waits until a linearizable read succeeds on every running
// member.
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		last = nil
		for _, m := range c.Members {
			m.mu.Lock()
			running := m.cmd != nil
			m.mu.Unlock()
			if !running {
				continue
			}
			if err := ping(m.ClientURL); err != nil {
				last = fmt.Errorf("%s: %w", m.Name, err)
				break
			}
		}
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

func ping(url string) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = cli.Get(ctx, "health")
	return err
}
