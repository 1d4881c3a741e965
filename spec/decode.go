package spec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"
)

// Defaults of the language; docs/language.md lists the same values.
const (
	DefaultHealthInterval = 10 * time.Second
	DefaultHealthTimeout  = 5 * time.Second
	DefaultHealthRetries  = 3
	DefaultStartTimeout   = 60 * time.Second
	DefaultBackoff        = 200 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultMaxRestarts    = 5
	DefaultRestartWindow  = 60 * time.Second
	DefaultStopTimeout    = 10 * time.Second
	DefaultUmask          = os.FileMode(0o022)
	DefaultLogMaxSize     = 10 << 20
	DefaultLogMaxFiles    = 3
	DefaultModuleMemory   = 64 << 20
	DefaultCallTimeout    = 5 * time.Second
)

// RlimitNames lists the resource limits rlimits accepts.
var RlimitNames = []string{"as", "core", "cpu", "data", "fsize", "memlock", "nofile", "nproc", "stack"}

var (
	stringList = cty.List(cty.String)
	stringMap  = cty.Map(cty.String)
)

func (l *loader) decodeInstance(n *node, ctx *hcl.EvalContext, key Key) (*Resource, cty.Value, bool) {
	r := &Resource{
		Addr: n.addr.Instance(key), DeclRange: n.decl, Ranges: make(Ranges, 0, len(n.attrs)+len(n.nested)),
		Runtime: n.runtime, Env: map[string]string{}, Attrs: map[string]cty.Value{},
		Sensitive: map[string]bool{}, Dir: l.cfg.Dir, Umask: DefaultUmask,
		Restart: Restart{Policy: RestartOnFailure, Backoff: DefaultBackoff, MaxBackoff: DefaultMaxBackoff,
			MaxRestarts: DefaultMaxRestarts, Window: DefaultRestartWindow},
		Stop: Stop{Signal: SIGTERM, Timeout: DefaultStopTimeout},
		Log:  Log{MaxSize: DefaultLogMaxSize, MaxFiles: DefaultLogMaxFiles},
	}
	if n.kind == KindJob {
		r.Restart.Policy = RestartNever
	}
	if n.kind == KindModule {
		r.Runtime = ModuleRuntime
		r.Limits = ModuleLimits{MemoryBytes: DefaultModuleMemory, CallTimeout: DefaultCallTimeout}
	}
	e := &instEval{l: l, ctx: ctx, n: n, r: r, raw: map[string]cty.Value{}}
	for name, a := range n.attrs {
		r.Ranges.Set(name, a.Expr.Range())
	}
	for name, nb := range n.nested {
		r.Ranges.Set(name, nb.def)
	}
	attr := func(name string, ty cty.Type) (cty.Value, *hcl.Attribute) {
		a := n.attrs[name]
		if a == nil {
			return cty.NilVal, nil
		}
		v, ok := e.value(a.Expr, ty, name)
		if !ok || v == cty.NilVal {
			return cty.NilVal, nil
		}
		return v, a
	}
	if n.kind == KindModule {
		l.decodeModule(e, attr)
	} else {
		l.decodeProcess(e, attr)
	}
	for _, name := range sortedKeys(n.nested) {
		nb := n.nested[name]
		switch name {
		case "health":
			r.Health = e.health(nb)
		case "restart":
			e.restart(nb)
		case "stop":
			e.stop(nb)
		case "log":
			e.log(nb)
		case "lifecycle":
			e.lifecycle(nb)
		case "reload":
			e.reload(nb)
		case "grants":
			e.grants(nb)
		case "limits":
			e.limits(nb)
		case "service":
			e.service(nb)
		case "resources":
			e.resources(nb)
		case "placement":
			e.placement(nb)
		default:
			if n.schema != nil {
				if bs := n.schema.block(name); bs != nil {
					e.runtimeBlock(nb, bs)
				}
			}
		}
	}
	for _, d := range n.deps {
		r.DependsOn = append(r.DependsOn, d.target.addr)
		if d.restart {
			r.RestartWith = append(r.RestartWith, d.target.addr)
		}
	}
	for x := range n.reach {
		r.DependsOn = append(r.DependsOn, x.addr)
	}
	r.DependsOn = uniqAddrs(r.DependsOn)
	r.RestartWith = uniqAddrs(r.RestartWith)
	if e.errs {
		return nil, cty.NilVal, false
	}
	if !n.referenced {
		return r, cty.NilVal, true // nobody reads this instance's value
	}
	obj := map[string]cty.Value{
		"name":    cty.StringVal(n.addr.Name),
		"address": cty.StringVal(r.Addr.String()),
	}
	for k, v := range e.raw {
		obj[k] = v
	}
	return r, cty.ObjectVal(obj), true
}

func sortedKeys[V any](m map[string]V) []string { return keysOf(m) }

func uniqAddrs(xs []Address) []Address {
	if len(xs) == 0 {
		return nil
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].Less(xs[j]) })
	out := xs[:1]
	for _, x := range xs[1:] {
		if x != out[len(out)-1] {
			out = append(out, x)
		}
	}
	return out
}

type attrFunc func(name string, ty cty.Type) (cty.Value, *hcl.Attribute)

func (l *loader) decodeProcess(e *instEval, attr attrFunc) {
	r, n := e.r, e.n
	if v, a := attr("command", stringList); a != nil {
		e.raw["command"] = v
		r.Command = stringsOf(v)
		if len(r.Command) == 0 {
			l.errorf(rangePtr(a.Expr.Range()), "Empty command",
				"The command of %s is an empty list; give the program and its arguments, as in [\"/usr/bin/env\", \"sleep\", \"60\"].", r.Addr)
			e.errs = true
		} else if strings.TrimSpace(r.Command[0]) == "" {
			l.errorf(rangePtr(a.Expr.Range()), "Empty command",
				"The first element of the command of %s, the program to run, is empty.", r.Addr)
			e.errs = true
		}
	} else if n.attrs["command"] != nil && n.schema != nil && n.schema.CommandRequired && !e.errs {
		l.errorf(rangePtr(n.attrs["command"].Expr.Range()), "Empty command",
			"The command of %s is null; %s starts a native process and needs one.", r.Addr, r.Runtime)
		e.errs = true
	}
	if v, a := attr("env", stringMap); a != nil {
		e.raw["env"] = v
		for k, x := range v.AsValueMap() {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				l.errorf(rangePtr(a.Expr.Range()), "Invalid environment variable name",
					"%q is not a valid environment variable name for %s.", k, r.Addr)
				e.errs = true
				continue
			}
			r.Env[k] = x.AsString()
		}
	}
	if v, a := attr("dir", cty.String); a != nil {
		e.raw["dir"] = v
		r.Dir = absPath(l.cfg.Dir, v.AsString())
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"user", &r.User}, {"group", &r.Group}} {
		if v, a := attr(f.name, cty.String); a != nil {
			e.raw[f.name] = v
			*f.dst = v.AsString()
			if *f.dst == "" {
				l.errorf(rangePtr(a.Expr.Range()), "Empty "+f.name, "%s of %s is empty; remove it to run as orch's own %s.", f.name, r.Addr, f.name)
				e.errs = true
			}
		}
	}
	if v, a := attr("umask", cty.String); a != nil {
		e.raw["umask"] = v
		m, err := strconv.ParseUint(v.AsString(), 8, 32)
		if err != nil || m > 0o777 {
			l.errorf(rangePtr(a.Expr.Range()), "Invalid umask",
				"umask must be an octal string from \"000\" to \"777\", such as \"0022\"; got %q.", v.AsString())
			e.errs = true
		} else {
			r.Umask = os.FileMode(m)
		}
	}
	if v, a := attr("rlimits", cty.Map(cty.Number)); a != nil {
		e.raw["rlimits"] = v
		r.Rlimits = map[string]uint64{}
		for k, x := range v.AsValueMap() {
			if !contains(RlimitNames, k) {
				l.errorf(rangePtr(a.Expr.Range()), "Unknown resource limit", "%s",
					withSuggestion(fmt.Sprintf("%q is not a resource limit orch can set; use one of %s.", k, quoteList(RlimitNames)), k, RlimitNames))
				e.errs = true
				continue
			}
			var u uint64
			if err := gocty.FromCtyValue(x, &u); err != nil {
				l.errorf(rangePtr(a.Expr.Range()), "Invalid resource limit", "rlimits.%s must be a whole number, zero or more.", k)
				e.errs = true
				continue
			}
			r.Rlimits[k] = u
		}
	}
	if n.schema != nil {
		for _, as := range n.schema.Daemon {
			v := l.schemaAttr(e, n.attrs[as.Name], as, n.decl)
			if v != cty.NilVal {
				r.Attrs[as.Name] = v
				e.raw[as.Name] = v
			}
		}
	} else if n.dynamic {
		for name, a := range n.attrs {
			if isCoreAttr(name) {
				continue
			}
			if v, ok := e.value(a.Expr, cty.DynamicPseudoType, name); ok && v != cty.NilVal {
				r.Attrs[name] = v
				e.raw[name] = v
			}
		}
	}
}

func isCoreAttr(name string) bool {
	for _, a := range daemonSchema.Attributes {
		if a.Name == name {
			return true
		}
	}
	return false
}

func (l *loader) decodeModule(e *instEval, attr attrFunc) {
	r := e.r
	if v, a := attr("source", cty.String); a != nil {
		e.raw["source"] = v
		src := v.AsString()
		r.Source = absPath(l.cfg.Dir, src)
		st, err := statConfigFile(l.fsys, l.cfg.Dir, src)
		switch {
		case src == "":
			l.errorf(rangePtr(a.Expr.Range()), "Empty module source", "source of %s must name a .wasm file or a plugin executable.", r.Addr)
			e.errs = true
		case err != nil:
			l.errorf(rangePtr(a.Expr.Range()), "Module source not found",
				"The source of %s, %s, does not exist. Build the module first, or fix the path (relative paths start at the configuration directory).", r.Addr, r.Source)
			e.errs = true
		case st.IsDir():
			l.errorf(rangePtr(a.Expr.Range()), "Module source is a directory",
				"The source of %s, %s, is a directory; name the .wasm file or the plugin executable inside it.", r.Addr, r.Source)
			e.errs = true
		}
	} else if e.n.attrs["source"] != nil && !e.errs {
		l.errorf(rangePtr(e.n.attrs["source"].Expr.Range()), "Empty module source", "source of %s is null.", r.Addr)
		e.errs = true
	}
	if a := e.n.attrs["sha256"]; a != nil {
		r.SHA256 = e.sha256(a)
	}
	if r.Source != "" && !e.errs {
		hash, err := fileSHA256(l.fsys, l.cfg.Dir, r.Source)
		switch {
		case err != nil:
			l.errorf(rangePtr(e.n.attrs["source"].Expr.Range()), "Module source unreadable",
				"The source of %s, %s, cannot be read: %v.", r.Addr, r.Source, err)
			e.errs = true
		case r.SHA256 != "" && r.SHA256 != hash:
			l.errorf(rangePtr(e.n.attrs["sha256"].Expr.Range()), "Module checksum mismatch",
				"%s pins sha256 = %q, but %s has sha256 %q. Rebuild or restore the file, or pin the new hash if the change is intended.",
				r.Addr, r.SHA256, r.Source, hash)
			e.errs = true
		default:
			r.SourceHash = hash
			if err := checkModuleFile(l.fsys, l.cfg.Dir, r.Source); err != nil {
				l.errorf(rangePtr(e.n.attrs["source"].Expr.Range()), "Not a module",
					"The source of %s, %s, %v: a module is a WebAssembly file (it starts with \\0asm) or a plugin executable.", r.Addr, r.Source, err)
				e.errs = true
			}
		}
	}
	if v, a := attr("config", cty.DynamicPseudoType); a != nil {
		e.raw["config"] = v
		r.Config = v
	}
}

func stringsOf(v cty.Value) []string {
	out := make([]string, 0, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		_, x := it.Element()
		if x.IsNull() {
			out = append(out, "")
			continue
		}
		out = append(out, x.AsString())
	}
	return out
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// nested-block helpers

func (e *instEval) str(nb *nestedBlock, name string) (string, *hcl.Attribute) {
	a := nb.attrs[name]
	if a == nil {
		return "", nil
	}
	v, ok := e.value(a.Expr, cty.String, nb.typ+"."+name)
	if !ok || v == cty.NilVal {
		return "", nil
	}
	return v.AsString(), a
}

func (e *instEval) duration(nb *nestedBlock, name string, dst *time.Duration) *hcl.Attribute {
	s, a := e.str(nb, name)
	if a == nil {
		return nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		e.l.errorf(rangePtr(a.Expr.Range()), "Invalid duration", "%s.%s of %s: %s.", nb.typ, name, e.r.Addr, err)
		e.errs = true
		return nil
	}
	*dst = d
	return a
}

func (e *instEval) integer(nb *nestedBlock, name string, min int, dst *int) *hcl.Attribute {
	a := nb.attrs[name]
	if a == nil {
		return nil
	}
	v, ok := e.value(a.Expr, cty.Number, nb.typ+"."+name)
	if !ok || v == cty.NilVal {
		return nil
	}
	var i int
	if err := gocty.FromCtyValue(v, &i); err != nil || i < min {
		e.l.errorf(rangePtr(a.Expr.Range()), "Invalid number", "%s.%s of %s must be a whole number, %d or more.", nb.typ, name, e.r.Addr, min)
		e.errs = true
		return nil
	}
	*dst = i
	return a
}

func (e *instEval) boolean(nb *nestedBlock, name string, dst *bool) {
	a := nb.attrs[name]
	if a == nil {
		return
	}
	if v, ok := e.value(a.Expr, cty.Bool, nb.typ+"."+name); ok && v != cty.NilVal {
		*dst = v.True()
	}
}

func (e *instEval) health(nb *nestedBlock) *Health {
	h := &Health{Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout, Retries: DefaultHealthRetries,
		StartTimeout: DefaultStartTimeout}
	var probes []string
	if a := nb.attrs["exec"]; a != nil {
		if v, ok := e.value(a.Expr, stringList, "health.exec"); ok && v != cty.NilVal {
			h.Kind, h.Exec = HealthExec, stringsOf(v)
			probes = append(probes, "exec")
			if len(h.Exec) == 0 || h.Exec[0] == "" {
				e.l.errorf(rangePtr(a.Expr.Range()), "Empty command", "health.exec of %s must give a program to run.", e.r.Addr)
				e.errs = true
			}
		}
	}
	if s, a := e.str(nb, "http"); a != nil {
		h.Kind, h.HTTP = HealthHTTP, s
		probes = append(probes, "http")
		if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			e.l.errorf(rangePtr(a.Expr.Range()), "Invalid health URL",
				"health.http of %s must be an http:// or https:// URL with a host, such as \"http://127.0.0.1:8080/healthz\"; got %q.", e.r.Addr, s)
			e.errs = true
		}
	}
	if s, a := e.str(nb, "tcp"); a != nil {
		h.Kind, h.TCP = HealthTCP, s
		probes = append(probes, "tcp")
		if host, port, err := net.SplitHostPort(s); err != nil || host == "" || !validPort(port) {
			e.l.errorf(rangePtr(a.Expr.Range()), "Invalid health address",
				"health.tcp of %s must be host:port, such as \"127.0.0.1:5432\"; got %q.", e.r.Addr, s)
			e.errs = true
		}
	}
	e.boolean(nb, "notify", &h.Notify)
	if wa := e.duration(nb, "watchdog", &h.Watchdog); wa != nil && !h.Notify {
		e.l.errorf(rangePtr(wa.Expr.Range()), "Watchdog without notify",
			"health.watchdog of %s needs notify = true: the watchdog is the daemon's WATCHDOG=1 on its NOTIFY_SOCKET.", e.r.Addr)
		e.errs = true
	}
	if h.Notify {
		h.Kind = HealthNotify
		probes = append(probes, "notify")
	}
	switch {
	case len(probes) == 0 && !e.errs:
		e.l.errorf(rangePtr(nb.def), "Health check without a probe",
			"The health block of %s needs one of exec, http, tcp or notify = true.", e.r.Addr)
		e.errs = true
	case len(probes) > 1:
		// At the probe written second: the one to remove, most likely.
		at := nb.def
		var first *hcl.Range
		for _, p := range probes {
			a := nb.attrs[p]
			if a == nil {
				continue
			}
			r := a.NameRange
			if first == nil || r.Start.Byte < first.Start.Byte {
				if first != nil {
					at = *first
				}
				first = &r
			} else if at == nb.def || r.Start.Byte < at.Start.Byte {
				at = r
			}
		}
		e.l.errorf(rangePtr(at), "Conflicting health probes",
			"The health block of %s sets %s; a health check has exactly one probe. Keep one.", e.r.Addr, strings.Join(probes, " and "))
		e.errs = true
	}
	e.duration(nb, "interval", &h.Interval)
	e.duration(nb, "timeout", &h.Timeout)
	e.duration(nb, "start_period", &h.StartPeriod)
	e.duration(nb, "start_timeout", &h.StartTimeout)
	e.integer(nb, "retries", 1, &h.Retries)
	if h.Interval == 0 && !e.errs {
		at := nb.def
		if a := nb.attrs["interval"]; a != nil {
			at = a.Expr.Range()
		}
		e.l.errorf(rangePtr(at), "Invalid duration", "health.interval of %s must be more than zero.", e.r.Addr)
		e.errs = true
	}
	return h
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 65536
}

func (e *instEval) restart(nb *nestedBlock) {
	rs := &e.r.Restart
	if s, a := e.str(nb, "policy"); a != nil {
		p, err := ParseRestartPolicy(s)
		if err != nil {
			msg := err.Error()
			if sug := suggest(s, restartNames[:]); sug != "" {
				msg += fmt.Sprintf(". Did you mean %q?", sug)
			}
			e.l.errorf(rangePtr(a.Expr.Range()), "Invalid restart policy", "restart.policy of %s: %s", e.r.Addr, msg)
			e.errs = true
		} else {
			rs.Policy = p
		}
	}
	e.duration(nb, "backoff", &rs.Backoff)
	mb := e.duration(nb, "max_backoff", &rs.MaxBackoff)
	e.integer(nb, "max_restarts", 0, &rs.MaxRestarts)
	e.duration(nb, "window", &rs.Window)
	if rs.MaxBackoff < rs.Backoff && !e.errs {
		rng := nb.def
		if mb != nil {
			rng = mb.Expr.Range()
		}
		e.l.errorf(&rng, "Invalid backoff", "restart.max_backoff of %s (%s) is less than restart.backoff (%s).", e.r.Addr, rs.MaxBackoff, rs.Backoff)
		e.errs = true
	}
}

func (e *instEval) stop(nb *nestedBlock) {
	if s, a := e.str(nb, "signal"); a != nil {
		sig, err := ParseSignal(s)
		if err != nil {
			e.l.errorf(rangePtr(a.Expr.Range()), "Invalid signal", "stop.signal of %s: %s.", e.r.Addr, err)
			e.errs = true
		} else {
			e.r.Stop.Signal = sig
		}
	}
	e.duration(nb, "timeout", &e.r.Stop.Timeout)
}

func (e *instEval) log(nb *nestedBlock) {
	if s, a := e.str(nb, "max_size"); a != nil {
		n, err := ParseSize(s)
		if err != nil || n < 4096 {
			if err == nil {
				err = fmt.Errorf("%q is below the minimum of 4KiB", s)
			}
			e.l.errorf(rangePtr(a.Expr.Range()), "Invalid size", "log.max_size of %s: %s.", e.r.Addr, err)
			e.errs = true
		} else {
			e.r.Log.MaxSize = int64(n)
		}
	}
	e.integer(nb, "max_files", 0, &e.r.Log.MaxFiles)
}

func (e *instEval) lifecycle(nb *nestedBlock) {
	lc := &e.r.Lifecycle
	e.boolean(nb, "create_before_destroy", &lc.CreateBeforeDestroy)
	e.boolean(nb, "prevent_destroy", &lc.PreventDestroy)
	e.integer(nb, "max_parallel", 1, &lc.MaxParallel)
	a := nb.attrs["ignore_changes"]
	if a == nil {
		return
	}
	known := schemaAttrNames(schemaFor(e.n.kind))
	if e.n.schema != nil {
		known = append(known, attrNames(e.n.schema.Daemon)...)
		for _, b := range e.n.schema.Blocks {
			known = append(known, b.Name)
		}
	}
	known = append(known, "health", "restart", "stop", "log", "grants", "limits", "service", "resources", "placement")
	exprs, d := hcl.ExprList(a.Expr)
	if d.HasErrors() {
		e.l.errorf(rangePtr(a.Expr.Range()), "Invalid ignore_changes", "ignore_changes must be a list of attribute names, such as [env, restart].")
		e.errs = true
		return
	}
	for _, x := range exprs {
		var name string
		if t, d := hcl.AbsTraversalForExpr(x); !d.HasErrors() && len(t) == 1 {
			name = t.RootName()
		} else if v, d := x.Value(nil); !d.HasErrors() && v.Type() == cty.String && !v.IsNull() {
			name = v.AsString()
		}
		if name == "" || (!contains(known, name) && !e.n.dynamic) || contains([]string{"count", "for_each", "depends_on"}, name) {
			e.l.errorf(rangePtr(x.Range()), "Invalid ignore_changes entry", "%s",
				withSuggestion("Each entry of ignore_changes must name an attribute or block of this "+e.n.kind.String()+".", name, known))
			e.errs = true
			continue
		}
		lc.IgnoreChanges = append(lc.IgnoreChanges, name)
	}
}

// reload reads reload { signal, on }: the entries of on that name an
// attribute of the daemon (env, command) are Attrs; the others are
// evaluated (file("nginx.conf")) into Inputs.
func (e *instEval) reload(nb *nestedBlock) {
	rl := &Reload{Signal: Signal{Name: "SIGHUP", Num: 1}}
	if s, a := e.str(nb, "signal"); a != nil {
		sig, err := ParseSignal(s)
		if err != nil {
			e.l.errorf(rangePtr(a.Expr.Range()), "Invalid signal", "reload.signal of %s: %s.", e.r.Addr, err)
			e.errs = true
		} else {
			rl.Signal = sig
		}
	}
	a := nb.attrs["on"]
	if a == nil {
		return
	}
	exprs, d := hcl.ExprList(a.Expr)
	if d.HasErrors() {
		e.l.errorf(rangePtr(a.Expr.Range()), "Invalid reload.on", "reload.on must be a list of attribute names and inputs, such as [env, file(\"nginx.conf\")].")
		e.errs = true
		return
	}
	known := schemaAttrNames(schemaFor(e.n.kind))
	if e.n.schema != nil {
		known = append(known, attrNames(e.n.schema.Daemon)...)
	}
	for _, x := range exprs {
		if t, d := hcl.AbsTraversalForExpr(x); !d.HasErrors() && len(t) == 1 {
			name := t.RootName()
			if !contains(known, name) || contains([]string{"count", "for_each", "depends_on", "runtime", "restart_with"}, name) {
				e.l.errorf(rangePtr(x.Range()), "Invalid reload.on entry", "%s",
					withSuggestion("A bare name in reload.on must name an attribute of this daemon whose change the signal applies.", name, known))
				e.errs = true
				continue
			}
			rl.Attrs = append(rl.Attrs, name)
			continue
		}
		v, ok := e.value(x, cty.String, "reload.on")
		if !ok || v == cty.NilVal {
			continue
		}
		rl.Inputs = append(rl.Inputs, v.AsString())
	}
	e.r.Reload = rl
}

func (e *instEval) grants(nb *nestedBlock) {
	g := &Grants{Dirs: map[string]string{}}
	if a := nb.attrs["dirs"]; a != nil {
		if v, ok := e.value(a.Expr, stringMap, "grants.dirs"); ok && v != cty.NilVal {
			for guest, host := range v.AsValueMap() {
				hp := absPath(e.l.cfg.Dir, host.AsString())
				at := elemRange(a.Expr, cty.Path{cty.IndexStep{Key: cty.StringVal(guest)}})
				if !strings.HasPrefix(guest, "/") {
					e.l.errorf(rangePtr(at), "Invalid grant", "grants.dirs of %s: the guest path %q must be absolute, such as \"/data\".", e.r.Addr, guest)
					e.errs = true
					continue
				}
				if st, err := statConfigFile(e.l.fsys, e.l.cfg.Dir, host.AsString()); err != nil || !st.IsDir() {
					e.l.errorf(rangePtr(at), "Granted directory not found",
						"grants.dirs of %s maps %q to %s, which is not an existing directory.", e.r.Addr, guest, hp)
					e.errs = true
					continue
				}
				g.Dirs[guest] = hp
			}
		}
	}
	if a := nb.attrs["writable"]; a != nil {
		if v, ok := e.value(a.Expr, stringList, "grants.writable"); ok && v != cty.NilVal {
			for i, w := range stringsOf(v) {
				if _, ok := g.Dirs[w]; !ok {
					e.l.errorf(rangePtr(elemRange(a.Expr, cty.Path{cty.IndexStep{Key: cty.NumberIntVal(int64(i))}})), "Invalid grant", "grants.writable of %s names %q, which is not a guest path of grants.dirs.", e.r.Addr, w)
					e.errs = true
					continue
				}
				g.Writable = append(g.Writable, w)
			}
			sort.Strings(g.Writable)
		}
	}
	if a := nb.attrs["env"]; a != nil {
		if v, ok := e.value(a.Expr, stringList, "grants.env"); ok && v != cty.NilVal {
			g.Env = stringsOf(v)
			sort.Strings(g.Env)
		}
	}
	e.r.Grants = g
}

func (e *instEval) limits(nb *nestedBlock) {
	if s, a := e.str(nb, "memory"); a != nil {
		n, err := ParseSize(s)
		if err != nil || n < 64<<10 || n > 4<<30 {
			if err == nil {
				err = fmt.Errorf("%q is outside 64KiB to 4GiB", s)
			}
			e.l.errorf(rangePtr(a.Expr.Range()), "Invalid size", "limits.memory of %s: %s.", e.r.Addr, err)
			e.errs = true
		} else {
			e.r.Limits.MemoryBytes = n
		}
	}
	e.duration(nb, "call_timeout", &e.r.Limits.CallTimeout)
}

// ParseSize reads a size such as "512KiB", "10MB", "1GiB" or "4096" (bytes).
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q is not a size; write a whole number with a unit, such as \"64MiB\"", s)
	}
	n, err := strconv.ParseUint(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", s)
	}
	// K, M, G and T alone are binary, as in systemd's MemoryMax=.
	units := map[string]uint64{"": 1, "B": 1, "KB": 1000, "KiB": 1 << 10, "K": 1 << 10,
		"MB": 1000 * 1000, "MiB": 1 << 20, "M": 1 << 20,
		"GB": 1000 * 1000 * 1000, "GiB": 1 << 30, "G": 1 << 30,
		"TB": 1000 * 1000 * 1000 * 1000, "TiB": 1 << 40, "T": 1 << 40}
	m, ok := units[strings.TrimSpace(t[i:])]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit; use B, K, KB, KiB, M, MB, MiB, G, GB, GiB, T, TB or TiB", s)
	}
	if n > (1<<63)/m {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * m, nil
}

func (l *loader) toString(v cty.Value, rng hcl.Range, name string) (string, bool) {
	v, _ = v.Unmark()
	s, err := convertTo(v, cty.String)
	if err != nil || s.IsNull() || !s.IsKnown() {
		l.errorf(&rng, "Incorrect attribute value type", "%s must be a string.", name)
		return "", false
	}
	return s.AsString(), true
}

func (l *loader) toBool(v cty.Value, rng hcl.Range, name string) (bool, bool) {
	v, _ = v.Unmark()
	b, err := convertTo(v, cty.Bool)
	if err != nil || b.IsNull() || !b.IsKnown() {
		l.errorf(&rng, "Incorrect attribute value type", "%s must be true or false.", name)
		return false, false
	}
	return b.True(), true
}

// runtimeBlock evaluates a nested block a runtime kind adds (docker's
// build) into an object in Attrs, then lets the schema resolve it.
func (e *instEval) runtimeBlock(nb *nestedBlock, bs *BlockSchema) {
	obj := map[string]cty.Value{}
	before := e.errs
	e.errs = false
	for _, as := range bs.Attrs {
		a := nb.attrs[as.Name]
		if a == nil {
			if as.Default != cty.NilVal {
				obj[as.Name] = as.Default
			} else {
				obj[as.Name] = cty.NullVal(ctyTypeOr(as.Type))
			}
			continue
		}
		v, ok := e.value(a.Expr, ctyTypeOr(as.Type), bs.Name+"."+as.Name)
		switch {
		case !ok:
			continue
		case v == cty.NilVal:
			v = as.Default
			if v == cty.NilVal {
				v = cty.NullVal(ctyTypeOr(as.Type))
			}
		case as.Check != nil:
			if err := as.Check(v); err != nil {
				e.checkFailed(a, as.Name, bs.Name, err)
				continue
			}
		}
		if as.Sensitive {
			e.r.Sensitive[bs.Name+"."+as.Name] = true
		}
		obj[as.Name] = v
	}
	failed := e.errs
	e.errs = before || failed
	if failed {
		return
	}
	v := cty.ObjectVal(obj)
	if bs.Resolve != nil {
		rv, err := e.l.resolveBlock(bs, v)
		if err != nil {
			var ce *CheckError
			if errors.As(err, &ce) && ce.Attr != "" && nb.attrs[ce.Attr] != nil {
				e.checkFailed(nb.attrs[ce.Attr], ce.Attr, bs.Name, err)
				return
			}
			summary := "Invalid " + bs.Name + " block"
			if ce != nil && ce.Summary != "" {
				summary, err = ce.Summary, ce.Err
			}
			e.l.errorf(rangePtr(nb.def), summary, "%s of %s: %s.", bs.Name, e.r.Addr, strings.TrimSuffix(err.Error(), "."))
			e.errs = true
			return
		}
		v = rv
	}
	e.r.Attrs[bs.Name] = v
	e.raw[bs.Name] = v
}

func ctyTypeOr(t cty.Type) cty.Type {
	if t == cty.NilType {
		return cty.DynamicPseudoType
	}
	return t
}

// resolveBlock calls bs.Resolve once per distinct value in a load: the
// instances of a count share their build context, hashed once.
func (l *loader) resolveBlock(bs *BlockSchema, v cty.Value) (cty.Value, error) {
	key := bs.Name + "\x00" + v.GoString()
	l.resolvedMu.Lock()
	r, ok := l.resolved[key]
	if !ok {
		r = &resolution{}
		l.resolved[key] = r
	}
	l.resolvedMu.Unlock()
	r.once.Do(func() {
		r.v, r.err = bs.Resolve(v, FileContext{Dir: l.cfg.Dir, fsys: l.fsys})
	})
	return r.v, r.err
}

type resolution struct {
	once sync.Once
	v    cty.Value
	err  error
}

// checkModuleFile refuses a module source that is neither WebAssembly
// (its magic bytes) nor an executable file (a plugin): a text file or a
// data file named by mistake fails here, at its source line, not at
// apply.
func checkModuleFile(fsys fs.FS, dir, p string) error {
	f, err := openConfigFile(fsys, dir, p)
	if err != nil {
		return err
	}
	defer f.Close()
	var magic [4]byte
	n, _ := io.ReadFull(f, magic[:])
	if n == 4 && string(magic[:]) == "\x00asm" {
		return nil
	}
	st, err := statConfigFile(fsys, dir, p)
	if err != nil {
		return err
	}
	if st.Mode()&0o111 == 0 {
		return fmt.Errorf("is neither WebAssembly nor executable")
	}
	return nil
}
