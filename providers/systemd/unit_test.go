package systemd

import (
	"testing"

	"github.com/orch-dev/orch/providers"
)

// TestQueuedStartIsStarting: a notify unit read right after
// StartTransientUnit, still inactive with its start job queued, is
// starting (waiting for its READY=1), not a unit that ended before its
// main process ran; without a queued job the same unit has ended. Under
// make test-busy, orch apply read such a unit and failed the daemon with
// "never became ready: not running: code 1" 105 ms after its start.
func TestQueuedStartIsStarting(t *testing.T) {
	u := unit{Name: "orch-p-daemon-n.service", Loaded: true, ActiveState: "inactive", SubState: "dead", Type: "notify",
		StartQueued: true, Marks: marks{owned: true}}
	if h := health(u, ""); h.Status != providers.HealthStarting {
		t.Fatalf("queued start: %+v, want starting", h)
	}
	u.StartQueued = false
	if h := health(u, ""); h.Status != providers.HealthUnhealthy {
		t.Fatalf("inactive without a job: %+v, want unhealthy", h)
	}
}
