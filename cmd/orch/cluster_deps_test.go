package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers/docker/dockertest"
)

// TestClusterDependsAcrossNodes: daemon.app, placed on n2, depends on
// daemon.db, placed on n1, whose http health check passes only once the
// test lets it bind its port. n2's agent does not start app until n1's
// agent published db ready in etcd; meanwhile orch status shows app
// waiting for daemon.db on n2. app itself checks that db answers the
// moment it starts (and leaves a mark if not), so a start before db was
// ready cannot pass unseen. The agents get the backend as -backend.
func TestClusterDependsAcrossNodes(t *testing.T) {
	server := dockertest.ServerBinary(t) // a static HTTP server with /healthz
	marks := t.TempDir()
	gateFile, early := filepath.Join(marks, "let-db-bind"), filepath.Join(marks, "app-started-early")
	cfg := strings.NewReplacer("SERVER", server, "GATE", gateFile, "EARLY", early).Replace(`orch {
  name = "multi"
}

daemon "db" {
  command = ["/bin/sh", "-c", "while [ ! -e GATE ]; do sleep 0.05; done; exec SERVER TOKEN-db"]
  env     = { PORT = "PORT_" }
  health {
    http     = "http://127.0.0.1:PORT_/healthz"
    interval = "200ms"
  }
  placement {
    node = "n1"
  }
}

daemon "app" {
  command    = ["/bin/sh", "-c", "SERVER -healthcheck http://127.0.0.1:PORT_/healthz || { echo app started before db answered > EARLY; exit 1; }; exec /bin/sh -c 'while :; do sleep 1; done' TOKEN-app"]
  depends_on = [daemon.db]
  placement {
    node = "n2"
  }
}
`)
	c := newClusterTest(t, cfg)
	// db's port is picked once the etcd cluster holds its own: picked
	// before, the kernel handed the same free port to an etcd member
	// once, and db, unable to bind it, crash-looped.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	c.config = strings.ReplaceAll(c.config, "PORT_", port)
	c.backendFlag = true
	c.startAll("n1", "n2")

	// db runs on n1, not ready; app waits on n2, named as waiting for db.
	c.waitFor("db running unready on n1, app waiting for it on n2", func() bool {
		db, app := c.status("n1")["daemon.db"], c.status("n2")["daemon.app"]
		return db.State == "running" && alive(db.Pid) && app.Status == "waiting"
	})
	statusJSON := func() []JSONStatusLine {
		cmd := orchCmdTB(t, c.dir, "status", "-json", "-backend", c.backendURL(), c.dir)
		cmd.Env = append(cmd.Env, "ORCH_STATE_DIR="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("orch status -json: %v\n%s", err, out)
		}
		var lines []JSONStatusLine
		if err := json.Unmarshal(out, &lines); err != nil {
			t.Fatalf("orch status -json: %v\n%s", err, out)
		}
		return lines
	}
	var waiting JSONStatusLine
	c.waitFor("orch status to show app waiting for daemon.db on n2", func() bool {
		for _, l := range statusJSON() {
			if l.Address == "daemon.app" {
				waiting = l
			}
		}
		// db's own state reaches n2 through the backend a moment after
		// db runs: until then app waits "for daemon.db to run".
		return waiting.Node == "n2" && strings.Contains(waiting.Status, "daemon.db to be healthy")
	})
	if waiting.Status != "waiting for daemon.db to be healthy" || waiting.State != "waiting" {
		t.Errorf("orch status of daemon.app: %+v", waiting)
	}
	cmd := orchCmdTB(t, c.dir, "status", "-backend", c.backendURL(), c.dir)
	cmd.Env = append(cmd.Env, "ORCH_STATE_DIR="+t.TempDir())
	out, _ := cmd.CombinedOutput()
	t.Logf("orch status while app waits:\n%s", out)
	if !strings.Contains(string(out), "waiting for daemon.db to be healthy") {
		t.Errorf("orch status does not show app waiting for daemon.db:\n%s", out)
	}
	if n := procsWith(t, c.token+"-app"); n != 0 {
		t.Fatalf("app runs (%d) while db is not ready", n)
	}

	// db may bind now: once its check passes on n1, app starts on n2.
	let := time.Now()
	if err := os.WriteFile(gateFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.waitFor("app running on n2 after db is ready", func() bool {
		got, ok := c.placedAndRunning("daemon.db", "daemon.app")
		return ok && got["daemon.app"] == "n2" && c.exactlyOne("db", "app")
	})
	t.Logf("app ran on n2 %s after db was let bind on n1 (health interval 200ms)", time.Since(let).Round(time.Millisecond))
	if b, err := os.ReadFile(early); err == nil {
		t.Fatalf("app: %s", b)
	}
	if st := c.status("n2")["daemon.app"]; st.Status != "running" {
		t.Errorf("app on n2: %+v", st)
	}
	for _, l := range statusJSON() {
		if l.Address == "daemon.app" && (l.Waiting != "" || l.State != "running") {
			t.Errorf("orch status of daemon.app once it runs: %+v", l)
		}
	}
}

// JSONStatusLine is the part of a line of orch status -json these tests
// read.
type JSONStatusLine struct {
	Address, Node, State, Status, Waiting string
	Pid                                   int
}
