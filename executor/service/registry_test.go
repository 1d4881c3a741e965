package service

import (
	"context"
	"testing"
	"time"
)

func TestRegistryViewsAndWatchers(t *testing.T) {
	r := New()
	var log []string
	r.Watch(func(set, removed []Instance, v *View) {
		for _, i := range set {
			log = append(log, "+"+i.ID)
		}
		for _, i := range removed {
			log = append(log, "-"+i.ID)
		}
	})
	old := r.View()
	a := Instance{ID: "a", Addr: "daemon.api[10]", Service: "API", Label: "10", Host: "127.0.0.1", Port: 1}
	b := Instance{ID: "b", Addr: "daemon.api[2]", Service: "api", Label: "2", Host: "127.0.0.1", Port: 2, Route: &Route{Host: "x", Path: "/"}}
	if !r.Set(a) || !r.Set(b) {
		t.Fatal("Set reported no change")
	}
	if r.Set(b) {
		t.Error("setting the same instance again reported a change")
	}
	b2 := b
	b2.Route = &Route{Host: "x", Path: "/"} // another pointer, the same route
	if r.Set(b2) {
		t.Error("the same route behind another pointer reported a change")
	}
	if len(old.Instances) != 0 {
		t.Error("a published view changed")
	}
	v := r.View()
	got := v.Service("api")
	if len(got) != 2 || got[0].Label != "2" || got[1].Label != "10" {
		t.Errorf("service api (lower-cased, numeric labels in order): %+v", got)
	}
	if !v.Has("api") || v.Has("web") {
		t.Error("Has")
	}
	if _, ok := r.Remove("a"); !ok {
		t.Error("Remove a")
	}
	if _, ok := r.Remove("a"); ok {
		t.Error("Remove a twice")
	}
	gone := r.RemoveIf(func(i Instance) bool { return i.Port == 2 })
	if len(gone) != 1 || r.View().Has("api") {
		t.Errorf("RemoveIf: %v", gone)
	}
	if want := "+a +b -a -b"; joined(log) != want {
		t.Errorf("watcher saw %q, want %q", joined(log), want)
	}
}

func joined(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

type slowDrainer struct{ waited chan string }

func (d slowDrainer) WaitIdle(ctx context.Context, id string) {
	d.waited <- id
	<-ctx.Done() // never idle: Drain gives up at the instance's drain time
}

// Drain removes the instance first, then waits for the drainers, at most
// the instance's drain time.
func TestDrainRemovesThenWaitsAtMostDrain(t *testing.T) {
	r := New()
	d := slowDrainer{waited: make(chan string, 1)}
	r.AddDrainer(d)
	r.Set(Instance{ID: "a", Service: "api", Label: "0", Port: 1, Drain: 10 * time.Millisecond})
	inst, ok := r.Drain(context.Background(), "a")
	if !ok || inst.ID != "a" {
		t.Fatalf("Drain: %v %v", inst, ok)
	}
	if id := <-d.waited; id != "a" {
		t.Errorf("drainer asked about %q", id)
	}
	if r.View().Has("api") {
		t.Error("still registered after Drain")
	}
}
