package state

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// The tests re-execute their own binary as a child process to hold the lock
// or to be killed in the middle of writing. The child's role comes from
// these environment variables.
const (
	envChild = "ORCH_STATE_TEST_CHILD" // "hold" or "crash"
	envPath  = "ORCH_STATE_TEST_PATH"
)

func TestMain(m *testing.M) {
	switch os.Getenv(envChild) {
	case "":
		os.Exit(m.Run())
	case "hold":
		childHold(os.Getenv(envPath))
	case "crash":
		childCrash(os.Getenv(envPath))
	default:
		fmt.Fprintln(os.Stderr, "unknown child role", os.Getenv(envChild))
		os.Exit(2)
	}
}

// childHold takes the writer lock, says "locked" and waits to be killed
// (or for its stdin to close).
func childHold(path string) {
	s, err := Open(path, Options{Operation: "apply"})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	bufio.NewReader(os.Stdin).ReadString('\n')
	s.Close()
	os.Exit(0)
}

// childCrash puts instances one transaction each and prints how many have
// been committed after each Put returns, until it is killed.
func childCrash(path string) {
	s, err := Open(path, Options{Operation: "apply"})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	for i := 0; i < 1_000_000; i++ {
		if err := s.Put(testInstance(i)); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(i + 1) // os.Stdout is unbuffered
	}
	os.Exit(0)
}

// testInstance is instance i of daemon.svc, with content that depends on i.
func testInstance(i int) Instance {
	return Instance{
		Addr:       spec.Address{Kind: spec.KindDaemon, Name: "svc", Key: spec.IntKey(i)},
		Runtime:    spec.Address{Kind: spec.KindRuntime, Type: "process", Name: "host"},
		Config:     []byte(`{"command":["/usr/bin/svc","--port","` + strconv.Itoa(8000+i) + `"],"env":{"A":"<&>"}}`),
		ConfigHash: fmt.Sprintf("sha256:%064x", i),
		Handle:     providers.Handle(fmt.Sprintf(`{"pid":%d,"start":%d}`, 10000+i, 1700000000+i)),
		Status:     "running",
	}
}

// child is a test process started by startChild.
type child struct {
	cmd   *exec.Cmd
	lines chan string // its stdout, line by line; closed at EOF
	stdin interface{ Close() error }
}

// startChild re-executes the test binary in role. The test kills it by
// pid in cleanup if it still runs.
func startChild(t *testing.T, role, path string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+role, envPath+"="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, lines: make(chan string, 1<<16), stdin: stdin}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
		}
	})
	return c
}

// waitLine returns the first line for which ok is true, failing the test
// if the child ends or the deadline passes first.
func (c *child) waitLine(t *testing.T, ok func(string) bool) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l, open := <-c.lines:
			if !open {
				t.Fatal("child exited before the expected output")
			}
			if strings.HasPrefix(l, "error:") {
				t.Fatalf("child: %s", l)
			}
			if ok(l) {
				return l
			}
		case <-deadline:
			t.Fatal("timed out waiting for the child")
		}
	}
}

// kill sends SIGKILL to the child by pid and reaps it. When it returns,
// the kernel has closed every file the child had open.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(c.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.cmd.Wait()
}
