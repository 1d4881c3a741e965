package planner

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"

	"github.com/hashicorp/hcl/v2"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
	"github.com/orch-dev/orch/spec/workers"
	"github.com/zclconf/go-cty/cty"
)

// Action is what the executor does to one instance. A closed vocabulary.
type Action uint8

const (
	NoOp    Action = iota // nothing: declared, applied and running as declared
	Create                // declared, never applied
	Update                // in-place change of settings that need no restart
	Replace               // a change that needs a new instance
	Delete                // applied, no longer declared
	Start                 // declared and applied, but not running
	Adopt                 // ours and running, but missing from state
	Reload                // a change confined to a daemon's reload.on: its signal, no replacement
	Stop                  // orch up's shutdown: stop it, keep its record (status stopped)
)

var actionNames = [...]string{"no-op", "create", "update", "replace", "delete", "start", "adopt", "reload", "stop"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Stored is what the state store recorded for one instance.
type Stored struct {
	Addr    spec.Address
	Runtime spec.Address
	// Snapshot is the configuration the instance was applied with,
	// decoded; nil when unreadable, or when it is left to the planner to
	// decode from Config.
	Snapshot *Snapshot
	// Config is that configuration as Snapshot.Encode wrote it (the
	// state record's). When Snapshot is nil and Config is set (Refresh
	// leaves it so), Make decodes it only where it needs it: a stored
	// configuration that is byte for byte the desired one is that one,
	// and the Prior of every Change Make returns has its Snapshot (the
	// executor reads it). Decoding 10,000 stored snapshots that nothing
	// compares was a fifth of the heap of a no-op plan (issue 19).
	Config     []byte
	ConfigHash string
	// ConfigOmitted says that the record has a configuration whose
	// SHA-256 is ConfigHash, left out of Config by the caller (orch plan
	// reads only those Prepared.ConfigsNeeded names): an equal desired
	// hash is the stored configuration itself.
	ConfigOmitted bool
	Handle        providers.Handle
	Status        Status
}

// decoded returns st with its Snapshot decoded from Config: st itself
// when there is nothing to decode, else a copy (the input is not
// changed). An unreadable Config leaves Snapshot nil.
func (st *Stored) decoded(dec *SnapshotDecoder) *Stored {
	if st == nil || st.Snapshot != nil || len(st.Config) == 0 {
		return st
	}
	cp := *st
	cp.Config = nil // decoded: the record's bytes may go
	if snap, err := dec.Decode(st.Config); err == nil {
		cp.Snapshot = snap
	}
	return &cp
}

// Input is everything the planner looks at.
type Input struct {
	Config  *spec.Config
	Schemas map[string]spec.RuntimeSchema
	Stored  map[spec.Address]*Stored
	// Observed has an entry for every stored instance (and every adoptable
	// one) that the providers looked at; a missing entry reads as unknown.
	Observed map[spec.Address]providers.Observed
	// Adoptable are objects of this project that a provider found running
	// but that state does not know, or knows only by an older instance
	// that no longer runs (a start orch was killed before recording,
	// after an earlier record of that address): a declared address
	// found here is adopted (or replaced, when it runs another
	// configuration), whatever its record says.
	Adoptable map[spec.Address]providers.Adoptable
	// Destroy plans the removal of everything (orch destroy).
	Destroy bool
	// Targets, when set, limits the plan to these instances (a block
	// address: all its instances) and what they need (-target); Replace
	// forces the replacement of these (-replace).
	Targets []spec.Address
	Replace []spec.Address
	// Prepared, when set, holds the desired snapshots of Config made
	// ahead (Prepare): Make uses them instead of making them again.
	Prepared *Prepared
}

// Change is the decision for one instance.
type Change struct {
	Addr   spec.Address
	Action Action
	// Resource is the declared instance; nil for Delete.
	Resource *spec.Resource
	// Prior is what state knows (or what adoption found); nil for Create.
	Prior *Stored
	// Desired is the declared configuration, flattened; nil for Delete.
	Desired *Snapshot
	// Diffs lists the attributes that differ between Prior and Desired.
	Diffs []AttrDiff
	// ForcedBy lists the attributes whose change forces a Replace; Reason
	// says why a Replace or Start happens when no attribute does.
	ForcedBy []string
	Reason   Reason
	// CreateBeforeDestroy orders a Replace as create, then delete.
	CreateBeforeDestroy bool
	// Observed is what runs now (zero for Create).
	Observed providers.Observed
	// Published lists the DNS records, proxy routes and mDNS
	// announcements the change adds ("+ ...") and removes ("- ..."),
	// from the service blocks of Prior and Desired (services.go).
	Published []string

	hash    string // Desired.Hash(), once Make computed it
	encoded []byte // Desired.Encode(), likewise
}

// setDesired records the encoding and hash of c.Desired, computed once:
// the executor stores the one and compares the other.
func (c *Change) setDesired() {
	c.encoded = c.Desired.Encode()
	h := sha256.Sum256(c.encoded)
	c.hash = hex.EncodeToString(h[:])
}

// setDesiredIn is setDesired encoding into *buf (grown as needed): the
// encoding aliases *buf until the caller keeps a copy or drops it.
func (c *Change) setDesiredIn(buf *[]byte) {
	b, ok := c.Desired.appendEncode((*buf)[:0])
	if !ok {
		c.setDesired()
		return
	}
	*buf = b
	c.encoded = b
	h := sha256.Sum256(b)
	c.hash = hex.EncodeToString(h[:])
}

// Encoded returns the canonical encoding of the desired configuration
// (Snapshot.Encode), or nil.
func (c *Change) Encoded() []byte {
	if c.Desired == nil {
		return nil
	}
	if c.encoded != nil {
		return c.encoded
	}
	return c.Desired.Encode()
}

// Hash returns the config hash of the desired configuration, or "".
func (c *Change) Hash() string {
	if c.Desired == nil {
		return ""
	}
	if c.hash != "" {
		return c.hash
	}
	return c.Desired.Hash()
}

// AttrDiff is one changed attribute. Old or New is cty.NilVal when absent.
type AttrDiff struct {
	Name              string
	Old, New          cty.Value
	ForcesReplacement bool
	Sensitive         bool
}

// Plan is the planner's output: one Change per instance (no-ops included),
// sorted by address.
type Plan struct {
	Changes []*Change
	// ConfigHash is the configuration's Hash; Fingerprint covers the
	// configuration, the variables, the stored and the observed state: a
	// saved plan applies only while the fingerprint is the same.
	ConfigHash  string
	Fingerprint string
	Destroy     bool
}

// Summary counts the changes as the summary line does: start, update and
// adopt count as "change".
type Summary struct{ Add, Change, Replace, Destroy int }

// Summary counts the plan's changes.
func (p *Plan) Summary() Summary {
	var s Summary
	for _, c := range p.Changes {
		switch c.Action {
		case Create:
			s.Add++
		case Update, Start, Adopt, Reload:
			s.Change++
		case Replace:
			s.Replace++
		case Delete:
			s.Destroy++
		}
	}
	return s
}

// HasChanges reports whether applying the plan would do anything.
func (p *Plan) HasChanges() bool {
	for _, c := range p.Changes {
		if c.Action != NoOp {
			return true
		}
	}
	return false
}

// Change returns the change of addr, or nil.
func (p *Plan) Change(addr spec.Address) *Change {
	i := sort.Search(len(p.Changes), func(i int) bool { return !p.Changes[i].Addr.Less(addr) })
	if i < len(p.Changes) && p.Changes[i].Addr == addr {
		return p.Changes[i]
	}
	return nil
}

// Make computes the plan. Its diagnostics report plans that must not be
// applied (prevent_destroy), pointing at the configuration.
func Make(in Input) (*Plan, hcl.Diagnostics) {
	p := &Plan{Destroy: in.Destroy}
	if in.Config != nil {
		p.ConfigHash = in.Config.Hash
	}
	targets, diags := resolveNames(in, in.Targets, "target")
	replace, d := resolveNames(in, in.Replace, "replace")
	diags = append(diags, d...)
	if diags.HasErrors() {
		return p, diags
	}
	declared := map[spec.Address]bool{}
	// One decoder for the stored snapshots Make decodes: values they
	// share are decoded once.
	dec := NewSnapshotDecoder()
	if in.Config != nil && !in.Destroy {
		for _, r := range in.Config.Resources {
			declared[r.Addr] = true
		}
		changes, ds := decideAll(in, replace, dec)
		for i, c := range changes {
			diags = append(diags, ds[i]...)
			if d := sharedReadiness(c, in.Schemas); d != nil {
				diags = append(diags, d)
			}
			p.Changes = append(p.Changes, c)
		}
	}
	for addr, st := range in.Stored {
		if declared[addr] {
			continue
		}
		st = st.decoded(dec)
		c := &Change{Addr: addr, Action: Delete, Prior: st, Observed: in.Observed[addr]}
		if in.Destroy && st.Snapshot != nil && st.Snapshot.PreventDestroy {
			diags = append(diags, preventDestroy(in.Config, addr, "destroy"))
		}
		p.Changes = append(p.Changes, c)
	}
	for addr, ad := range in.Adoptable {
		if declared[addr] || in.Stored[addr] != nil {
			continue
		}
		prior := &Stored{Addr: addr, Runtime: ad.Runtime, ConfigHash: ad.ConfigHash, Handle: ad.Handle}
		p.Changes = append(p.Changes, &Change{Addr: addr, Action: Delete, Prior: prior, Observed: ad.Observed,
			Reason: Reason{Kind: ReasonLeftOver}})
	}
	if len(targets) > 0 {
		keep := targeted(in, targets, dec)
		kept := p.Changes[:0]
		for _, c := range p.Changes {
			if keep[c.Addr] {
				kept = append(kept, c)
			}
		}
		p.Changes = kept
		diags = append(diags, targetWarning(targets))
	}
	sort.Slice(p.Changes, func(i, j int) bool { return p.Changes[i].Addr.Less(p.Changes[j].Addr) })
	publish(in.Config, p)
	p.Fingerprint = fingerprint(p)
	return p, diags
}

// forceReplace turns the change of an instance named by -replace into a
// Replace, unless it is created anyway.
func forceReplace(r *spec.Resource, c *Change) hcl.Diagnostics {
	switch c.Action {
	case Create, Replace:
		return nil
	}
	c.Action = Replace
	if len(c.ForcedBy) == 0 {
		c.Reason = Reason{Kind: ReasonReplaceRequested}
	}
	return guardReplace(r, c)
}

// decideAllMin is the number of declared instances from which decideAll
// shares them out among the CPUs.
var decideAllMin = 1024

// decideAll decides each declared instance, in the order of
// in.Config.Resources, with its diagnostics. Each instance is decided
// alone (its desired snapshot, its stored one, what it observed), so
// that many are decided on every CPU, each with its own decoder and
// sharer: building, encoding and comparing the desired snapshots of
// 10,000 daemons is most of planner.Make's time in a no-op plan.
func decideAll(in Input, replace map[spec.Address]bool, dec *SnapshotDecoder) ([]*Change, []hcl.Diagnostics) {
	rs := in.Config.Resources
	changes := make([]*Change, len(rs))
	diags := make([]hcl.Diagnostics, len(rs))
	run := func(lo, hi int, dec *SnapshotDecoder) {
		sh := newSharer()
		buf := make([]byte, 0, 2048)
		for i := lo; i < hi; i++ {
			r := rs[i]
			desired, hash, ok := in.Prepared.of(in.Config, i)
			if !ok {
				desired = snapshotOf(r, in.Config.Graph.DependenciesOf(r.Addr), schemaFor(in.Config, in.Schemas, r), sh)
			}
			c, d := decide(r, desired, hash, in, dec, &buf)
			if replace[r.Addr] {
				d = append(d, forceReplace(r, c)...)
			}
			if c.Action == NoOp {
				// Nothing stores it: Encoded makes it again if asked.
				c.encoded = nil
			}
			changes[i], diags[i] = c, d
		}
	}
	workers.Split(len(rs), workers.Count(len(rs), decideAllMin), func(lo, hi int) {
		d := dec // the first part's, on the caller's goroutine
		if lo > 0 {
			d = NewSnapshotDecoder()
		}
		run(lo, hi, d)
	})
	return changes, diags
}

// decide decides one declared instance; hash, when not "", is desired's
// config hash (Prepared).
func decide(r *spec.Resource, desired *Snapshot, hash string, in Input, dec *SnapshotDecoder, buf *[]byte) (*Change, hcl.Diagnostics) {
	c := &Change{Addr: r.Addr, Resource: r, Desired: desired,
		CreateBeforeDestroy: r.Lifecycle.CreateBeforeDestroy}
	st := in.Stored[r.Addr]
	ad, adoptable := in.Adoptable[r.Addr]
	if st == nil || adoptable {
		// Not recorded, or recorded with an instance that no longer
		// runs while a newer one of ours does (Input.Adoptable). The
		// prepared hash, when there is one; the encoding is made when
		// the executor records the instance (Encoded).
		setDesired := c.setDesired
		if hash != "" {
			setDesired = func() { c.hash = hash }
		}
		if !adoptable {
			c.Action = Create
			setDesired()
			return c, nil
		}
		c.Prior = &Stored{Addr: r.Addr, Runtime: ad.Runtime, ConfigHash: ad.ConfigHash, Handle: ad.Handle}
		c.Observed = ad.Observed
		setDesired()
		if ad.ConfigHash == c.hash {
			c.Action = Adopt
			c.Reason = Reason{Kind: ReasonAdopted}
			if st != nil {
				c.Reason = Reason{Kind: ReasonAdoptedNewer}
			}
			return c, nil
		}
		c.Action = Replace
		c.Reason = Reason{Kind: ReasonAdoptedDiffers}
		return c, guardReplace(r, c)
	}
	c.Observed = in.Observed[r.Addr]
	same := false
	if st.Snapshot == nil && st.ConfigOmitted && len(st.Config) == 0 && hash != "" && len(r.Lifecycle.IgnoreChanges) == 0 {
		// The stored configuration was left out, its SHA-256 being
		// its config hash: the desired one's hash says whether it is
		// the same (the caller read those that differ).
		c.hash = hash
		if same = st.ConfigHash == hash; same {
			prior := *st
			prior.Snapshot, prior.ConfigOmitted = desired, false
			st = &prior
		}
	} else if st.Snapshot == nil && len(st.Config) > 0 && len(r.Lifecycle.IgnoreChanges) == 0 {
		// Applied with exactly the desired configuration (the same
		// canonical encoding): the stored snapshot is the desired one,
		// and need not be decoded. The encoding is made in the worker's
		// buffer, and kept only when it differs (Encoded makes it again
		// if asked).
		c.setDesiredIn(buf)
		if same = bytes.Equal(st.Config, c.encoded); same {
			c.encoded = nil
			prior := *st
			prior.Snapshot, prior.Config = desired, nil
			st = &prior
		} else {
			c.encoded = bytes.Clone(c.encoded)
		}
	}
	if !same {
		st = st.decoded(dec)
	}
	c.Prior = st
	old := st.Snapshot
	if old == nil {
		c.Action = Replace
		c.Reason = Reason{Kind: ReasonUnreadable}
		if c.encoded == nil {
			c.setDesired()
		}
		return c, guardReplace(r, c)
	}
	if !same {
		applyIgnoreChanges(desired, old, r.Lifecycle.IgnoreChanges)
		if c.encoded == nil || len(r.Lifecycle.IgnoreChanges) > 0 {
			c.setDesired()
		}
	}
	// The config hash is that of the canonical encoding the instance was
	// applied with (see Snapshot.Hash): when it is the desired one,
	// nothing differs, and the attribute by attribute diff (a good part
	// of a no-op plan of thousands of instances) is not needed.
	if st.ConfigHash != c.hash {
		c.Diffs = diff(old, desired)
	}
	for _, d := range c.Diffs {
		if d.ForcesReplacement {
			c.ForcedBy = append(c.ForcedBy, d.Name)
		}
	}
	running := c.Observed.State == providers.StateRunning
	if running && reloadable(r, old, c.Diffs) {
		c.Action, c.ForcedBy = Reload, nil
		c.Reason = Reason{Kind: ReasonReload, Arg: r.Reload.Signal.Name}
		return c, nil
	}
	switch {
	case len(c.ForcedBy) > 0:
		c.Action = Replace
		return c, guardReplace(r, c)
	case r.Addr.Kind == spec.KindJob && !running && jobCompleted(c.Observed, st.Status):
		// A job that completed keeps its result until its config changes.
		if len(c.Diffs) > 0 {
			c.Action = Update
		}
		return c, nil
	case !running:
		c.Action = Start
		c.Reason = notRunningReason(c.Observed, st.Status)
		return c, nil
	case len(c.Diffs) > 0:
		c.Action = Update
	}
	return c, nil
}

// jobCompleted reports whether a job that is not running finished well: the
// executor recorded it completed (its pid is gone by now), or it was seen
// exiting 0.
func jobCompleted(o providers.Observed, status Status) bool {
	if status == StatusCompleted {
		return true
	}
	return status != StatusFailed && o.State == providers.StateExited && o.ExitCode == 0 && o.Signal == ""
}

func notRunningReason(o providers.Observed, status Status) Reason {
	switch {
	case status == StatusFailed:
		return Reason{Kind: ReasonLastStartFailed}
	case o.State == providers.StateExited && o.Signal != "":
		return Reason{Kind: ReasonKilled, Arg: o.Signal}
	case o.State == providers.StateExited && status == StatusStopped:
		return Reason{Kind: ReasonStopped}
	case o.State == providers.StateExited:
		return Reason{Kind: ReasonExited, Code: o.ExitCode}
	case o.State == providers.StateMissing:
		return Reason{Kind: ReasonNotRunning}
	}
	return Reason{Kind: ReasonStateUnknown}
}

func guardReplace(r *spec.Resource, c *Change) hcl.Diagnostics {
	if !r.Lifecycle.PreventDestroy {
		return nil
	}
	rng := r.DeclRange
	if lr, ok := r.Ranges.Get("lifecycle"); ok {
		rng = lr
	}
	what := "a change of " + joinNames(c.ForcedBy)
	if len(c.ForcedBy) == 0 {
		what = c.Reason.String()
	}
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Instance cannot be replaced",
		Detail: fmt.Sprintf("%s has lifecycle.prevent_destroy set, but %s forces its replacement. "+
			"Revert the change, or set prevent_destroy = false to allow it.", r.Addr, what),
		Subject: &rng,
	}}
}

func preventDestroy(cfg *spec.Config, addr spec.Address, op string) *hcl.Diagnostic {
	d := &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Instance cannot be destroyed",
		Detail: fmt.Sprintf("%s has lifecycle.prevent_destroy set, so %s will not remove it. "+
			"Set prevent_destroy = false and apply first.", addr, op),
	}
	if cfg != nil {
		if r := cfg.Resource(addr); r != nil {
			rng := r.DeclRange
			if lr, ok := r.Ranges.Get("lifecycle"); ok {
				rng = lr
			}
			d.Subject = &rng
		}
	}
	return d
}

func joinNames(xs []string) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += ", "
		}
		s += x
	}
	return s
}

// applyIgnoreChanges makes the desired snapshot keep the applied values of
// ignored attributes, as Terraform's lifecycle.ignore_changes does.
func applyIgnoreChanges(desired, old *Snapshot, ignore []string) {
	for _, name := range ignore {
		if v, ok := old.Values[name]; ok {
			desired.Values[name] = v
		} else {
			delete(desired.Values, name)
		}
	}
}

func diff(old, desired *Snapshot) []AttrDiff {
	names := map[string]bool{}
	for k := range old.Values {
		names[k] = true
	}
	for k := range desired.Values {
		names[k] = true
	}
	var out []AttrDiff
	for _, name := range sortedSet(names) {
		o, oldOK := old.Values[name]
		n, newOK := desired.Values[name]
		// Snapshot values are known and unmarked (Encode refuses others),
		// and for those RawEquals is Equals without its deep walks.
		if oldOK && newOK && equalValues(o, n) {
			continue
		}
		d := AttrDiff{Name: name, ForcesReplacement: desired.Forces[name] || (!newOK && old.Forces[name]),
			Sensitive: old.isSensitive(name) || desired.isSensitive(name)}
		if oldOK {
			d.Old = o
		}
		if newOK {
			d.New = n
		}
		out = append(out, d)
	}
	return out
}

// fingerprint hashes everything a plan was made from, as seen through its
// changes: config hash, each instance's action, desired and prior hashes,
// handle and observed state.
func fingerprint(p *Plan) string {
	h := sha256.New()
	fmt.Fprintf(h, "config %s destroy %v\n", p.ConfigHash, p.Destroy)
	// Per change, the same text as
	//	"%s %s %s" addr, action, hash
	//	" prior %s %x" config hash, handle
	//	" observed %s %d %s %d %s\n" state, pid, id, exit code, signal
	// without fmt, which took a good part of a 10,000-instance plan.
	var b []byte
	for _, c := range p.Changes {
		b = append(b[:0], c.Addr.String()...)
		b = append(b, ' ')
		b = append(b, c.Action.String()...)
		b = append(b, ' ')
		b = append(b, c.Hash()...)
		if c.Prior != nil {
			b = append(b, " prior "...)
			b = append(b, c.Prior.ConfigHash...)
			b = append(b, ' ')
			b = hex.AppendEncode(b, c.Prior.Handle)
		}
		o := c.Observed
		b = append(b, " observed "...)
		b = append(b, o.State.String()...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(o.Pid), 10)
		b = append(b, ' ')
		b = append(b, o.ID...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(o.ExitCode), 10)
		b = append(b, ' ')
		b = append(b, o.Signal...)
		b = append(b, '\n')
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// reloadable says whether diffs, the changes of a running daemon, are all
// applied by its reload signal: each is an attribute its reload.on names,
// or its reload inputs (the content of the files it names), or the
// reload block itself, and at least one is not the block itself. A daemon
// applied before it had a reload block is not reloaded for gaining one.
func reloadable(r *spec.Resource, old *Snapshot, diffs []AttrDiff) bool {
	if r.Reload == nil || len(diffs) == 0 {
		return false
	}
	if _, had := old.Values[ReloadInputsAttr]; !had {
		return false
	}
	some := false
	for _, d := range diffs {
		switch {
		case d.Name == ReloadAttr:
		case d.Name == ReloadInputsAttr:
			some = true
		default:
			named := false
			for _, a := range r.Reload.Attrs {
				if a == d.Name {
					named = true
				}
			}
			if !named {
				return false
			}
			some = true
		}
	}
	return some
}

// StopAll plans orch up's shutdown from what the state records: every
// daemon and module recorded running is stopped (Stop: its record stays,
// marked stopped); everything else is a NoOp, kept in the plan so that the
// walker orders the stops through it (an app that depends on the database
// through a migrate job stops first). Nothing is observed: a stop of what
// already ended is quick.
func StopAll(stored map[spec.Address]*Stored) *Plan {
	p := &Plan{Changes: make([]*Change, 0, len(stored))}
	for addr, st := range stored {
		c := &Change{Addr: addr, Action: NoOp, Prior: st}
		if (addr.Kind == spec.KindDaemon || addr.Kind == spec.KindModule) && st.Status == StatusRunning && len(st.Handle) > 0 {
			c.Action = Stop
		}
		p.Changes = append(p.Changes, c)
	}
	sort.Slice(p.Changes, func(i, j int) bool { return p.Changes[i].Addr.Less(p.Changes[j].Addr) })
	return p
}

// Restart plans one start of an instance that ran as prior and is to run
// again as desired (r): a restart by a restart policy or by orch restart.
// The planner makes every Change; this one needs no refresh, since only
// its caller acts on the instance.
func Restart(r *spec.Resource, desired *Snapshot, prior *Stored, reason Reason) *Plan {
	c := &Change{Addr: r.Addr, Action: Start, Resource: r, Desired: desired, Prior: prior,
		Observed: providers.Observed{State: providers.StateExited}, Reason: reason,
		CreateBeforeDestroy: r.Lifecycle.CreateBeforeDestroy}
	c.setDesired()
	return &Plan{Changes: []*Change{c}}
}

// sharedReadiness warns of a create_before_destroy replace whose new
// instance is checked at the address its old one answers (the same
// http URL or tcp address): the old instance, still running, may pass
// the new one's check, and the new one is taken for ready before it
// serves (a fixed-port server tried on a real stack: nginx answered 502
// while the new instances, checked "healthy" through the old ones, had
// not bound yet). nil otherwise, and nil where the runtime settles the
// doubt itself: a check of a port of this host on a runtime that tells
// whose processes listen there (spec.RuntimeSchema.OwnsListeners) holds
// the new instance until it listens there too (engine.AwaitOwnListener).
func sharedReadiness(c *Change, schemas map[string]spec.RuntimeSchema) *hcl.Diagnostic {
	if c.Action != Replace || !c.CreateBeforeDestroy || c.Resource == nil || c.Resource.Health == nil ||
		c.Prior == nil || c.Prior.Snapshot == nil {
		return nil
	}
	h := c.Resource.Health
	if _, local := h.LocalPort(); local && schemas[c.Resource.Runtime.Type].OwnsListeners {
		return nil
	}
	key, target := "", ""
	switch h.Kind {
	case spec.HealthHTTP:
		key, target = "http", h.HTTP
	case spec.HealthTCP:
		key, target = "tcp", h.TCP
	default:
		return nil
	}
	old, ok := c.Prior.Snapshot.Values["health"]
	if !ok || old.IsNull() || !old.Type().IsObjectType() || !old.Type().HasAttribute(key) {
		return nil
	}
	v := old.GetAttr(key)
	if v.IsNull() || !v.IsKnown() || v.Type() != cty.String || v.AsString() != target {
		return nil
	}
	d := &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Readiness checked where the old instance answers",
		Detail: fmt.Sprintf("%s is replaced create_before_destroy, and its new instance's health check (%s %s) is the old one's: "+
			"the old instance, still running, may pass it, and the new one be taken for ready before it serves. Give the new "+
			"instance an address of its own for the replace (a port that changes with it, or a check of its own admin port).",
			c.Addr, key, target)}
	if rng, ok := c.Resource.Ranges.Get("health"); ok {
		d.Subject = &rng
	}
	return d
}
