package spec

// Subset returns a copy of c that declares only the resource instances
// keep accepts: every runtime, the graph restricted to them (edges to
// instances left out are dropped), the same Hash, variables and redactor.
// A multi-node agent (executor/cluster) runs the engine on the subset
// assigned to its node.
func (c *Config) Subset(keep func(Address) bool) *Config {
	out := *c
	out.Resources = make([]*Resource, 0, len(c.Resources))
	out.byAddr = make(map[Address]*Resource, len(c.Resources))
	for _, r := range c.Resources {
		if keep(r.Addr) {
			out.Resources = append(out.Resources, r)
			out.byAddr[r.Addr] = r
		}
	}
	if c.Graph != nil {
		var nodes []Address
		deps := map[Address][]Address{}
		for _, n := range c.Graph.Nodes() {
			if n.Kind == KindRuntime || out.byAddr[n] != nil {
				nodes = append(nodes, n)
				deps[n] = c.Graph.DependenciesOf(n)
			}
		}
		out.Graph = NewGraph(nodes, deps)
	}
	return &out
}
