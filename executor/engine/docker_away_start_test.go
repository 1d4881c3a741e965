package engine

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	pbus "github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/providers/docker/dockertest"
)

// TestDockerEngineAwayAtStart: orch up starts while the Docker Engine of
// one runtime cannot be reached (the real Engine behind a dockertest.Proxy
// that is down). The process daemon starts all the same, the runtime is
// said unreachable, the container daemon waits for it; once the Engine is
// back the container is created, the only one of its address.
func TestDockerEngineAwayAtStart(t *testing.T) {
	cli := dockertest.Engine(t)
	project := dockertest.Project("orch-up-away-start")
	dockertest.RemoveProject(t, cli, project)
	image := "orch-test/server:" + project
	dockertest.BuildImage(t, cli, dockertest.ServerContext(t, ""), image, project)
	px := dockertest.NewProxy(t)
	px.Down()

	dir := t.TempDir()
	config := fmt.Sprintf(`
orch {
  name = %q
}
runtime "docker" "away" {
  host = %q
}
daemon "web" {
  runtime = runtime.docker.away
  image   = %q
  stop {
    timeout = "1s"
  }
}
daemon "tick" {
  command = [%q, "-addr", "127.0.0.1:0"]
}
`, project, px.Host(), image, httpdBin)
	// Modules hear of the runtime too: orch.runtime.unreachable, then
	// orch.runtime.reconnected.
	bus := pbus.NewBus()
	var topicsMu sync.Mutex
	var topics []string
	bus.Subscribe("orch.runtime.*", func(ev pbus.Event) {
		topicsMu.Lock()
		topics = append(topics, ev.Topic)
		topicsMu.Unlock()
	})
	_, log, _ := runAway(t, px, dir, config, bus)
	const web, tick, rt = "daemon.web", "daemon.tick", "runtime.docker.away"
	log.waitFor(t, "tick started, the runtime unreachable, web waiting", func(evs []Event) bool {
		return countOf(evs, 0, tick, EventStarted) == 1 && countOf(evs, 0, rt, EventUnreachable) == 1 &&
			countOf(evs, 0, web, EventWaiting) >= 1
	})
	if evs := log.all(); countOf(evs, 0, web, EventStarted) != 0 || countOf(evs, 0, web, EventFailed) != 0 {
		t.Fatalf("web started or failed while its Engine is away:\n%s", log.dump())
	}
	if ids := ourContainers(t, cli, project, web); len(ids) != 0 {
		t.Fatalf("containers of web while the Engine is away: %v", ids)
	}

	mark := len(log.all())
	px.Up()
	log.waitFor(t, "web started once the Engine is back", func(evs []Event) bool {
		return countOf(evs, mark, web, EventStarted) == 1
	})
	soleContainer(t, cli, project, web, rt)
	log.waitFor(t, "reconnected", func(evs []Event) bool { return countOf(evs, mark, rt, EventReconnected) == 1 })
	topicsMu.Lock()
	got := strings.Join(topics, " ")
	topicsMu.Unlock()
	if got != "orch.runtime.unreachable orch.runtime.reconnected" {
		t.Errorf("published to modules: %q", got)
	}
	if evs := log.all(); countOf(evs, 0, web, EventFailed) != 0 || countOf(evs, 0, tick, EventStarted) != 1 {
		t.Errorf("web failed, or tick was started again:\n%s", log.dump())
	}
}
