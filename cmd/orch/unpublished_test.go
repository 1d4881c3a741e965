package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestStatusSaysWhyUnpublished: a daemon with a service and no health
// check that never listens on its service's port runs, but is not on the
// proxy; orch status says why, in text and in -json.
func TestStatusSaysWhyUnpublished(t *testing.T) {
	base := consecutivePorts(t, 2)
	proxyPort, servicePort := base, base+1
	e := newEngineTest(t, fmt.Sprintf(`
orch {
  proxy { listen = "127.0.0.1:%d" }
}
daemon "web" {
  command = ["sleep", "600"]
  service {
    port  = %d
    route = "web.localhost/"
  }
}
`, proxyPort, servicePort))
	p := e.start("up")
	e.allRunning(p, "daemon.web")
	want := fmt.Sprintf("not listening on port %d", servicePort)
	r := orch(t, e.dir, nil, "status", e.dir).want(t, 0)
	if !strings.Contains(r.stdout, "web ("+want+")") {
		t.Errorf("orch status does not say %q:\n%s", want, r.stdout)
	}
	r = orch(t, e.dir, nil, "status", "-json", e.dir).want(t, 0)
	var lines []struct {
		Address     string `json:"address"`
		Registered  bool   `json:"registered"`
		Unpublished string `json:"unpublished"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &lines); err != nil {
		t.Fatalf("status -json: %v\n%s", err, r.stdout)
	}
	if len(lines) != 1 || lines[0].Registered || lines[0].Unpublished != want {
		t.Errorf("status -json: %+v, want unpublished %q", lines, want)
	}
}
