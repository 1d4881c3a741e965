package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUpIgnoresItsOwnLog runs orch up -json with its output appended to
// up.log inside the configuration directory, and another process
// appending to the same file every 10 ms, while one invalid save sits in
// the directory: the invalid configuration is reported once, not once per
// write (each report was itself a write, so it went on for ever). An edit
// of a file read with file(), in a subdirectory, still reloads.
func TestUpIgnoresItsOwnLog(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"main.hcl": `daemon "show" {
  command = ["/bin/sh", "-c", "echo \"$MSG\"; exec sleep 1000"]
  env     = { MSG = file("conf/msg.txt") }
}
`,
		"conf/msg.txt": "one",
	})
	e := engineTestIn(t, dir)
	logPath := filepath.Join(dir, "up.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	up := newOrchCmd(t, dir, "up", "-json", dir)
	up.Stdout, up.Stderr = logf, logf
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { up.Wait(); close(exited) }()
	t.Cleanup(func() {
		up.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			up.Process.Kill()
			<-exited
		}
	})
	read := func() string {
		b, _ := os.ReadFile(logPath)
		return string(b)
	}
	count := func(typ string) int { return strings.Count(read(), `"type":"`+typ+`"`) }
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			select {
			case <-exited:
				t.Fatalf("orch up exited while waiting for %s:\n%s", what, read())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s:\n%s", what, read())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait("ready", func() bool { return count("ready") == 1 })
	e.status() // remembers the daemon's pid for the cleanup

	// Another writer of up.log, every 10 ms.
	appender := exec.Command("/bin/sh", "-c", "while :; do echo appended >> up.log; sleep 0.01; done")
	appender.Dir = dir
	appender.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := appender.Start(); err != nil {
		t.Fatal(err)
	}
	stopAppender := func() {
		syscall.Kill(-appender.Process.Pid, syscall.SIGKILL)
		appender.Wait()
	}
	defer stopAppender()

	if err := os.WriteFile(filepath.Join(dir, "broken.hcl"), []byte("daemon \"x\" {\n  command = \n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wait("config_invalid", func() bool { return count("config_invalid") >= 1 })
	after := strings.Count(read(), "appended")
	wait("100 more appends", func() bool { return strings.Count(read(), "appended") >= after+100 })
	stopAppender()
	// Nothing more should come; give a repeat (each took one debounce
	// period, 50 ms, on the old watcher) ten periods to show.
	time.Sleep(10 * 50 * time.Millisecond)
	if n := count("config_invalid"); n != 1 {
		t.Fatalf("%d config_invalid events for one invalid save, want 1:\n%s", n, read())
	}

	// Valid again, then an edit of the file read with file() reloads.
	if err := os.WriteFile(filepath.Join(dir, "broken.hcl"), []byte("# fixed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wait("config_reloaded", func() bool { return count("config_reloaded") == 1 })
	if err := os.WriteFile(filepath.Join(dir, "conf", "msg.txt"), []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	wait("config_reloaded after conf/msg.txt changed", func() bool { return count("config_reloaded") == 2 })
	e.status()
}

// TestUpReloadsVarFile: orch up -var-file FILE, FILE outside the
// configuration directory; an edit of FILE is an edit of the
// configuration.
func TestUpReloadsVarFile(t *testing.T) {
	e := newEngineTest(t, `variable "msg" {
  type = string
}

daemon "show" {
  command = ["/bin/sh", "-c", "echo \"$MSG\"; exec sleep 1000"]
  env     = { MSG = var.msg }
}
`)
	vars := filepath.Join(t.TempDir(), "vars.txt")
	if err := os.WriteFile(vars, []byte("msg = \"one\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &engineProc{exited: make(chan struct{})}
	p.cmd = newOrchCmd(t, e.dir, "up", "-json", "-var-file", vars, e.dir)
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{p}, lockedWriter{p}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	e.waitFor(p, "ready", func() bool { return strings.Contains(p.output(), `"type":"ready"`) })
	e.status()
	if err := os.WriteFile(vars, []byte("msg = \"two\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.waitFor(p, "config_reloaded", func() bool { return strings.Contains(p.output(), `"type":"config_reloaded"`) })
	e.waitFor(p, "daemon.show started again", func() bool { return strings.Count(p.output(), `"type":"started"`) == 2 })
	e.status()
}
