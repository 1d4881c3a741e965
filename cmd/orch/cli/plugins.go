package cli

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/hcl/v2"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/providers/plugin"
	"github.com/orch-dev/orch/spec"
)

// providerSet wires the concrete backends: the built-in ones and the
// provider plugins the configurations loaded so far declare.
func (a *App) providerSet() executor.Providers {
	ps := providerSet()
	for kind, p := range a.pluginSet().all() {
		ps[kind] = p
	}
	return ps
}

// plugins holds the provider plugins of this orch process, one per runtime
// kind, each launched lazily (the first time its schema is needed, which
// is when a configuration naming it is loaded) and killed by close.
type plugins struct {
	mu     sync.Mutex
	byKind map[string]*plugin.Provider
	// frozen: a long-running engine holds the current set; a reload may
	// not add a kind or change a kind's binary.
	frozen bool
	log    func(string)
}

func (a *App) pluginSet() *plugins {
	if a.plugins == nil {
		a.plugins = &plugins{byKind: map[string]*plugin.Provider{}, log: func(line string) {
			if a.settings != nil && a.settings.LogLevel == "debug" {
				fmt.Fprintf(a.Stderr, "plugin: %s\n", line)
			}
		}}
	}
	return a.plugins
}

func (ps *plugins) all() map[string]*plugin.Provider {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make(map[string]*plugin.Provider, len(ps.byKind))
	for k, p := range ps.byKind {
		out[k] = p
	}
	return out
}

func (ps *plugins) freeze() {
	ps.mu.Lock()
	ps.frozen = true
	ps.mu.Unlock()
}

// close kills every plugin this process launched.
func (ps *plugins) close() {
	if ps == nil {
		return
	}
	for _, p := range ps.all() {
		p.Close()
	}
	goplugin.CleanupClients()
}

// schemas launches the provider plugins cfg declares, when not yet
// running, and returns their schemas for spec.Options.PluginSchemas. Every
// problem is a diagnostic on the runtime block: two runtimes of one kind
// with different plugins, a checksum that does not match, a plugin that
// fails its handshake or serves another kind.
func (ps *plugins) schemas(cfg *spec.Config) (map[string]spec.RuntimeSchema, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	rts := make([]*spec.Runtime, 0, len(cfg.Runtimes))
	for _, rt := range cfg.Runtimes {
		if rt.Plugin != "" {
			rts = append(rts, rt)
		}
	}
	if len(rts) == 0 {
		return nil, nil
	}
	sort.Slice(rts, func(i, j int) bool { return rts[i].Addr.Less(rts[j].Addr) })
	first := map[string]*spec.Runtime{}
	out := map[string]spec.RuntimeSchema{}
	for _, rt := range rts {
		decl := rt.DeclRange
		if f, ok := first[rt.Kind]; ok {
			if f.Plugin != rt.Plugin || f.SHA256 != rt.SHA256 {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Subject: &decl,
					Summary: "Two plugins for one runtime kind",
					Detail: fmt.Sprintf("%s names the plugin %s, but %s (%s) already serves runtime kind %q with %s. One orch serves a kind with one plugin: use the same plugin and sha256, or give one of them another kind.",
						rt.Addr, rt.Plugin, f.Addr, f.DeclRange, rt.Kind, f.Plugin)})
			}
			continue
		}
		first[rt.Kind] = rt
		p, err := ps.provider(rt)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Subject: &decl,
				Summary: "Plugin changed while orch runs", Detail: err.Error()})
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, _, err := p.LoadSchema(ctx)
		cancel()
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Subject: &decl,
				Summary: "Provider plugin failed",
				Detail:  err.Error() + ".\nFix the plugin or its path, or remove the runtime block."})
			continue
		}
		out[rt.Kind] = s
	}
	return out, diags
}

// provider returns the adapter of rt's kind, made on first use.
func (ps *plugins) provider(rt *spec.Runtime) (*plugin.Provider, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	bin := plugin.Binary{Path: rt.Plugin, SHA256: rt.SHA256, Block: rt.Addr.String()}
	if p, ok := ps.byKind[rt.Kind]; ok {
		if have := p.Binary(); have.Path == bin.Path && have.SHA256 == bin.SHA256 {
			return p, nil
		}
		if ps.frozen {
			return nil, fmt.Errorf("%s now names the plugin %s (sha256 %q), but this orch serves runtime kind %q with %s (sha256 %q). Restart orch to change a kind's plugin.",
				rt.Addr, bin.Path, bin.SHA256, rt.Kind, p.Binary().Path, p.Binary().SHA256)
		}
		p.Close()
	} else if ps.frozen {
		return nil, fmt.Errorf("%s adds runtime kind %q, served by the plugin %s, while orch runs. Restart orch to add a plugin kind.", rt.Addr, rt.Kind, bin.Path)
	}
	p := plugin.NewProvider(rt.Kind, bin, plugin.Options{Log: ps.log})
	ps.byKind[rt.Kind] = p
	return p, nil
}
