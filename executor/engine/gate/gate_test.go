package gate

import (
	"reflect"
	"strings"
	"testing"

	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/spec"
)

func addr(t *testing.T, s string) spec.Address {
	t.Helper()
	a, err := spec.ParseAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The stack of the issue: postgres <- job.migrate <- app (two), and a
// cache beside; edges are "depends on".
const stack = `
daemon.db:
job.migrate: daemon.db
daemon.app: job.migrate daemon.cache
daemon.cache:
daemon.web: daemon.app
module.m:
daemon.usesm: module.m
`

func graph(t *testing.T, src string) *spec.Graph {
	t.Helper()
	var nodes []spec.Address
	deps := map[spec.Address][]spec.Address{}
	for _, line := range strings.Split(strings.TrimSpace(src), "\n") {
		name, rest, _ := strings.Cut(line, ":")
		a := addr(t, strings.TrimSpace(name))
		nodes = append(nodes, a)
		for _, d := range strings.Fields(rest) {
			deps[a] = append(deps[a], addr(t, d))
		}
	}
	return spec.NewGraph(nodes, deps)
}

func TestDecide(t *testing.T) {
	g := graph(t, stack)
	type want struct {
		now     []string
		wait    map[string]string // address -> why
		blocked map[string]string // address -> blocker, "held:" prefix for a hold
		held    []string
	}
	cases := []struct {
		name    string
		changes map[string]planner.Action
		insts   map[string]Readiness
		gated   map[string]string
		// starting: Running since their start, no health verdict yet
		starting []string
		want     want
	}{{
		name:    "cold start: what has no dependency starts; a gated db holds the job back",
		changes: map[string]planner.Action{"daemon.db": planner.Create, "job.migrate": planner.Create, "daemon.app": planner.Create, "daemon.cache": planner.Create, "daemon.web": planner.Create},
		gated:   map[string]string{"daemon.db": "to be healthy"},
		want: want{now: []string{"daemon.cache", "daemon.db"},
			wait: map[string]string{"job.migrate": "for daemon.db to be healthy", "daemon.app": "for job.migrate, which waits itself",
				"daemon.web": "for daemon.app, which waits itself"}},
	}, {
		name:    "no health checks: the chain starts in one apply, in order",
		changes: map[string]planner.Action{"daemon.db": planner.Create, "job.migrate": planner.Create, "daemon.app": planner.Create, "daemon.cache": planner.Create},
		want:    want{now: []string{"daemon.app", "daemon.cache", "daemon.db", "job.migrate"}, wait: map[string]string{}},
	}, {
		name:    "warm start: the job completed earlier, the db is not healthy yet: the app waits for the db through the job",
		changes: map[string]planner.Action{"daemon.app": planner.Start},
		insts:   map[string]Readiness{"daemon.db": Running, "job.migrate": Completed, "daemon.cache": Ready},
		want:    want{wait: map[string]string{"daemon.app": "for daemon.db to be healthy"}},
	}, {
		name:    "warm start, db ready: the app starts",
		changes: map[string]planner.Action{"daemon.app": planner.Start},
		insts:   map[string]Readiness{"daemon.db": Ready, "job.migrate": Completed, "daemon.cache": Ready},
		want:    want{now: []string{"daemon.app"}, wait: map[string]string{}},
	}, {
		name:    "a job that has not completed is waited for",
		changes: map[string]planner.Action{"daemon.app": planner.Start},
		insts:   map[string]Readiness{"daemon.db": Ready, "job.migrate": Down, "daemon.cache": Ready},
		want:    want{wait: map[string]string{"daemon.app": "for job.migrate to complete"}},
	}, {
		name:    "a failed db blocks the app through the job, named at the root",
		changes: map[string]planner.Action{"daemon.app": planner.Start, "daemon.web": planner.Start},
		insts:   map[string]Readiness{"daemon.db": Failed, "job.migrate": Completed, "daemon.cache": Ready},
		want: want{wait: map[string]string{"daemon.app": "for daemon.db, which failed", "daemon.web": "for daemon.app, which waits itself"},
			blocked: map[string]string{"daemon.app": "daemon.db", "daemon.web": "daemon.db"}},
	}, {
		name:    "a held cache: its own start does not run, its dependents are blocked by it",
		changes: map[string]planner.Action{"daemon.cache": planner.Start, "daemon.app": planner.Start, "daemon.db": planner.Update},
		insts:   map[string]Readiness{"daemon.db": Ready, "job.migrate": Completed, "daemon.cache": Held},
		want: want{now: []string{"daemon.db"}, held: []string{"daemon.cache"},
			wait:    map[string]string{"daemon.app": "for daemon.cache, which was stopped by user (orch start runs it again)"},
			blocked: map[string]string{"daemon.app": "held:daemon.cache"}},
	}, {
		name:    "a daemon away with its runtime",
		changes: map[string]planner.Action{"job.migrate": planner.Start},
		insts:   map[string]Readiness{"daemon.db": Away},
		want:    want{wait: map[string]string{"job.migrate": "for daemon.db, which waits for runtime.process.local to be reachable again"}},
	}, {
		name:    "a module that runs lets its dependents start; one that does not, does not",
		changes: map[string]planner.Action{"daemon.usesm": planner.Create},
		insts:   map[string]Readiness{"module.m": Down},
		want:    want{wait: map[string]string{"daemon.usesm": "for module.m to run"}},
	}, {
		name:    "a reload waits for a dependency that starts with it, gated on its health (nginx told of an instance not yet serving)",
		changes: map[string]planner.Action{"daemon.app": planner.Create, "daemon.web": planner.Reload},
		insts:   map[string]Readiness{"daemon.db": Ready, "job.migrate": Completed, "daemon.cache": Ready, "daemon.web": Ready},
		gated:   map[string]string{"daemon.app": "to be healthy"},
		want:    want{now: []string{"daemon.app"}, wait: map[string]string{"daemon.web": "for daemon.app to be healthy"}},
	}, {
		name:    "a reload waits for a dependency that waits itself",
		changes: map[string]planner.Action{"daemon.app": planner.Start, "daemon.web": planner.Reload},
		insts:   map[string]Readiness{"daemon.db": Running, "job.migrate": Completed, "daemon.cache": Ready, "daemon.web": Ready},
		want:    want{wait: map[string]string{"daemon.app": "for daemon.db to be healthy", "daemon.web": "for daemon.app, which waits itself"}},
	}, {
		name:     "a reload deferred for a start waits while that start has no health verdict (an earlier apply of the round started it)",
		changes:  map[string]planner.Action{"daemon.web": planner.Reload},
		insts:    map[string]Readiness{"daemon.app": Running, "daemon.web": Ready},
		starting: []string{"daemon.app"},
		want:     want{wait: map[string]string{"daemon.web": "for daemon.app to be healthy"}},
	}, {
		name:     "a reload waiting for a start is not told blocked by a failed dependency it does not wait for",
		changes:  map[string]planner.Action{"daemon.web": planner.Reload},
		insts:    map[string]Readiness{"daemon.app": Running, "daemon.db": Failed, "daemon.web": Ready},
		starting: []string{"daemon.app"},
		want:     want{wait: map[string]string{"daemon.web": "for daemon.app to be healthy"}},
	}, {
		name:    "a reload does not wait for a dependency found unhealthy after it was ready",
		changes: map[string]planner.Action{"daemon.web": planner.Reload},
		insts:   map[string]Readiness{"daemon.app": Running, "daemon.web": Ready},
		want:    want{now: []string{"daemon.web"}, wait: map[string]string{}},
	}, {
		name:    "a reload does not wait for a dependency that was already not ready (its new configuration may route around it)",
		changes: map[string]planner.Action{"daemon.web": planner.Reload},
		insts:   map[string]Readiness{"daemon.app": Failed, "daemon.web": Ready},
		want:    want{now: []string{"daemon.web"}, wait: map[string]string{}},
	}, {
		name:    "a reload beside a dependency's start without a health check runs in the same apply, after it",
		changes: map[string]planner.Action{"daemon.app": planner.Create, "daemon.web": planner.Reload},
		insts:   map[string]Readiness{"daemon.db": Ready, "job.migrate": Completed, "daemon.cache": Ready, "daemon.web": Ready},
		want:    want{now: []string{"daemon.app", "daemon.web"}, wait: map[string]string{}},
	}, {
		name:    "updates do not wait",
		changes: map[string]planner.Action{"daemon.app": planner.Update},
		insts:   map[string]Readiness{"daemon.db": Down},
		want:    want{now: []string{"daemon.app"}, wait: map[string]string{}},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Graph: g, Changes: map[spec.Address]*planner.Change{}, Instances: map[spec.Address]Instance{}, Gated: map[spec.Address]string{}}
			for a, act := range tc.changes {
				in.Changes[addr(t, a)] = &planner.Change{Addr: addr(t, a), Action: act}
			}
			for a, r := range tc.insts {
				in.Instances[addr(t, a)] = Instance{Readiness: r, Runtime: addr(t, "runtime.process.local")}
			}
			for a, why := range tc.gated {
				in.Gated[addr(t, a)] = why
			}
			for _, a := range tc.starting {
				i := in.Instances[addr(t, a)]
				i.Starting = true
				in.Instances[addr(t, a)] = i
			}
			d := Decide(in)
			var now []string
			for _, c := range d.Now {
				now = append(now, c.Addr.String())
			}
			if !reflect.DeepEqual(now, tc.want.now) {
				t.Errorf("now: %v, want %v", now, tc.want.now)
			}
			wait, blocked := map[string]string{}, map[string]string{}
			for a, w := range d.Wait {
				wait[a.String()] = w.Why
				if !w.BlockedBy.IsZero() {
					b := w.BlockedBy.String()
					if w.Blocker == Held {
						b = "held:" + b
					}
					blocked[a.String()] = b
				}
			}
			if tc.want.wait == nil {
				tc.want.wait = map[string]string{}
			}
			if tc.want.blocked == nil {
				tc.want.blocked = map[string]string{}
			}
			if !reflect.DeepEqual(wait, tc.want.wait) {
				t.Errorf("wait: %v\nwant  %v", wait, tc.want.wait)
			}
			if !reflect.DeepEqual(blocked, tc.want.blocked) {
				t.Errorf("blocked: %v, want %v", blocked, tc.want.blocked)
			}
			var held []string
			for _, a := range d.Held {
				held = append(held, a.String())
			}
			if !reflect.DeepEqual(held, tc.want.held) {
				t.Errorf("held: %v, want %v", held, tc.want.held)
			}
		})
	}
}

func TestReadinessString(t *testing.T) {
	for r, want := range map[Readiness]string{Down: "down", Running: "running", Ready: "ready", Completed: "completed", Failed: "failed", Held: "held", Away: "away"} {
		if r.String() != want {
			t.Errorf("%d: %q, want %q", r, r.String(), want)
		}
	}
}
