package systemd

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

var (
	_ providers.Provider  = (*Provider)(nil)
	_ providers.Deleter   = (*Provider)(nil)
	_ providers.Adopter   = (*Provider)(nil)
	_ providers.Signaler  = (*Provider)(nil)
	_ providers.LogReader = (*Provider)(nil)
)

// Options configures a Provider. The zero value is ready to use.
type Options struct {
	// Journalctl is the journalctl binary Logs runs; default "journalctl"
	// from PATH.
	Journalctl string
}

// Provider is the runtime "systemd": daemons and jobs as transient service
// units of the system's or the user's systemd, through its D-Bus API. Its
// methods are safe for concurrent use. It keeps one connection per bus,
// made on first use and made again after the bus or systemd went away;
// Close releases them. Units it starts outlive it and orch.
type Provider struct {
	opts Options

	mu       sync.Mutex
	conns    map[string]*sd.Conn
	monitors map[string]*monitor
}

// New returns a Provider. It connects to nothing until a method needs a
// bus.
func New(opts Options) *Provider {
	if opts.Journalctl == "" {
		opts.Journalctl = "journalctl"
	}
	return &Provider{opts: opts, conns: map[string]*sd.Conn{}, monitors: map[string]*monitor{}}
}

// Schema describes the runtime kind "systemd".
func (p *Provider) Schema() spec.RuntimeSchema { return Schema() }

// Close releases the bus connections. The Provider can still be used: a
// later call connects again.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, c := range p.conns {
		c.Close()
		delete(p.conns, k)
	}
	return nil
}

func userErr(op string, addr spec.Address, attr string, format string, args ...any) error {
	return &providers.Error{Op: op, Attr: attr, Err: fmt.Errorf(prefix(addr)+format, args...)}
}

// Start starts req.Resource as the transient service unit
// UnitName(project, address) with orch's ownership marks, and returns once
// systemd has executed its command (Type=exec; a command that cannot be
// executed, a missing user or working directory is an error that names
// the attribute). A unit of that name left by an earlier run that no longer
// runs is removed first; one that runs the same configuration is taken
// over (a crash between the start and recording the handle); one that runs
// another configuration is left to run (create_before_destroy) and the new
// unit's name gets the configuration hash. A unit of that name that orch
// did not create is an error: orch never touches it.
func (p *Provider) Start(ctx context.Context, req providers.StartRequest) (providers.StartResponse, error) {
	var resp providers.StartResponse
	r := req.Resource
	if r == nil {
		return resp, &providers.Error{Op: "start", Err: errors.New("no resource")}
	}
	addr := r.Addr
	mk := marks{Project: req.Project, Address: addr.String(), Runtime: runtimeName(req.Runtime), ConfigHash: req.ConfigHash, owned: true}
	props, err := properties(r, mk, req.Project)
	if err != nil {
		var ae *attrError
		if errors.As(err, &ae) {
			return resp, userErr("start", addr, ae.attr, "%v", ae.err)
		}
		return resp, userErr("start", addr, "", "%v", err)
	}
	m, err := p.manager(req.Runtime, "start", addr)
	if err != nil {
		return resp, err
	}
	name, existing, err := p.clear(ctx, m, UnitName(req.Project, addr), mk)
	if err != nil {
		return resp, err
	}
	if existing == nil {
		var done chan string
		if !notify(r) {
			// A notify unit's start job ends with its READY=1, which its
			// health follows; the others' once the command runs.
			done = make(chan string, 1)
		}
		if _, err := m.StartTransientUnitContext(ctx, name, "fail", props, done); err != nil {
			return resp, m.err(p, "start", addr, err)
		}
		if done != nil {
			select {
			case res := <-done:
				if res != "done" {
					return resp, p.failedStart(ctx, m, name, addr, res)
				}
			case <-ctx.Done():
				return resp, m.err(p, "start", addr, ctx.Err())
			}
		}
		u, err := m.read(ctx, name)
		if err != nil {
			return resp, m.err(p, "start", addr, err)
		}
		existing = &u
	}
	resp.Handle = HandleInfo{Unit: name, Invocation: existing.Invocation, Scope: m.bus.scope}.Encode()
	resp.Observed = existing.observed("")
	return resp, nil
}

// execFailures names the attribute behind the exit statuses systemd gives
// a service whose command it could not start (systemd.exec(5), "Process
// exit codes").
var execFailures = map[int32]struct{ attr, what string }{
	200: {"dir", "cannot change to the working directory"},
	203: {"command", "cannot execute the command"},
	204: {"", "cannot set up standard output"},
	205: {"rlimits", "cannot set the resource limits"},
	216: {"group", "cannot set the group"},
	217: {"user", "cannot set the user"},
}

// failedStart says why the start job of name ended with res, and removes
// what it left.
func (p *Provider) failedStart(ctx context.Context, m manager, name string, addr spec.Address, res string) error {
	u, rerr := m.read(ctx, name)
	p.remove(context.WithoutCancel(ctx), m, name)
	if rerr != nil {
		return m.err(p, "start", addr, fmt.Errorf("the start of unit %s %s: %w", name, res, rerr))
	}
	if f, ok := execFailures[u.ExecStatus]; ok && u.ExecCode == cldExited {
		return userErr("start", addr, f.attr, "unit %s: %s (systemd's status %d; journalctl -u %s says more)", name, f.what, u.ExecStatus, name)
	}
	obs := u.observed("")
	return userErr("start", addr, "", "unit %s did not start: job %s, result %s, main process %s", name, res, u.Result, obs.Ended())
}

// clear makes room for a unit of mk's address named name: see Start. It
// returns the name to start, or the unit to take over.
func (p *Provider) clear(ctx context.Context, m manager, name string, mk marks) (string, *unit, error) {
	addr, _ := spec.ParseAddress(mk.Address)
	base := strings.TrimSuffix(name, ".service")
	for range 3 {
		u, err := m.read(ctx, name)
		if err != nil {
			return "", nil, m.err(p, "start", addr, err)
		}
		switch {
		case !u.Loaded:
			return name, nil, nil
		case !u.Marks.owned:
			return "", nil, userErr("start", addr, "", "unit %s exists and was not made by orch (it has no %s=%s); orch leaves it alone", name, FieldManagedBy, ManagedBy)
		case u.Marks.Address != mk.Address || u.Marks.Project != mk.Project:
			return "", nil, userErr("start", addr, "", "unit %s is taken by orch's unit of %s in project %q", name, u.Marks.Address, u.Marks.Project)
		case u.running() && u.Marks.ConfigHash == mk.ConfigHash:
			return name, &u, nil
		case u.running():
			// create_before_destroy: the old instance still runs.
			h := mk.ConfigHash
			name = base + "-" + h[:min(12, len(h))] + ".service"
		default:
			if err := p.remove(ctx, m, name); err != nil {
				return "", nil, m.err(p, "start", addr, fmt.Errorf("removing the stopped unit %s: %w", name, err))
			}
			return name, nil, nil
		}
	}
	return "", nil, userErr("start", addr, "", "no free unit name for it (%s and its variants are taken)", name)
}

// remove stops unit name if it is active (a unit kept after its command
// exited), resets it if it failed, and waits until systemd has unloaded
// it, so that its name can be used again.
func (p *Provider) remove(ctx context.Context, m manager, name string) error {
	u, err := m.read(ctx, name)
	if err != nil || !u.Loaded {
		return err
	}
	if u.ActiveState != "inactive" && u.ActiveState != "failed" {
		done := make(chan string, 1)
		if _, err := m.StopUnitContext(ctx, name, "replace", done); err != nil {
			return err
		}
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		if err := m.ResetFailedUnitContext(ctx, name); err != nil && !notLoaded(err) {
			return err
		}
		u, err := m.read(ctx, name)
		if err != nil {
			return err
		}
		if !u.Loaded {
			return nil
		}
		if u.running() {
			return fmt.Errorf("unit %s was started again by somebody else", name)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("unit %s is still loaded: %w", name, ctx.Err())
		}
	}
}

// notLoaded says whether err is systemd's answer about a unit that is
// not loaded (or not failed: reset-failed on a good unit).
func notLoaded(err error) bool {
	var de dbus.Error
	return errors.As(err, &de) && (strings.HasSuffix(de.Name, ".NoSuchUnit") || strings.HasSuffix(de.Name, ".UnitNotLoaded"))
}

// Observe reads the unit of each handle: running, exited with its main
// process's exit code or signal (kept by RemainAfterExit, or by a failed
// unit), or missing when it is gone, is not orch's, or was started again
// since (another invocation). A systemd that cannot be reached is an error.
func (p *Provider) Observe(ctx context.Context, req providers.ObserveRequest) (providers.ObserveResponse, error) {
	resp := providers.ObserveResponse{Objects: make(map[spec.Address]providers.Observed, len(req.Handles))}
	if len(req.Handles) == 0 {
		return resp, nil
	}
	m, err := p.manager(req.Runtime, "observe", spec.Address{})
	if err != nil {
		return resp, err
	}
	type item struct {
		addr spec.Address
		obs  providers.Observed
		err  error
	}
	items := make([]*item, 0, len(req.Handles))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for a, h := range req.Handles {
		it := &item{addr: a}
		items = append(items, it)
		hi, err := ParseHandle(h)
		if err != nil {
			it.obs = providers.Observed{State: providers.StateUnknown}
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			u, err := m.read(ctx, hi.Unit)
			if err != nil {
				it.err = err
				return
			}
			it.obs = u.observed(hi.Invocation)
		}()
	}
	wg.Wait()
	for _, it := range items {
		if it.err != nil {
			return resp, m.err(p, "observe", it.addr, it.err)
		}
		resp.Objects[it.addr] = it.obs
	}
	return resp, nil
}

// Stop stops the unit: req.Signal (default SIGTERM) to every process of
// its cgroup, SIGKILL to what is left after req.Timeout (default 10s),
// both through systemd's own stop (the signal and timeout are set on the
// unit first, as runtime properties). It returns once systemd reports the
// unit stopped. A unit that failed is kept with its status until Delete;
// one already gone, or not orch's, is success.
func (p *Provider) Stop(ctx context.Context, req providers.StopRequest) (providers.StopResponse, error) {
	var resp providers.StopResponse
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return resp, userErr("stop", req.Addr, "", "%v", err)
	}
	m, err := p.manager(req.Runtime, "stop", req.Addr)
	if err != nil {
		return resp, err
	}
	u, err := m.read(ctx, hi.Unit)
	if err != nil {
		return resp, m.err(p, "stop", req.Addr, err)
	}
	if !u.ours("") {
		resp.Observed = providers.Observed{State: providers.StateMissing, ID: hi.Unit}
		return resp, nil
	}
	if !u.running() && u.ActiveState != "active" {
		resp.Observed = u.observed("")
		return resp, nil
	}
	sig := req.Signal
	if sig.Num == 0 {
		sig = spec.Signal{Name: "SIGTERM", Num: syscall.SIGTERM}
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	if u.KillSignal != int32(sig.Num) || u.StopTimeout != timeout {
		// Asked for another signal or timeout than the unit was made with
		// (systemd cannot change them on a running unit): the same steps
		// by hand, then systemd's stop for what is left.
		killed, err := p.stopByHand(ctx, m, hi.Unit, sig, timeout)
		if err != nil {
			return resp, m.err(p, "stop", req.Addr, err)
		}
		resp.Killed = killed
	}
	done := make(chan string, 1)
	if _, err := m.StopUnitContext(ctx, hi.Unit, "replace", done); err != nil {
		if notLoaded(err) {
			resp.Observed = providers.Observed{State: providers.StateMissing, ID: hi.Unit}
			return resp, nil
		}
		return resp, m.err(p, "stop", req.Addr, err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return resp, m.err(p, "stop", req.Addr, ctx.Err())
	}
	u, err = m.read(ctx, hi.Unit)
	if err != nil {
		return resp, m.err(p, "stop", req.Addr, err)
	}
	if !u.Loaded {
		// Stopped cleanly and unloaded at once: how its process ended
		// went with it.
		resp.Observed = providers.Observed{State: providers.StateMissing, ID: hi.Unit}
		return resp, nil
	}
	resp.Observed = u.observed("")
	resp.Killed = resp.Killed || sig.Num != syscall.SIGKILL && (u.Result == "timeout" || resp.Observed.Signal == "SIGKILL")
	return resp, nil
}

// stopByHand sends sig to every process of unit name, waits up to timeout
// for its main process to end, and sends SIGKILL to what is left then.
// killed says it came to that.
func (p *Provider) stopByHand(ctx context.Context, m manager, name string, sig spec.Signal, timeout time.Duration) (killed bool, err error) {
	if err := m.KillUnitWithTarget(ctx, name, sd.All, int32(sig.Num)); err != nil {
		return false, err
	}
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		u, err := m.read(ctx, name)
		if err != nil {
			return false, err
		}
		if !u.running() {
			return false, nil
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-time.After(min(wait, time.Until(deadline)+time.Millisecond)):
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	if err := m.KillUnitWithTarget(ctx, name, sd.All, int32(syscall.SIGKILL)); err != nil {
		return false, err
	}
	return sig.Num != syscall.SIGKILL, nil
}

// Delete unloads a stopped unit (reset-failed; a unit kept after its
// command exited is stopped first). A unit that still runs is an error:
// stop it first. One already gone, or not orch's, is success.
func (p *Provider) Delete(ctx context.Context, req providers.DeleteRequest) (providers.DeleteResponse, error) {
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return providers.DeleteResponse{}, userErr("delete", req.Addr, "", "%v", err)
	}
	m, err := p.manager(req.Runtime, "delete", req.Addr)
	if err != nil {
		return providers.DeleteResponse{}, err
	}
	u, err := m.read(ctx, hi.Unit)
	if err != nil {
		return providers.DeleteResponse{}, m.err(p, "delete", req.Addr, err)
	}
	if !u.ours("") {
		return providers.DeleteResponse{}, nil
	}
	if u.running() {
		return providers.DeleteResponse{}, userErr("delete", req.Addr, "", "unit %s still runs; stop it first", hi.Unit)
	}
	if err := p.remove(ctx, m, hi.Unit); err != nil {
		return providers.DeleteResponse{}, m.err(p, "delete", req.Addr, err)
	}
	return providers.DeleteResponse{}, nil
}

// Signal sends req.Signal through systemd (KillUnit) to every process of
// the unit's cgroup, or with MainOnly to its main process alone.
func (p *Provider) Signal(ctx context.Context, req providers.SignalRequest) (providers.SignalResponse, error) {
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return providers.SignalResponse{}, userErr("signal", req.Addr, "", "%v", err)
	}
	if req.Signal.Num == 0 {
		return providers.SignalResponse{}, userErr("signal", req.Addr, "", "no signal")
	}
	m, err := p.manager(req.Runtime, "signal", req.Addr)
	if err != nil {
		return providers.SignalResponse{}, err
	}
	u, err := m.read(ctx, hi.Unit)
	if err != nil {
		return providers.SignalResponse{}, m.err(p, "signal", req.Addr, err)
	}
	if obs := u.observed(hi.Invocation); obs.State != providers.StateRunning {
		return providers.SignalResponse{}, userErr("signal", req.Addr, "", "unit %s is not running", hi.Unit)
	}
	who := sd.All
	if req.MainOnly {
		who = sd.Main
	}
	if err := m.KillUnitWithTarget(ctx, hi.Unit, who, int32(req.Signal.Num)); err != nil {
		return providers.SignalResponse{}, m.err(p, "signal", req.Addr, err)
	}
	return providers.SignalResponse{}, nil
}

// Adopt lists the running units of req.Project on req.Runtime from their
// ownership marks, sorted by address; of several units of one address, the
// newest (the others are stopped). A unit of an address the state knows
// under another unit name (the new unit of a replace that a killed orch
// did not record, or the old one it did not stop) is stopped and removed:
// nothing else would.
func (p *Provider) Adopt(ctx context.Context, req providers.AdoptRequest) (providers.AdoptResponse, error) {
	var resp providers.AdoptResponse
	m, err := p.manager(req.Runtime, "adopt", spec.Address{})
	if err != nil {
		return resp, err
	}
	list, err := m.ListUnitsByPatternsContext(ctx, nil, []string{unitPrefix(req.Project) + "*.service"})
	if err != nil {
		return resp, m.err(p, "adopt", spec.Address{}, err)
	}
	rt := runtimeName(req.Runtime)
	found := map[spec.Address][]unit{}
	for _, st := range list {
		u, err := m.read(ctx, st.Name)
		if err != nil {
			return resp, m.err(p, "adopt", spec.Address{}, err)
		}
		if !u.ours(req.Project) || u.Marks.Runtime != rt || !u.running() {
			continue
		}
		addr, err := spec.ParseAddress(u.Marks.Address)
		if err != nil {
			continue
		}
		if req.Known != nil && req.Known(addr) {
			if req.KnownHandle == nil {
				continue
			}
			if hi, err := ParseHandle(req.KnownHandle(addr)); err == nil && hi.Unit != u.Name {
				p.remove(ctx, m, u.Name)
			}
			continue
		}
		found[addr] = append(found[addr], u)
	}
	for addr, us := range found {
		// Several units of one address (a replace whose orch was killed
		// before it stopped the old one): the newest is adopted, the
		// others are stopped.
		sort.Slice(us, func(i, j int) bool { return us[i].ExecStart.After(us[j].ExecStart) })
		for _, old := range us[1:] {
			p.remove(ctx, m, old.Name)
		}
		u := us[0]
		resp.Objects = append(resp.Objects, providers.Adoptable{
			Addr:       addr,
			Handle:     HandleInfo{Unit: u.Name, Invocation: u.Invocation, Scope: m.bus.scope}.Encode(),
			ConfigHash: u.Marks.ConfigHash,
			Observed:   u.observed(""),
		})
	}
	sort.Slice(resp.Objects, func(i, j int) bool { return resp.Objects[i].Addr.Less(resp.Objects[j].Addr) })
	return resp, nil
}
