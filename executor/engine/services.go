package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/service"
	svcdns "github.com/orch-dev/orch/executor/service/dns"
	"github.com/orch-dev/orch/executor/service/mdns"
	"github.com/orch-dev/orch/executor/service/proxy"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// Services: the engine publishes each daemon with a service block in the
// service registry (executor/service) while it is ready, and the agent's
// DNS server, reverse proxy and mDNS announcer follow the registry.
//
//   - Ready is what gates dependents: running, not paused, and healthy when
//     it has a health check (its own, for a container image that has one).
//     The registry follows the engine's books after every message the
//     controller handles (syncServices): a health transition, an exit, a
//     new generation, a pause. Nothing polls a backend.
//   - A registration is of one handle: the old instance of a
//     create_before_destroy replace stays registered beside the new one
//     until the old one is stopped.
//   - Every stop the engine or its executor makes drains first
//     (drainBefore): the instance leaves DNS and the proxy, and the stop
//     signal waits until the proxied requests in flight to it have ended,
//     at most service.drain.
//   - After an agent restart, adoption supervises what runs and its first
//     health pass registers it again.
type services struct {
	reg   *service.Registry
	dns   *svcdns.Server
	proxy *proxy.Proxy
	mdns  *mdns.Announcer
	zone  string
	// dnsAt and proxyAt are the listeners' declarations in force.
	dnsAt, proxyAt string
	// seen is what each instance was registered from, to skip the ones
	// that did not change (controller goroutine).
	seen map[spec.Address]svcSeen

	mu       sync.Mutex      // guards zone and stopping
	stopping map[string]bool // registration IDs drained for a stop: never registered again
}

type svcSeen struct {
	handle string
	ready  bool
	sv     *spec.Service
	hash   string
}

// hasServices says whether cfg publishes anything.
func hasServices(cfg *spec.Config) bool {
	if cfg == nil {
		return false
	}
	if cfg.Project.DNS != nil || cfg.Project.Proxy != nil {
		return true
	}
	for _, r := range cfg.Resources {
		if r.Service != nil {
			return true
		}
	}
	return false
}

// startServices binds the listeners cfg declares (or those an edit
// changed). At the start of Run an error is returned and nothing starts;
// after an edit the listener in force is kept and the error reported.
func (e *Engine) startServices(cfg *spec.Config) error {
	if e.svc == nil {
		if !hasServices(cfg) {
			return nil
		}
		e.svc = &services{reg: service.New(), seen: map[spec.Address]svcSeen{}, stopping: map[string]bool{}}
	}
	s := e.svc
	var errs []error
	if d := cfg.Project.DNS; d == nil && s.dns != nil {
		s.dns.Close()
		s.dns, s.dnsAt = nil, ""
		s.mu.Lock()
		s.zone = ""
		s.mu.Unlock()
	} else if d != nil && d.Listen+" "+d.Zone != s.dnsAt {
		srv, err := svcdns.Listen(d.Listen, d.Zone, s.reg)
		if err != nil {
			errs = append(errs, err)
		} else {
			if s.dns != nil {
				s.dns.Close()
			}
			s.dns, s.dnsAt = srv, d.Listen+" "+d.Zone
			s.mu.Lock()
			s.zone = srv.Zone()
			s.mu.Unlock()
		}
	}
	if p := cfg.Project.Proxy; p == nil && s.proxy != nil {
		s.proxy.Close()
		s.proxy, s.proxyAt = nil, ""
	} else if p != nil {
		at := p.Listen
		var tf *proxy.TLSFiles
		if p.TLS != nil {
			tf = &proxy.TLSFiles{Cert: p.TLS.Cert, Key: p.TLS.Key}
			at += " " + p.TLS.Cert + " " + p.TLS.Key
		}
		if at != s.proxyAt {
			if s.proxy != nil && strings.SplitN(s.proxyAt, " ", 2)[0] == p.Listen {
				s.proxy.Close() // the same address with other TLS files
				s.proxy, s.proxyAt = nil, ""
			}
			px, err := proxy.Listen(p.Listen, tf, s.reg)
			if err != nil {
				errs = append(errs, err)
			} else {
				if s.proxy != nil {
					s.proxy.Close()
				}
				s.proxy, s.proxyAt = px, at
			}
		}
	}
	if s.mdns == nil && wantsMDNS(cfg) {
		// Not a declared listener: without it the rest goes on.
		if a, err := mdns.New(s.reg); err != nil {
			e.emit(Event{Type: EventError, Detail: "mDNS: not announcing services: " + err.Error()})
		} else {
			s.mdns = a
		}
	}
	return errors.Join(errs...)
}

func wantsMDNS(cfg *spec.Config) bool {
	for _, r := range cfg.Resources {
		if r.Service != nil && r.Service.MDNS != "" {
			return true
		}
	}
	return false
}

// closeServices withdraws everything (mDNS goodbyes) and closes the
// listeners; at the end of Run.
func (e *Engine) closeServices() {
	s := e.svc
	if s == nil {
		return
	}
	s.reg.RemoveIf(func(service.Instance) bool { return true })
	if s.mdns != nil {
		s.mdns.Close()
	}
	if s.proxy != nil {
		s.proxy.Close()
	}
	if s.dns != nil {
		s.dns.Close()
	}
}

// Registry is the engine's service registry; nil when the configuration
// publishes no service.
func (e *Engine) Registry() *service.Registry {
	if e.svc == nil {
		return nil
	}
	return e.svc.reg
}

// DNSAddr and ProxyAddr are the addresses the listeners serve ("" when
// off).
func (e *Engine) DNSAddr() string {
	if e.svc == nil || e.svc.dns == nil {
		return ""
	}
	return e.svc.dns.Addr()
}

func (e *Engine) ProxyAddr() string {
	if e.svc == nil || e.svc.proxy == nil {
		return ""
	}
	return e.svc.proxy.Addr()
}

// serviceID is the registration ID of addr running as h.
func serviceID(addr spec.Address, h providers.Handle) string {
	sum := sha256.Sum256(h)
	return addr.String() + "#" + hex.EncodeToString(sum[:6])
}

func serviceInstance(addr spec.Address, h providers.Handle, sv *spec.Service) service.Instance {
	in := service.Instance{ID: serviceID(addr, h), Addr: addr.String(), Service: sv.Name, Label: planner.ServiceLabel(addr),
		Host: sv.Host, Port: sv.Port, MDNS: sv.MDNS, Drain: sv.Drain}
	if sv.Route != nil {
		in.Route = &service.Route{Host: strings.ToLower(sv.Route.Host), Path: sv.Route.Path}
	}
	return in
}

// serviceReady says whether inst may get requests: what gates its
// dependents (running; healthy when it has a check), and not paused.
func (e *Engine) serviceReady(inst *instance) bool {
	if !inst.sup.running() || inst.sup.isPaused() {
		return false
	}
	if e.gatedOnHealth(inst) {
		return inst.sup.healthy()
	}
	port, probed := e.probedPort(inst)
	if !probed || inst.portUp == port {
		return true
	}
	// Not (yet) listening on the declared port: ready still when it runs
	// an earlier configuration (an edit not applied yet) and was found
	// listening on that one's port. (Asked last: runsDeclared hashes the
	// declared configuration, and this runs after every message.)
	return inst.portUp != 0 && !e.runsDeclared(inst)
}

// syncServices brings the registry in line with the engine's books; it
// runs on the controller after every message. Cheap when nothing changed.
func (e *Engine) syncServices() {
	s := e.svc
	if s == nil {
		return
	}
	for a, inst := range e.insts {
		var sv *spec.Service
		if inst.res != nil {
			sv = inst.res.Service
		}
		if sv == nil && s.seen[a].sv == nil {
			continue
		}
		if sv != nil && !e.stopping {
			e.probeListening(inst)
		}
		now := svcSeen{handle: string(inst.handle), ready: sv != nil && !e.stopping && e.serviceReady(inst), sv: sv, hash: inst.hash}
		if old, ok := s.seen[a]; ok && old == now {
			continue
		}
		s.seen[a] = now
		id := serviceID(a, inst.handle)
		if !now.ready {
			if in, ok := s.reg.Remove(id); ok {
				e.emitService(EventServiceDeregistered, in, e.notReadyWhy(inst))
			}
			continue
		}
		if s.isStopping(id) {
			continue
		}
		cur, registered := s.reg.Get(id)
		if registered && !e.runsDeclared(inst) {
			continue // it runs an earlier configuration: its registration stays
		}
		in := serviceInstance(a, inst.handle, sv)
		if s.reg.Set(in) {
			if registered {
				e.emitService(EventServiceRegistered, in, "moved from "+describe(cur, s.zoneNow()))
			} else {
				e.emitService(EventServiceRegistered, in, "")
			}
		}
	}
	for a := range s.seen {
		if e.insts[a] == nil {
			delete(s.seen, a)
			for _, in := range s.reg.RemoveIf(func(in service.Instance) bool { return in.Addr == a.String() }) {
				e.emitService(EventServiceDeregistered, in, "no longer declared")
			}
		}
	}
}

// runsDeclared says whether inst runs the configuration declared now (not
// one an edit replaced and that is not applied yet).
func (e *Engine) runsDeclared(inst *instance) bool {
	d := e.desired[inst.addr]
	return d == nil || inst.hash == "" || d.Hash() == inst.hash
}

func (e *Engine) notReadyWhy(inst *instance) string {
	switch {
	case e.stopping:
		return "orch is stopping"
	case inst.res == nil || inst.res.Service == nil:
		return "its service block was removed"
	case inst.sup.held():
		return "stopped by user"
	case !inst.sup.running():
		return "it exited"
	case inst.sup.isPaused():
		return "paused"
	}
	if port, probed := e.probedPort(inst); probed && inst.portUp == 0 {
		return fmt.Sprintf("not listening on port %d", port)
	}
	return "not healthy"
}

// zoneNow is the DNS zone served ("" when DNS is off); read from the
// goroutines of stops too.
func (s *services) zoneNow() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.zone
}

func (s *services) isStopping(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping[id]
}

// describe renders a registration for events and status: its DNS name
// (when DNS is served), its address and its route.
func describe(in service.Instance, zone string) string {
	var b strings.Builder
	if zone != "" {
		b.WriteString(svcdns.Name(zone, in.Service, in.Label))
		b.WriteByte(' ')
	}
	b.WriteString(in.Endpoint())
	if in.Route != nil {
		b.WriteString(", route ")
		b.WriteString(in.Route.String())
	}
	if in.MDNS != "" {
		b.WriteString(", mdns ")
		b.WriteString(in.MDNS)
	}
	return b.String()
}

func (e *Engine) emitService(t EventType, in service.Instance, why string) {
	a, err := spec.ParseAddress(in.Addr)
	if err != nil {
		return
	}
	d := describe(in, e.svc.zoneNow())
	if why != "" {
		d += " (" + why + ")"
	}
	e.emit(Event{Type: t, Addr: a, Detail: d})
}

// drainBefore takes the instance addr running as h out of DNS, the proxy
// and mDNS, and waits until the proxied requests in flight to it have
// ended (at most its service.drain), before it gets its stop signal. It
// runs on the goroutine of the stop; it is never registered again.
func (e *Engine) drainBefore(ctx context.Context, addr spec.Address, h providers.Handle) {
	s := e.svc
	if s == nil || len(h) == 0 {
		return
	}
	id := serviceID(addr, h)
	s.mu.Lock()
	s.stopping[id] = true
	s.mu.Unlock()
	if in, ok := s.reg.Drain(ctx, id); ok {
		e.emitService(EventServiceDeregistered, in, "drained before its stop")
	}
}

// drainingProviders wraps ps so that every Stop the executor makes drains
// the instance first. The executor uses a provider's Start, Observe, Stop
// and its optional Deleter, Signaler and Updater; the wrapper keeps
// exactly the optional ones the provider has.
func (e *Engine) drainingProviders(ps executor.Providers) executor.Providers {
	if e.svc == nil {
		return ps
	}
	out := make(executor.Providers, len(ps))
	for k, p := range ps {
		d := &draining{Provider: p, e: e}
		s, sOK := p.(providers.Signaler)
		u, uOK := p.(providers.Updater)
		switch {
		case sOK && uOK:
			out[k] = struct {
				*draining
				providers.Signaler
				providers.Updater
			}{d, s, u}
		case sOK:
			out[k] = struct {
				*draining
				providers.Signaler
			}{d, s}
		case uOK:
			out[k] = struct {
				*draining
				providers.Updater
			}{d, u}
		default:
			out[k] = d
		}
	}
	return out
}

type draining struct {
	providers.Provider
	e *Engine
}

func (d *draining) Stop(ctx context.Context, req providers.StopRequest) (providers.StopResponse, error) {
	if req.Signal.Num != 9 { // a kill is not drained (a second interrupt, a sweep)
		d.e.drainBefore(ctx, req.Addr, req.Handle)
	}
	return d.Provider.Stop(ctx, req)
}

// Delete is the provider's, when it has one (a provider without Deleter
// needs nothing deleted).
func (d *draining) Delete(ctx context.Context, req providers.DeleteRequest) (providers.DeleteResponse, error) {
	if del, ok := d.Provider.(providers.Deleter); ok {
		return del.Delete(ctx, req)
	}
	return providers.DeleteResponse{}, nil
}

// serviceBooks fills in the service of inst for Status.
func (e *Engine) serviceBooks(inst *instance, st *InstanceStatus) {
	if inst.res == nil || inst.res.Service == nil {
		return
	}
	sv := inst.res.Service
	st.Service = sv.Name
	if sv.Route != nil {
		st.Route = sv.Route.String()
	}
	if e.svc != nil && inst.sup.running() {
		if _, st.Registered = e.svc.reg.Get(serviceID(inst.addr, inst.handle)); !st.Registered {
			st.Unpublished = e.notReadyWhy(inst)
		}
	}
}
