package spec

import (
	"sort"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

func convertTo(v cty.Value, ty cty.Type) (cty.Value, error) { return convert.Convert(v, ty) }

// buildConfig assembles the Config and the instance graph once every node
// evaluated cleanly.
func (l *loader) buildConfig() {
	cfg := l.cfg
	usedRT := map[Address]bool{}
	instancesOf := make(map[Address][]Address, len(l.order))
	for _, n := range l.order {
		switch n.kind {
		case KindRuntime:
			if n.rt != nil {
				cfg.Runtimes = append(cfg.Runtimes, n.rt)
			}
		case KindDaemon, KindJob, KindModule:
			cfg.Resources = append(cfg.Resources, n.instances...)
			for _, r := range n.instances {
				instancesOf[n.addr] = append(instancesOf[n.addr], r.Addr)
				if !r.Runtime.IsZero() {
					usedRT[r.Runtime] = true
				}
			}
		}
	}
	if rt := l.nodes[l.processRT.String()]; rt != nil && rt.block == nil && usedRT[l.processRT] && rt.rt != nil {
		cfg.Runtimes = append(cfg.Runtimes, rt.rt)
	}
	sort.Slice(cfg.Runtimes, func(i, j int) bool { return cfg.Runtimes[i].Addr.Less(cfg.Runtimes[j].Addr) })
	sort.Slice(cfg.Resources, func(i, j int) bool { return cfg.Resources[i].Addr.Less(cfg.Resources[j].Addr) })

	cfg.byAddr = make(map[Address]*Resource, len(cfg.Resources))
	for _, r := range cfg.Resources {
		cfg.byAddr[r.Addr] = r
	}
	nodes := make([]Address, 0, len(cfg.Resources)+len(cfg.Runtimes))
	deps := make(map[Address][]Address, len(cfg.Resources))
	for _, rt := range cfg.Runtimes {
		nodes = append(nodes, rt.Addr)
		instancesOf[rt.Addr] = []Address{rt.Addr}
	}
	for _, r := range cfg.Resources {
		nodes = append(nodes, r.Addr)
		var ds []Address
		for _, b := range r.DependsOn {
			ds = append(ds, instancesOf[b]...)
		}
		deps[r.Addr] = ds
	}
	cfg.Graph = NewGraph(nodes, deps)
}
