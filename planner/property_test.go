package planner

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// genConfig writes a random but valid configuration: daemons and jobs with
// random commands, env, counts, dependencies and in-place settings.
func genConfig(rng *rand.Rand) string {
	var b strings.Builder
	n := 1 + rng.Intn(6)
	for i := 0; i < n; i++ {
		kind := "daemon"
		if rng.Intn(5) == 0 {
			kind = "job"
		}
		fmt.Fprintf(&b, "%s \"r%d\" {\n", kind, i)
		if rng.Intn(3) == 0 {
			fmt.Fprintf(&b, "  count = %d\n", rng.Intn(3))
		}
		fmt.Fprintf(&b, "  command = [\"/bin/p%d\", \"%d\"]\n", rng.Intn(3), rng.Intn(3))
		if rng.Intn(2) == 0 {
			fmt.Fprintf(&b, "  env = { A = \"%d\" }\n", rng.Intn(2))
		}
		if i > 0 && rng.Intn(2) == 0 {
			fmt.Fprintf(&b, "  depends_on = [daemon.r0]\n")
		}
		if rng.Intn(2) == 0 {
			fmt.Fprintf(&b, "  restart {\n    policy = %q\n  }\n", []string{"always", "never", "on-failure"}[rng.Intn(3)])
		}
		if rng.Intn(3) == 0 {
			fmt.Fprintf(&b, "  lifecycle {\n    create_before_destroy = %v\n  }\n", rng.Intn(2) == 0)
		}
		b.WriteString("}\n")
	}
	// r0 must be a daemon for depends_on; make it so
	s := b.String()
	return strings.Replace(s, "job \"r0\"", "daemon \"r0\"", 1)
}

func tryLoad(src string) *spec.Config {
	fsys := fstest.MapFS{"main.hcl": {Data: []byte(src)}}
	cfg, diags := spec.LoadFS(fsys, testDir, spec.Options{Schemas: testSchemas})
	if diags.HasErrors() {
		return nil
	}
	return cfg
}

// applyOnPaper does to the world what the plan says, without processes.
func applyOnPaper(p *Plan, in Input) Input {
	out := Input{Config: in.Config, Schemas: in.Schemas, Stored: map[spec.Address]*Stored{},
		Observed: map[spec.Address]providers.Observed{}, Adoptable: map[spec.Address]providers.Adoptable{}}
	for a, s := range in.Stored {
		out.Stored[a] = s
	}
	for a, o := range in.Observed {
		out.Observed[a] = o
	}
	for a, o := range in.Adoptable {
		out.Adoptable[a] = o
	}
	for _, c := range p.Changes {
		switch c.Action {
		case NoOp:
		case Delete:
			delete(out.Stored, c.Addr)
			delete(out.Observed, c.Addr)
			delete(out.Adoptable, c.Addr)
		default:
			snap, err := DecodeSnapshot(c.Desired.Encode())
			if err != nil {
				panic(err)
			}
			out.Stored[c.Addr] = &Stored{Addr: c.Addr, Snapshot: snap, ConfigHash: snap.Hash(), Handle: providers.Handle("h"), Status: StatusRunning}
			out.Observed[c.Addr] = providers.Observed{State: providers.StateRunning, Pid: 1}
			delete(out.Adoptable, c.Addr)
		}
	}
	return out
}

func randomObserved(rng *rand.Rand, stored map[spec.Address]*Stored) map[spec.Address]providers.Observed {
	obs := map[spec.Address]providers.Observed{}
	for a := range stored {
		switch rng.Intn(5) {
		case 0:
			obs[a] = providers.Observed{State: providers.StateExited, ExitCode: rng.Intn(2)}
		case 1:
			obs[a] = providers.Observed{State: providers.StateMissing}
		default:
			obs[a] = providers.Observed{State: providers.StateRunning, Pid: 10}
		}
	}
	return obs
}

// checkPlanProperties: applying a plan and planning again gives no
// changes; nothing is deleted that is neither stored nor ours.
func checkPlanProperties(t *testing.T, in Input) {
	t.Helper()
	p, _ := Make(in)
	for _, c := range p.Changes {
		if c.Action == Delete {
			_, stored := in.Stored[c.Addr]
			_, ours := in.Adoptable[c.Addr]
			if !stored && !ours {
				t.Fatalf("plan deletes %s, which is neither in state nor ours", c.Addr)
			}
		}
		if c.Action != Delete && c.Desired == nil {
			t.Fatalf("%s: %s without a desired configuration", c.Addr, c.Action)
		}
	}
	after := applyOnPaper(p, in)
	p2, _ := Make(after)
	if p2.HasChanges() {
		t.Fatalf("re-planning after applying gives changes:\n%s\nfirst plan:\n%s", Render(p2, RenderOptions{}), Render(p, RenderOptions{}))
	}
}

func TestPlanProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 300; i++ {
		cur := tryLoad(genConfig(rng))
		old := tryLoad(genConfig(rng))
		if cur == nil || old == nil {
			t.Fatalf("generator made an invalid config")
		}
		in := Input{Config: cur, Schemas: testSchemas, Stored: storedFrom(old)}
		in.Observed = randomObserved(rng, in.Stored)
		in.Adoptable = map[spec.Address]providers.Adoptable{}
		if rng.Intn(4) == 0 {
			a := spec.Address{Kind: spec.KindDaemon, Name: "stray"}
			in.Adoptable[a] = providers.Adoptable{Addr: a, ConfigHash: "x", Observed: providers.Observed{State: providers.StateRunning}}
		}
		checkPlanProperties(t, in)
		// destroy empties everything
		in.Destroy = true
		p, _ := Make(in)
		for _, c := range p.Changes {
			if c.Action != Delete {
				t.Fatalf("destroy plan has %s %s", c.Action, c.Addr)
			}
		}
	}
}

func FuzzPlan(f *testing.F) {
	f.Add(genConfig(rand.New(rand.NewSource(1))), genConfig(rand.New(rand.NewSource(2))), uint8(3))
	f.Add("daemon \"a\" {\n command = [\"/x\"]\n}\n", "daemon \"b\" {\n command = [\"/y\"]\n}\n", uint8(0))
	f.Fuzz(func(t *testing.T, current, applied string, seed uint8) {
		cur, old := tryLoad(current), tryLoad(applied)
		if cur == nil || old == nil {
			return
		}
		in := Input{Config: cur, Schemas: testSchemas, Stored: storedFrom(old)}
		in.Observed = randomObserved(rand.New(rand.NewSource(int64(seed))), in.Stored)
		checkPlanProperties(t, in)
	})
}
