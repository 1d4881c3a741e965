package spec

import (
	"fmt"
	"sort"
	"strings"
)

// Graph is the dependency graph between resource instances and runtimes.
// An edge from A to B means A depends on B: B must be up before A starts,
// and A must stop before B does. A Graph is immutable after Load.
type Graph struct {
	nodes []Address
	index map[Address]int
	deps  [][]int // deps[i]: nodes that node i depends on, sorted
	rdeps [][]int // rdeps[i]: nodes that depend on node i, sorted
}

// NewGraph builds a graph from nodes and their dependencies. Dependencies
// that are not nodes are ignored. It is used by Load and by tests.
func NewGraph(nodes []Address, deps map[Address][]Address) *Graph {
	g := &Graph{index: make(map[Address]int, len(nodes))}
	g.nodes = append([]Address(nil), nodes...)
	sort.Slice(g.nodes, func(i, j int) bool { return g.nodes[i].Less(g.nodes[j]) })
	for i, n := range g.nodes {
		g.index[n] = i
	}
	g.deps = make([][]int, len(g.nodes))
	g.rdeps = make([][]int, len(g.nodes))
	for from, tos := range deps {
		i, ok := g.index[from]
		if !ok {
			continue
		}
		for _, to := range tos {
			if j, ok := g.index[to]; ok && j != i {
				g.deps[i] = append(g.deps[i], j)
				g.rdeps[j] = append(g.rdeps[j], i)
			}
		}
	}
	for i := range g.nodes {
		g.deps[i] = sortUniq(g.deps[i])
		g.rdeps[i] = sortUniq(g.rdeps[i])
	}
	return g
}

func sortUniq(xs []int) []int {
	if len(xs) < 2 {
		return xs
	}
	sort.Ints(xs)
	out := xs[:1]
	for _, x := range xs[1:] {
		if x != out[len(out)-1] {
			out = append(out, x)
		}
	}
	return out
}

// Nodes returns every node, sorted by address.
func (g *Graph) Nodes() []Address { return append([]Address(nil), g.nodes...) }

// Has reports whether a is a node of the graph.
func (g *Graph) Has(a Address) bool { _, ok := g.index[a]; return ok }

// DependenciesOf returns what a depends on directly, sorted.
func (g *Graph) DependenciesOf(a Address) []Address { return g.addrs(g.deps, a) }

// DependentsOf returns what depends on a directly, sorted.
func (g *Graph) DependentsOf(a Address) []Address { return g.addrs(g.rdeps, a) }

func (g *Graph) addrs(adj [][]int, a Address) []Address {
	i, ok := g.index[a]
	if !ok {
		return nil
	}
	out := make([]Address, len(adj[i]))
	for k, j := range adj[i] {
		out[k] = g.nodes[j]
	}
	return out
}

// TopoOrder returns the nodes so that every node comes after all it depends
// on; ties are broken by address, so the order is deterministic. Load
// guarantees the graph has no cycle; on a cyclic graph the members of
// cycles are left out.
func (g *Graph) TopoOrder() []Address {
	indeg := make([]int, len(g.nodes))
	for i := range g.nodes {
		indeg[i] = len(g.deps[i])
	}
	// nodes are sorted, so a FIFO over indices in order gives a stable result
	var queue []int
	for i, d := range indeg {
		if d == 0 {
			queue = append(queue, i)
		}
	}
	out := make([]Address, 0, len(g.nodes))
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		out = append(out, g.nodes[i])
		for _, j := range g.rdeps[i] {
			indeg[j]--
			if indeg[j] == 0 {
				queue = append(queue, j)
			}
		}
	}
	return out
}

// DOT renders the graph in Graphviz's DOT language. Edges point from a
// dependent to what it depends on, as in `terraform graph`.
func (g *Graph) DOT() string {
	var b strings.Builder
	b.WriteString("digraph orch {\n  rankdir = \"RL\";\n  node [shape = \"box\"];\n")
	for _, n := range g.nodes {
		shape := ""
		switch n.Kind {
		case KindRuntime:
			shape = ", shape = \"component\""
		case KindJob:
			shape = ", shape = \"cds\""
		case KindModule:
			shape = ", shape = \"box3d\""
		}
		fmt.Fprintf(&b, "  %s [label = %s%s];\n", dotQuote(n.String()), dotQuote(n.String()), shape)
	}
	for i, n := range g.nodes {
		for _, j := range g.deps[i] {
			fmt.Fprintf(&b, "  %s -> %s;\n", dotQuote(n.String()), dotQuote(g.nodes[j].String()))
		}
	}
	b.WriteString("}\n")
	return b.String()
}

func dotQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// stronglyConnected returns the strongly connected components with more
// than one member, or a single member with a self edge, of the graph given
// by adjacency lists over n nodes (Tarjan's algorithm, iterative so deep
// chains cannot overflow the stack). Members of each component are sorted.
func stronglyConnected(n int, adj func(int) []int) [][]int {
	index := make([]int, n)
	low := make([]int, n)
	on := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var stack, out [][]int
	_ = stack
	var st []int
	next := 0
	type frame struct{ v, child int }
	for root := 0; root < n; root++ {
		if index[root] >= 0 {
			continue
		}
		calls := []frame{{root, 0}}
		index[root], low[root] = next, next
		next++
		st = append(st, root)
		on[root] = true
		for len(calls) > 0 {
			f := &calls[len(calls)-1]
			succ := adj(f.v)
			if f.child < len(succ) {
				w := succ[f.child]
				f.child++
				if index[w] < 0 {
					index[w], low[w] = next, next
					next++
					st = append(st, w)
					on[w] = true
					calls = append(calls, frame{w, 0})
				} else if on[w] && index[w] < low[f.v] {
					low[f.v] = index[w]
				}
				continue
			}
			v := f.v
			calls = calls[:len(calls)-1]
			if len(calls) > 0 {
				p := calls[len(calls)-1].v
				if low[v] < low[p] {
					low[p] = low[v]
				}
			}
			if low[v] == index[v] {
				var comp []int
				for {
					w := st[len(st)-1]
					st = st[:len(st)-1]
					on[w] = false
					comp = append(comp, w)
					if w == v {
						break
					}
				}
				self := false
				if len(comp) == 1 {
					for _, w := range adj(v) {
						if w == v {
							self = true
						}
					}
				}
				if len(comp) > 1 || self {
					sort.Ints(comp)
					out = append(out, comp)
				}
			}
		}
	}
	return out
}
