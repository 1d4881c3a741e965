package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/orch-dev/orch/spec"
	"github.com/zclconf/go-cty/cty"
	ctyconvert "github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// ReloadAttr and ReloadInputsAttr are the snapshot attributes of a
// daemon's reload block: its signal and the attributes it applies, and a
// hash of the inputs it names (file contents), so that a change of one of
// those files plans a reload.
const (
	ReloadAttr       = "reload"
	ReloadInputsAttr = "reload_inputs"
)

// Snapshot is an instance's configuration flattened into named attribute
// values: what the planner diffs, what the state stores as "applied", and
// what the config hash is computed from.
type Snapshot struct {
	Kind    spec.Kind
	Runtime spec.Address
	// Values holds every attribute; an absent attribute is not in the map.
	Values map[string]cty.Value
	// Forces lists the attributes whose change forces replacement.
	Forces map[string]bool
	// Sensitive lists attribute paths never to print ("env.PASSWORD").
	Sensitive map[string]bool
	// DependsOn is the instance's dependencies (instance addresses), kept
	// so that a removed instance is still deleted in dependency order.
	DependsOn []spec.Address
	// PreventDestroy and CreateBeforeDestroy mirror the lifecycle block.
	PreventDestroy      bool
	CreateBeforeDestroy bool
}

// SnapshotOf flattens a declared instance. deps are its instance-level
// dependencies (from Config.Graph); schema is its runtime kind's schema
// (nil for modules and plugin runtimes). Sensitive values come out
// redacted (see Redacted), salted with the instance's address.
func SnapshotOf(r *spec.Resource, deps []spec.Address, schema *spec.RuntimeSchema) *Snapshot {
	return snapshotOf(r, deps, schema, nil)
}

// sharer hands the snapshots Make builds one cty.Value for the parts
// that many instances have alike (a runtime, a directory, a command, the
// stop, log and restart blocks, the set of attributes that force
// replacement), as SnapshotDecoder does for decoded ones: cty values are
// immutable, and each cty.ObjectVal made its own object type. The
// desired snapshots of 10,000 daemons took 38 MB, most of it the same
// few values over again (issue 19). nil shares nothing.
type sharer struct {
	strs    map[string]cty.Value
	lists   map[string]cty.Value
	stop    map[spec.Stop]cty.Value
	log     map[spec.Log]cty.Value
	restart map[spec.Restart]cty.Value
	forces  map[string]map[string]bool
	umasks  map[os.FileMode]cty.Value
	key     []byte // forceSet's scratch
}

func newSharer() *sharer {
	return &sharer{strs: map[string]cty.Value{}, lists: map[string]cty.Value{}, stop: map[spec.Stop]cty.Value{},
		log: map[spec.Log]cty.Value{}, restart: map[spec.Restart]cty.Value{}, forces: map[string]map[string]bool{},
		umasks: map[os.FileMode]cty.Value{}}
}

// maxShared bounds each of a sharer's maps: past it, values are made
// anew (a configuration whose every instance differs gains nothing).
const maxShared = 4096

func (sh *sharer) str(x string) cty.Value {
	if sh == nil {
		return cty.StringVal(x)
	}
	if v, ok := sh.strs[x]; ok {
		return v
	}
	v := cty.StringVal(x)
	if len(sh.strs) < maxShared {
		sh.strs[x] = v
	}
	return v
}

func (sh *sharer) list(xs []string) cty.Value {
	if sh == nil {
		return strList(xs)
	}
	k := strings.Join(xs, "\x00")
	if v, ok := sh.lists[k]; ok {
		return v
	}
	v := strList(xs)
	if len(sh.lists) < maxShared {
		sh.lists[k] = v
	}
	return v
}

func shared[K comparable](sh *sharer, m map[K]cty.Value, k K, mk func() cty.Value) cty.Value {
	if sh == nil {
		return mk()
	}
	if v, ok := m[k]; ok {
		return v
	}
	v := mk()
	if len(m) < maxShared {
		m[k] = v
	}
	return v
}

// forceSet returns the set of names (which it sorts), shared with the
// snapshots before that had the same one: it is made only when it is
// new. Nothing changes a snapshot's Forces once made.
func (sh *sharer) forceSet(names []string) map[string]bool {
	sort.Strings(names)
	names = slices.Compact(names)
	mk := func() map[string]bool {
		f := make(map[string]bool, len(names))
		for _, n := range names {
			f[n] = true
		}
		return f
	}
	if sh == nil {
		return mk()
	}
	sh.key = sh.key[:0]
	for i, n := range names {
		if i > 0 {
			sh.key = append(sh.key, 0)
		}
		sh.key = append(sh.key, n...)
	}
	if s, ok := sh.forces[string(sh.key)]; ok {
		return s
	}
	f := mk()
	if len(sh.forces) < maxShared {
		sh.forces[string(sh.key)] = f
	}
	return f
}

// umask is the snapshot value of a umask ("0022").
func (sh *sharer) umask(m os.FileMode) cty.Value {
	mk := func() cty.Value { return cty.StringVal(fmt.Sprintf("%04o", uint32(m))) }
	if sh == nil {
		return mk()
	}
	return shared(sh, sh.umasks, m, mk)
}

func snapshotOf(r *spec.Resource, deps []spec.Address, schema *spec.RuntimeSchema, sh *sharer) *Snapshot {
	s := &Snapshot{
		Kind: r.Addr.Kind, Runtime: r.Runtime,
		Sensitive: map[string]bool{}, PreventDestroy: r.Lifecycle.PreventDestroy,
		CreateBeforeDestroy: r.Lifecycle.CreateBeforeDestroy,
	}
	// the values, made into a map of their number at the end (a daemon's
	// usual 8 fit the smallest map), and the names of those that force a
	// replacement, made into a set shared with the snapshots that have
	// the same one
	type nameValue struct {
		name string
		v    cty.Value
	}
	values := make([]nameValue, 0, 16)
	forced := make([]string, 0, 16)
	for k := range r.Sensitive {
		s.Sensitive[k] = true
	}
	for _, d := range deps {
		if d.Kind != spec.KindRuntime {
			s.DependsOn = append(s.DependsOn, d)
		}
	}
	set := func(name string, v cty.Value, forces bool) {
		if v == cty.NilVal || v.IsNull() {
			return
		}
		values = append(values, nameValue{name, v})
		if forces {
			forced = append(forced, name)
		}
	}
	if r.Addr.Kind == spec.KindModule {
		set("source", cty.StringVal(r.Source), true)
		if r.SHA256 != "" {
			set("sha256", cty.StringVal(r.SHA256), true)
		}
		if r.SourceHash != "" {
			// A rebuilt binary is a new module: replaced on reload.
			set("source_sha256", cty.StringVal(r.SourceHash), true)
		}
		set("config", r.Config, true)
		if g := r.Grants; g != nil {
			set("grants", cty.ObjectVal(map[string]cty.Value{
				"dirs": strMap(g.Dirs), "writable": strList(g.Writable), "env": strList(g.Env),
			}), true)
		}
		set("limits", cty.ObjectVal(map[string]cty.Value{
			"memory":       cty.NumberUIntVal(r.Limits.MemoryBytes),
			"call_timeout": dur(r.Limits.CallTimeout),
		}), true)
	} else {
		set("runtime", sh.str(r.Runtime.String()), true)
		if len(r.Command) > 0 {
			set("command", sh.list(r.Command), true)
		}
		if len(r.Env) > 0 {
			set("env", strMap(r.Env), true)
		}
		set("dir", sh.str(r.Dir), true)
		if r.User != "" {
			set("user", cty.StringVal(r.User), true)
		}
		if r.Group != "" {
			set("group", cty.StringVal(r.Group), true)
		}
		set("umask", sh.umask(r.Umask), true)
		if len(r.Rlimits) > 0 {
			m := map[string]cty.Value{}
			for k, v := range r.Rlimits {
				m[k] = cty.NumberUIntVal(v)
			}
			set("rlimits", cty.MapVal(m), true)
		}
		for name, v := range r.Attrs {
			forces := true // unknown to the schema (plugin runtimes): be safe
			if schema != nil {
				for _, a := range schema.Daemon {
					if a.Name == name {
						forces = a.ForcesReplacement
						if a.Sensitive {
							s.Sensitive[name] = true
						}
					}
				}
			}
			set(name, v, forces)
		}
		if rl := r.Reload; rl != nil {
			on := make([]cty.Value, 0, len(rl.Attrs))
			for _, a := range rl.Attrs {
				on = append(on, cty.StringVal(a))
			}
			onv := cty.ListValEmpty(cty.String)
			if len(on) > 0 {
				onv = cty.ListVal(on)
			}
			set(ReloadAttr, cty.ObjectVal(map[string]cty.Value{"signal": cty.StringVal(rl.Signal.Name), "on": onv}), false)
			h := sha256.New()
			for _, in := range rl.Inputs {
				fmt.Fprintf(h, "%d:%s", len(in), in)
			}
			set(ReloadInputsAttr, cty.StringVal(hex.EncodeToString(h.Sum(nil))), false)
		}
		if h := r.Health; h != nil {
			hv := map[string]cty.Value{
				"interval": dur(h.Interval), "timeout": dur(h.Timeout),
				"retries": cty.NumberIntVal(int64(h.Retries)), "start_period": dur(h.StartPeriod),
			}
			if h.StartTimeout != spec.DefaultStartTimeout {
				// Only when set otherwise: configurations applied before
				// start_timeout existed keep their hash.
				hv["start_timeout"] = dur(h.StartTimeout)
			}
			switch h.Kind {
			case spec.HealthExec:
				hv["exec"] = strList(h.Exec)
			case spec.HealthHTTP:
				hv["http"] = cty.StringVal(h.HTTP)
			case spec.HealthTCP:
				hv["tcp"] = cty.StringVal(h.TCP)
			case spec.HealthNotify:
				hv["notify"] = cty.True
				if h.Watchdog > 0 {
					hv["watchdog"] = dur(h.Watchdog)
				}
			}
			set("health", cty.ObjectVal(hv), false)
		}
		if sv := r.Service; sv != nil {
			// Applied without a restart: the engine moves the instance's
			// records and routes.
			v := map[string]cty.Value{
				"name": cty.StringVal(sv.Name), "host": cty.StringVal(sv.Host),
				"port": cty.NumberIntVal(int64(sv.Port)), "drain": dur(sv.Drain),
			}
			if sv.Route != nil {
				v["route"] = cty.StringVal(sv.Route.String())
			}
			if sv.MDNS != "" {
				v["mdns"] = cty.StringVal(sv.MDNS)
			}
			set("service", cty.ObjectVal(v), false)
		}
		if rs := r.Resources; !rs.IsZero() {
			v := map[string]cty.Value{}
			if rs.MemoryMax > 0 {
				v["memory_max"] = cty.NumberUIntVal(rs.MemoryMax)
			}
			if rs.CPUMax > 0 {
				v["cpu_max"] = cty.NumberFloatVal(rs.CPUMax)
			}
			if rs.PidsMax > 0 {
				v["pids_max"] = cty.NumberIntVal(rs.PidsMax)
			}
			set("resources", cty.ObjectVal(v), true)
		}
		if p := r.Placement; p != nil {
			set("placement", cty.ObjectVal(map[string]cty.Value{
				"node": cty.StringVal(p.Node), "labels": strMap(p.Labels), "spread": cty.BoolVal(p.Spread),
			}), true)
		}
		set("stop", shared(sh, sh.stopMap(), r.Stop, func() cty.Value {
			return cty.ObjectVal(map[string]cty.Value{
				"signal": cty.StringVal(r.Stop.Signal.Name), "timeout": dur(r.Stop.Timeout),
			})
		}), false)
		set("log", shared(sh, sh.logMap(), r.Log, func() cty.Value {
			return cty.ObjectVal(map[string]cty.Value{
				"max_size": cty.NumberIntVal(r.Log.MaxSize), "max_files": cty.NumberIntVal(int64(r.Log.MaxFiles)),
			})
		}), false)
	}
	set("restart", shared(sh, sh.restartMap(), r.Restart, func() cty.Value {
		return cty.ObjectVal(map[string]cty.Value{
			"policy": cty.StringVal(r.Restart.Policy.String()), "backoff": dur(r.Restart.Backoff),
			"max_backoff": dur(r.Restart.MaxBackoff), "max_restarts": cty.NumberIntVal(int64(r.Restart.MaxRestarts)),
			"window": dur(r.Restart.Window),
		})
	}), false)
	if len(r.RestartWith) > 0 {
		names := make([]string, len(r.RestartWith))
		for i, a := range r.RestartWith {
			names[i] = a.String()
		}
		set("restart_with", strList(names), false)
	}
	s.Values = make(map[string]cty.Value, len(values))
	for _, nv := range values {
		s.Values[nv.name] = nv.v
	}
	s.Forces = sh.forceSet(forced)
	if len(s.Sensitive) == 0 {
		return s // Redacted would return it as it is
	}
	return s.Redacted(r.Addr.String())
}

func (sh *sharer) stopMap() map[spec.Stop]cty.Value {
	if sh == nil {
		return nil
	}
	return sh.stop
}

func (sh *sharer) logMap() map[spec.Log]cty.Value {
	if sh == nil {
		return nil
	}
	return sh.log
}

func (sh *sharer) restartMap() map[spec.Restart]cty.Value {
	if sh == nil {
		return nil
	}
	return sh.restart
}

func strList(xs []string) cty.Value {
	if len(xs) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	vs := make([]cty.Value, len(xs))
	for i, x := range xs {
		vs[i] = cty.StringVal(x)
	}
	return cty.ListVal(vs)
}

func strMap(m map[string]string) cty.Value {
	if len(m) == 0 {
		return cty.MapValEmpty(cty.String)
	}
	vs := make(map[string]cty.Value, len(m))
	for k, v := range m {
		vs[k] = cty.StringVal(v)
	}
	return cty.MapVal(vs)
}

func dur(d time.Duration) cty.Value { return cty.StringVal(d.String()) }

// snapshotJSON is the stored form of a Snapshot; its field order and map
// key order are fixed, so equal snapshots encode to equal bytes.
type snapshotJSON struct {
	Format              int                        `json:"format"`
	Kind                string                     `json:"kind"`
	Runtime             string                     `json:"runtime,omitempty"`
	Values              map[string]json.RawMessage `json:"values"`
	Forces              []string                   `json:"forces,omitempty"`
	Sensitive           []string                   `json:"sensitive,omitempty"`
	DependsOn           []string                   `json:"depends_on,omitempty"`
	PreventDestroy      bool                       `json:"prevent_destroy,omitempty"`
	CreateBeforeDestroy bool                       `json:"create_before_destroy,omitempty"`
}

// Redacted returns s with every sensitive value replaced by a salted hash
// of it ("sensitive:sha256:..."): what is stored and hashed, so that a
// secret never reaches the state file or a saved plan, while a change of
// the secret still changes the snapshot. Applying it twice is harmless.
func (s *Snapshot) Redacted(salt string) *Snapshot {
	if len(s.Sensitive) == 0 {
		return s
	}
	c := *s
	c.Values = make(map[string]cty.Value, len(s.Values))
	for k, v := range s.Values {
		c.Values[k] = hashSensitive(v, k, salt, s.Sensitive)
	}
	return &c
}

func hashSensitive(v cty.Value, path, salt string, sensitive map[string]bool) cty.Value {
	if v.IsNull() || !v.IsKnown() {
		return v
	}
	if sensitive[path] {
		if v.Type() == cty.String && strings.HasPrefix(v.AsString(), sensitivePrefix) {
			return v
		}
		b, _ := ctyjson.Marshal(v, v.Type())
		h := sha256.Sum256([]byte(salt + "\x00" + path + "\x00" + string(b)))
		return cty.StringVal(sensitivePrefix + hex.EncodeToString(h[:]))
	}
	t := v.Type()
	switch {
	case t.IsMapType() || t.IsObjectType():
		m := v.AsValueMap()
		if len(m) == 0 {
			return v
		}
		out := make(map[string]cty.Value, len(m))
		for k, e := range m {
			out[k] = hashSensitive(e, path+"."+k, salt, sensitive)
		}
		if t.IsObjectType() {
			return cty.ObjectVal(out)
		}
		return mapOf(out)
	case t.IsListType() || t.IsTupleType():
		if v.LengthInt() == 0 {
			return v
		}
		var out []cty.Value
		i := 0
		for it := v.ElementIterator(); it.Next(); i++ {
			_, e := it.Element()
			out = append(out, hashSensitive(e, fmt.Sprintf("%s[%d]", path, i), salt, sensitive))
		}
		if t.IsTupleType() {
			return cty.TupleVal(out)
		}
		return listOf(out)
	}
	return v
}

// mapOf and listOf build a map or list whose elements may now differ in
// type (a number replaced by a hash string): then a string collection.
func mapOf(m map[string]cty.Value) cty.Value {
	var ty cty.Type
	for _, e := range m {
		if ty == cty.NilType {
			ty = e.Type()
		} else if !ty.Equals(e.Type()) {
			ty = cty.String
		}
	}
	for k, e := range m {
		if !e.Type().Equals(ty) {
			c, _ := ctyconvert.Convert(e, ty)
			m[k] = c
		}
	}
	return cty.MapVal(m)
}

func listOf(l []cty.Value) cty.Value {
	ty := l[0].Type()
	for _, e := range l {
		if !ty.Equals(e.Type()) {
			ty = cty.String
		}
	}
	for i, e := range l {
		if !e.Type().Equals(ty) {
			c, _ := ctyconvert.Convert(e, ty)
			l[i] = c
		}
	}
	return cty.ListVal(l)
}

const sensitivePrefix = "sensitive:sha256:"

// Encode returns the canonical JSON of s. Callers store Redacted
// snapshots only.
func (s *Snapshot) Encode() []byte {
	if b, ok := s.appendEncode(make([]byte, 0, 1024)); ok {
		return b
	}
	return s.encodeSlow()
}

// encodeSlow is Encode through encoding/json and cty/json: for what
// appendEncode does not handle, and the reference it is tested against.
func (s *Snapshot) encodeSlow() []byte {
	j := snapshotJSON{Format: 1, Kind: s.Kind.String(), Values: map[string]json.RawMessage{},
		PreventDestroy: s.PreventDestroy, CreateBeforeDestroy: s.CreateBeforeDestroy}
	if !s.Runtime.IsZero() {
		j.Runtime = s.Runtime.String()
	}
	for k, v := range s.Values {
		j.Values[k] = encodeValue(k, v)
	}
	j.Forces = sortedSet(s.Forces)
	j.Sensitive = sortedSet(s.Sensitive)
	for _, d := range s.DependsOn {
		j.DependsOn = append(j.DependsOn, d.String())
	}
	sort.Strings(j.DependsOn)
	b, err := json.Marshal(j)
	if err != nil {
		panic(err)
	}
	return b
}

// Hash is the SHA-256 of the canonical encoding: the config hash an
// instance runs with.
func (s *Snapshot) Hash() string {
	h := sha256.Sum256(s.Encode())
	return hex.EncodeToString(h[:])
}

// DecodeSnapshot reads what Encode wrote.
func DecodeSnapshot(b []byte) (*Snapshot, error) {
	if s, ok := decodeFast(b, nil); ok {
		return s, nil
	}
	return decodeSlow(b)
}

// decodeSlow is DecodeSnapshot through encoding/json and cty/json.
func decodeSlow(b []byte) (*Snapshot, error) {
	var j snapshotJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("stored configuration is not valid: %w", err)
	}
	if j.Format != 1 {
		return nil, fmt.Errorf("stored configuration has format %d; this orch reads format 1", j.Format)
	}
	s := &Snapshot{Kind: spec.ParseKind(j.Kind), Values: map[string]cty.Value{}, Forces: map[string]bool{},
		Sensitive: map[string]bool{}, PreventDestroy: j.PreventDestroy, CreateBeforeDestroy: j.CreateBeforeDestroy}
	if j.Runtime != "" {
		a, err := spec.ParseAddress(j.Runtime)
		if err != nil {
			return nil, err
		}
		s.Runtime = a
	}
	for k, raw := range j.Values {
		v, err := decodeValue(raw)
		if err != nil {
			return nil, fmt.Errorf("stored attribute %s: %w", k, err)
		}
		s.Values[k] = v
	}
	for _, f := range j.Forces {
		s.Forces[f] = true
	}
	for _, f := range j.Sensitive {
		s.Sensitive[f] = true
	}
	for _, d := range j.DependsOn {
		a, err := spec.ParseAddress(d)
		if err != nil {
			return nil, err
		}
		s.DependsOn = append(s.DependsOn, a)
	}
	return s, nil
}

// typedValue keeps a value's exact type, so that a list stays a list and a
// map a map across a round trip (ctyjson alone would infer tuples/objects).
type typedValue struct {
	Type  json.RawMessage `json:"t"`
	Value json.RawMessage `json:"v"`
}

func encodeValue(name string, v cty.Value) json.RawMessage {
	tb, err := ctyjson.MarshalType(v.Type())
	if err != nil {
		panic(fmt.Sprintf("planner: cannot encode the type of %s: %v", name, err)) // our bug: plain data
	}
	vb, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		panic(fmt.Sprintf("planner: cannot encode %s: %v", name, err))
	}
	b, _ := json.Marshal(typedValue{Type: tb, Value: vb})
	return b
}

func decodeValue(raw json.RawMessage) (cty.Value, error) {
	var tv typedValue
	if err := json.Unmarshal(raw, &tv); err != nil {
		return cty.NilVal, err
	}
	ty, err := ctyjson.UnmarshalType(tv.Type)
	if err != nil {
		return cty.NilVal, err
	}
	return ctyjson.Unmarshal(tv.Value, ty)
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		if v {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// isSensitive reports whether attribute name, or any path below it, is
// sensitive.
func (s *Snapshot) isSensitive(name string) bool {
	if s == nil {
		return false
	}
	if s.Sensitive[name] {
		return true
	}
	for k := range s.Sensitive {
		if len(k) > len(name) && k[:len(name)] == name && (k[len(name)] == '.' || k[len(name)] == '[') {
			return true
		}
	}
	return false
}

func quote(s string) string { return strconv.Quote(s) }
