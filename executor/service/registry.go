// Package service is the registry of the service instances that are ready
// to serve: what the agent's DNS server answers, what its reverse proxy
// routes to and what its mDNS responder announces. The engine of orch up
// drives it from its lifecycle and health events (an instance is set when
// it becomes ready and removed when it stops being ready, exits or is
// about to be stopped); nothing here polls a backend.
//
// A change builds a new immutable View, published atomically: readers
// (a DNS query, a proxied request) never take a lock. Watchers (the
// proxy's route table, the mDNS announcer) are told of every change, in
// order.
//
// Drain removes an instance and then waits, up to its drain time, until
// the requests in flight to it (as the Drainers count them: the proxy)
// have ended; the engine calls it before an instance's stop signal.
package service

import (
	"context"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultDrain is how long Drain waits at most for the requests in flight
// to an instance when its service declares no drain time.
const DefaultDrain = 5 * time.Second

// Route is where the reverse proxy sends requests to a service: a host
// and a path prefix ("/" for all paths).
type Route struct {
	Host string // lower case, no port
	Path string // starts with "/"
}

func (r Route) String() string { return r.Host + r.Path }

// Instance is one running instance of a service that is ready to serve.
type Instance struct {
	// ID is unique among the instances ever registered at the same time:
	// an address and a handle (the old and the new instance of a
	// create_before_destroy replace run side by side).
	ID string
	// Addr is the orch address of the instance ("daemon.api[0]").
	Addr string
	// Service is its DNS name under the zone ("api"), lower case.
	Service string
	// Label names the one instance under the service ("0" for
	// 0.api.<zone>): its count index, its for_each key, or "0".
	Label string
	// Host is the address it listens on, an IP; Port its port.
	Host string
	Port int
	// Route is its route on the proxy; nil: not proxied.
	Route *Route
	// MDNS is the DNS-SD service type it is announced as ("_http._tcp");
	// "": not announced.
	MDNS string
	// Drain is the longest Drain waits for requests in flight to it.
	Drain time.Duration
}

// Endpoint is host:port.
func (i Instance) Endpoint() string { return net.JoinHostPort(i.Host, strconv.Itoa(i.Port)) }

// View is the registry at one moment; never modified once published.
type View struct {
	// Instances, sorted by service, then label, then ID.
	Instances []Instance
	// Version counts the changes of the registry.
	Version   uint64
	byService map[string][]int // service name -> indexes into Instances
}

// Service returns the ready instances of the named service (lower case),
// sorted by label.
func (v *View) Service(name string) []Instance {
	idx := v.byService[name]
	out := make([]Instance, len(idx))
	for i, j := range idx {
		out[i] = v.Instances[j]
	}
	return out
}

// Each calls f for each ready instance of the named service (lower case),
// sorted by label, without copying; f must not keep the pointer.
func (v *View) Each(name string, f func(*Instance)) {
	for _, j := range v.byService[name] {
		f(&v.Instances[j])
	}
}

// Has says whether the named service has a ready instance.
func (v *View) Has(name string) bool { return len(v.byService[name]) > 0 }

// Drainer counts the requests in flight to an instance: WaitIdle returns
// once none is left for id (or ctx is done). Removed instances get no new
// request from a Drainer.
type Drainer interface {
	WaitIdle(ctx context.Context, id string)
}

// Watcher is told of each change: the instances set (new, or changed)
// and removed, and the view after the change. It is called with the
// registry's lock held, in order; it must not call the registry.
type Watcher func(set, removed []Instance, v *View)

// Registry holds the ready instances. Safe for concurrent use; the zero
// value is not: use New.
type Registry struct {
	mu       sync.Mutex
	m        map[string]Instance
	version  uint64
	view     atomic.Pointer[View]
	watchers []Watcher
	drainers []Drainer
}

// New returns an empty registry.
func New() *Registry {
	r := &Registry{m: map[string]Instance{}}
	r.view.Store(&View{byService: map[string][]int{}})
	return r
}

// View returns the current view.
func (r *Registry) View() *View { return r.view.Load() }

// Watch adds w; it is first called at once with every instance as set.
func (r *Registry) Watch(w Watcher) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watchers = append(r.watchers, w)
	v := r.view.Load()
	w(append([]Instance(nil), v.Instances...), nil, v)
}

// AddDrainer adds d to those Drain waits for.
func (r *Registry) AddDrainer(d Drainer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drainers = append(r.drainers, d)
}

// Set registers inst as ready (or updates it, by ID). It reports whether
// anything changed.
func (r *Registry) Set(inst Instance) bool {
	inst.Service = strings.ToLower(inst.Service)
	inst.Label = strings.ToLower(inst.Label)
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.m[inst.ID]; ok && sameInstance(old, inst) {
		return false
	}
	r.m[inst.ID] = inst
	r.publish([]Instance{inst}, nil)
	return true
}

// Remove deregisters the instance id; it reports whether it was
// registered.
func (r *Registry) Remove(id string) (Instance, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	inst, ok := r.m[id]
	if !ok {
		return Instance{}, false
	}
	delete(r.m, id)
	r.publish(nil, []Instance{inst})
	return inst, true
}

// RemoveIf deregisters every instance for which drop says so, and returns
// them.
func (r *Registry) RemoveIf(drop func(Instance) bool) []Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	var gone []Instance
	for id, inst := range r.m {
		if drop(inst) {
			gone = append(gone, inst)
			delete(r.m, id)
		}
	}
	if len(gone) > 0 {
		sort.Slice(gone, func(i, j int) bool { return gone[i].ID < gone[j].ID })
		r.publish(nil, gone)
	}
	return gone
}

// Get returns the registered instance id.
func (r *Registry) Get(id string) (Instance, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	inst, ok := r.m[id]
	return inst, ok
}

// Drain removes the instance id and waits until no request is in flight
// to it, or its drain time passed, or ctx is done. It reports whether the
// instance was registered. An instance that was not registered gets no
// request, and Drain returns at once.
func (r *Registry) Drain(ctx context.Context, id string) (Instance, bool) {
	inst, ok := r.Remove(id)
	r.mu.Lock()
	ds := append([]Drainer(nil), r.drainers...)
	r.mu.Unlock()
	if len(ds) == 0 {
		return inst, ok
	}
	d := inst.Drain
	if !ok || d <= 0 {
		d = DefaultDrain
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for _, dr := range ds {
		dr.WaitIdle(ctx, id)
	}
	return inst, ok
}

func (r *Registry) publish(set, removed []Instance) {
	r.version++
	all := make([]Instance, 0, len(r.m))
	for _, inst := range r.m {
		all = append(all, inst)
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		if a.Label != b.Label {
			return labelLess(a.Label, b.Label)
		}
		return a.ID < b.ID
	})
	v := &View{Instances: all, Version: r.version, byService: map[string][]int{}}
	for i, inst := range all {
		v.byService[inst.Service] = append(v.byService[inst.Service], i)
	}
	r.view.Store(v)
	for _, w := range r.watchers {
		w(set, removed, v)
	}
}

// labelLess orders numeric labels by value ("2" before "10").
func labelLess(a, b string) bool {
	x, errA := strconv.Atoi(a)
	y, errB := strconv.Atoi(b)
	switch {
	case errA == nil && errB == nil:
		return x < y
	case errA == nil:
		return true
	case errB == nil:
		return false
	}
	return a < b
}

func sameInstance(a, b Instance) bool {
	if (a.Route == nil) != (b.Route == nil) || a.Route != nil && *a.Route != *b.Route {
		return false
	}
	a.Route, b.Route = nil, nil
	return a == b
}
