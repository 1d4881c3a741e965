package planner

import (
	"fmt"
	"sort"
	"strings"

	"github.com/orch-dev/orch/spec"
)

// Placement across several hosts: which node runs each declared instance.
// Like the rest of the planner it is pure (declared instances, live
// nodes and the current assignments in, assignments out), deterministic,
// and tested by tables without a process (placement_test.go). The leader
// agent of a multi-node project (executor/cluster) calls it whenever a
// node joins or leaves or the configuration changes.
//
// The rules, in order:
//
//   - A node qualifies for an instance when it is alive, its name is
//     placement.node (when set), and it carries every label of
//     placement.labels with the same value.
//   - Stable: an instance stays on the node it is assigned to as long as
//     that node is alive, still qualifies and is not over its capacity.
//     Nothing moves because a better node appeared.
//   - Every other instance goes, in address order, to the qualifying node
//     with room that has the fewest instances of the same block when the
//     block says spread = true (one per node where possible), then the
//     fewest instances in all, then the first name.
//   - Capacity is how many instances a node runs at most (0: no limit).
//   - An instance no node qualifies for is left unplaced, with the reason.

// PlaceInstance is what placement needs of a declared instance.
type PlaceInstance struct {
	Addr      spec.Address
	Placement *spec.Placement // nil: any node
}

// PlaceInstancesOf lists the instances of cfg that run somewhere: its
// daemons, jobs and module instances.
func PlaceInstancesOf(cfg *spec.Config) []PlaceInstance {
	out := make([]PlaceInstance, 0, len(cfg.Resources))
	for _, r := range cfg.Resources {
		out = append(out, PlaceInstance{Addr: r.Addr, Placement: r.Placement})
	}
	return out
}

// Node is a live node of a multi-node project.
type Node struct {
	Name     string
	Labels   map[string]string
	Capacity int // instances at most; 0: no limit
}

// Placed is the result of Place.
type Placed struct {
	// Assign maps every placed instance's address (String()) to its
	// node's name.
	Assign map[string]string
	// Unplaced maps an instance no node could take to why.
	Unplaced map[string]string
	// Moved lists the instances whose node changed (or that were placed
	// for the first time), in address order.
	Moved []string
}

// Place assigns the instances to the nodes. current maps addresses to
// the nodes they are assigned to now (entries of instances no longer
// declared, or of nodes gone, are ignored).
func Place(insts []PlaceInstance, nodes []Node, current map[string]string) Placed {
	insts = append([]PlaceInstance(nil), insts...)
	sort.Slice(insts, func(i, j int) bool { return insts[i].Addr.Less(insts[j].Addr) })
	nodes = append([]Node(nil), nodes...)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	byName := make(map[string]int, len(nodes))
	for i, n := range nodes {
		byName[n.Name] = i
	}
	load := make([]int, len(nodes))
	blockLoad := map[string][]int{} // block address -> instances per node
	out := Placed{Assign: make(map[string]string, len(insts)), Unplaced: map[string]string{}}
	assign := func(in PlaceInstance, key string, i int) {
		out.Assign[key] = nodes[i].Name
		load[i]++
		b := in.Addr.Block().String()
		bl := blockLoad[b]
		if bl == nil {
			bl = make([]int, len(nodes))
			blockLoad[b] = bl
		}
		bl[i]++
	}
	room := func(i int) bool { return nodes[i].Capacity <= 0 || load[i] < nodes[i].Capacity }

	// Stable first: what may stay, stays.
	keys := make([]string, len(insts))
	var rest []int
	for k, in := range insts {
		keys[k] = in.Addr.String()
		cur, ok := current[keys[k]]
		if i, alive := byName[cur]; ok && alive && qualifies(in.Placement, nodes[i]) && room(i) {
			assign(in, keys[k], i)
			continue
		}
		rest = append(rest, k)
	}
	for _, k := range rest {
		in := insts[k]
		spread := in.Placement != nil && in.Placement.Spread
		bl := blockLoad[in.Addr.Block().String()]
		best := -1
		matched := 0
		for i := range nodes {
			if !qualifies(in.Placement, nodes[i]) {
				continue
			}
			matched++
			if !room(i) {
				continue
			}
			if best < 0 {
				best = i
				continue
			}
			if spread && bl != nil && bl[i] != bl[best] {
				if bl[i] < bl[best] {
					best = i
				}
				continue
			}
			if load[i] < load[best] {
				best = i
			}
		}
		if best < 0 {
			out.Unplaced[keys[k]] = unplacedReason(in.Placement, len(nodes), matched)
			continue
		}
		assign(in, keys[k], best)
		out.Moved = append(out.Moved, keys[k])
	}
	return out
}

func qualifies(p *spec.Placement, n Node) bool {
	if p == nil {
		return true
	}
	if p.Node != "" && p.Node != n.Name {
		return false
	}
	for k, v := range p.Labels {
		if got, ok := n.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func unplacedReason(p *spec.Placement, nodes, matched int) string {
	switch {
	case nodes == 0:
		return "no node is alive"
	case matched > 0:
		return fmt.Sprintf("every node that qualifies (%d) is at its capacity", matched)
	case p != nil && p.Node != "":
		return fmt.Sprintf("no live node is named %q (placement.node)", p.Node)
	default:
		var ls []string
		for k, v := range p.Labels {
			ls = append(ls, k+"="+v)
		}
		sort.Strings(ls)
		return fmt.Sprintf("no live node has the labels %s (placement.labels)", strings.Join(ls, ","))
	}
}
