package planner

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/orch-dev/orch/spec"
)

func counted(name string, n int, p *spec.Placement) []PlaceInstance {
	var out []PlaceInstance
	for i := 0; i < n; i++ {
		out = append(out, PlaceInstance{Addr: spec.Address{Kind: spec.KindDaemon, Name: name, Key: spec.IntKey(i)}, Placement: p})
	}
	return out
}

func single(name string, p *spec.Placement) PlaceInstance {
	return PlaceInstance{Addr: spec.Address{Kind: spec.KindDaemon, Name: name}, Placement: p}
}

func nodesNamed(names ...string) []Node {
	var out []Node
	for _, n := range names {
		out = append(out, Node{Name: n})
	}
	return out
}

func TestPlace(t *testing.T) {
	spread := &spec.Placement{Spread: true}
	cases := []struct {
		name     string
		insts    []PlaceInstance
		nodes    []Node
		current  map[string]string
		want     map[string]string
		unplaced map[string]string
		moved    []string
	}{
		{
			name:  "spread: one per node",
			insts: counted("web", 3, spread), nodes: nodesNamed("c", "a", "b"),
			want:  map[string]string{"daemon.web[0]": "a", "daemon.web[1]": "b", "daemon.web[2]": "c"},
			moved: []string{"daemon.web[0]", "daemon.web[1]", "daemon.web[2]"},
		},
		{
			name:  "spread over fewer nodes than instances: balanced",
			insts: counted("web", 5, spread), nodes: nodesNamed("a", "b"),
			want: map[string]string{"daemon.web[0]": "a", "daemon.web[1]": "b", "daemon.web[2]": "a",
				"daemon.web[3]": "b", "daemon.web[4]": "a"},
			moved: []string{"daemon.web[0]", "daemon.web[1]", "daemon.web[2]", "daemon.web[3]", "daemon.web[4]"},
		},
		{
			name: "spread beats total load",
			// a already runs two others; web's two instances still go one per node.
			insts:   append([]PlaceInstance{single("x", nil), single("y", nil)}, counted("web", 2, spread)...),
			nodes:   nodesNamed("a", "b"),
			current: map[string]string{"daemon.x": "a", "daemon.y": "a"},
			want:    map[string]string{"daemon.x": "a", "daemon.y": "a", "daemon.web[0]": "b", "daemon.web[1]": "a"},
			moved:   []string{"daemon.web[0]", "daemon.web[1]"},
		},
		{
			name:  "without spread: least loaded",
			insts: append(counted("web", 2, nil), single("db", nil)), nodes: nodesNamed("a", "b"),
			want:  map[string]string{"daemon.db": "a", "daemon.web[0]": "b", "daemon.web[1]": "a"},
			moved: []string{"daemon.db", "daemon.web[0]", "daemon.web[1]"},
		},
		{
			name:  "node pins",
			insts: counted("db", 2, &spec.Placement{Node: "b", Spread: true}), nodes: nodesNamed("a", "b", "c"),
			want:  map[string]string{"daemon.db[0]": "b", "daemon.db[1]": "b"},
			moved: []string{"daemon.db[0]", "daemon.db[1]"},
		},
		{
			name:     "pinned to a node that is gone",
			insts:    []PlaceInstance{single("db", &spec.Placement{Node: "z"})},
			nodes:    nodesNamed("a"),
			want:     map[string]string{},
			unplaced: map[string]string{"daemon.db": `no live node is named "z" (placement.node)`},
		},
		{
			name:  "labels",
			insts: []PlaceInstance{single("db", &spec.Placement{Labels: map[string]string{"disk": "ssd", "zone": "1"}})},
			nodes: []Node{{Name: "a", Labels: map[string]string{"disk": "ssd"}}, {Name: "b", Labels: map[string]string{"disk": "ssd", "zone": "1", "x": "y"}},
				{Name: "c", Labels: map[string]string{"disk": "hdd", "zone": "1"}}},
			want:  map[string]string{"daemon.db": "b"},
			moved: []string{"daemon.db"},
		},
		{
			name:     "no label match",
			insts:    []PlaceInstance{single("db", &spec.Placement{Labels: map[string]string{"gpu": "yes"}})},
			nodes:    nodesNamed("a", "b"),
			want:     map[string]string{},
			unplaced: map[string]string{"daemon.db": "no live node has the labels gpu=yes (placement.labels)"},
		},
		{
			name:     "no node at all",
			insts:    []PlaceInstance{single("db", nil)},
			want:     map[string]string{},
			unplaced: map[string]string{"daemon.db": "no node is alive"},
		},
		{
			name:    "stable: stays although spread would put it elsewhere",
			insts:   counted("web", 2, spread),
			nodes:   nodesNamed("a", "b"),
			current: map[string]string{"daemon.web[0]": "a", "daemon.web[1]": "a"},
			want:    map[string]string{"daemon.web[0]": "a", "daemon.web[1]": "a"},
		},
		{
			name:    "node gone: its instances move, the others stay",
			insts:   counted("web", 3, spread),
			nodes:   nodesNamed("a", "c"),
			current: map[string]string{"daemon.web[0]": "a", "daemon.web[1]": "b", "daemon.web[2]": "c"},
			want:    map[string]string{"daemon.web[0]": "a", "daemon.web[1]": "a", "daemon.web[2]": "c"},
			moved:   []string{"daemon.web[1]"},
		},
		{
			name:    "node back: nothing moves back",
			insts:   counted("web", 3, spread),
			nodes:   nodesNamed("a", "b", "c"),
			current: map[string]string{"daemon.web[0]": "a", "daemon.web[1]": "a", "daemon.web[2]": "c"},
			want:    map[string]string{"daemon.web[0]": "a", "daemon.web[1]": "a", "daemon.web[2]": "c"},
		},
		{
			name:    "node no longer matches: moves",
			insts:   []PlaceInstance{single("db", &spec.Placement{Labels: map[string]string{"disk": "ssd"}})},
			nodes:   []Node{{Name: "a", Labels: map[string]string{"disk": "hdd"}}, {Name: "b", Labels: map[string]string{"disk": "ssd"}}},
			current: map[string]string{"daemon.db": "a"},
			want:    map[string]string{"daemon.db": "b"},
			moved:   []string{"daemon.db"},
		},
		{
			name:     "capacity",
			insts:    counted("w", 4, nil),
			nodes:    []Node{{Name: "a", Capacity: 1}, {Name: "b", Capacity: 2}},
			current:  map[string]string{"daemon.w[3]": "a"},
			want:     map[string]string{"daemon.w[3]": "a", "daemon.w[0]": "b", "daemon.w[1]": "b"},
			unplaced: map[string]string{"daemon.w[2]": "every node that qualifies (2) is at its capacity"},
			moved:    []string{"daemon.w[0]", "daemon.w[1]"},
		},
		{
			name:    "assignments of instances no longer declared are dropped",
			insts:   []PlaceInstance{single("a", nil)},
			nodes:   nodesNamed("n"),
			current: map[string]string{"daemon.a": "n", "daemon.gone": "n"},
			want:    map[string]string{"daemon.a": "n"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Place(c.insts, c.nodes, c.current)
			if !reflect.DeepEqual(got.Assign, c.want) {
				t.Errorf("assign = %v, want %v", got.Assign, c.want)
			}
			if c.unplaced == nil {
				c.unplaced = map[string]string{}
			}
			if !reflect.DeepEqual(got.Unplaced, c.unplaced) {
				t.Errorf("unplaced = %v, want %v", got.Unplaced, c.unplaced)
			}
			if !reflect.DeepEqual(got.Moved, c.moved) {
				t.Errorf("moved = %v, want %v", got.Moved, c.moved)
			}
			// Pure and stable: placing again from its own result moves nothing.
			again := Place(c.insts, c.nodes, got.Assign)
			if !reflect.DeepEqual(again.Assign, got.Assign) || len(again.Moved) != 0 {
				t.Errorf("placing again changed it: %v, moved %v", again.Assign, again.Moved)
			}
		})
	}
}

// TestPlaceSpreadProperty: for any count and number of nodes, spread
// instances of a block differ by at most one per node.
func TestPlaceSpreadProperty(t *testing.T) {
	for nodes := 1; nodes <= 5; nodes++ {
		for n := 0; n <= 12; n++ {
			var ns []Node
			for i := 0; i < nodes; i++ {
				ns = append(ns, Node{Name: fmt.Sprintf("n%d", i)})
			}
			got := Place(counted("w", n, &spec.Placement{Spread: true}), ns, nil)
			per := map[string]int{}
			for _, node := range got.Assign {
				per[node]++
			}
			lo, hi := n, 0
			for _, node := range ns {
				lo, hi = min(lo, per[node.Name]), max(hi, per[node.Name])
			}
			if len(got.Assign) != n || hi-lo > 1 {
				t.Errorf("%d instances over %d nodes: %v", n, nodes, per)
			}
		}
	}
}

func BenchmarkPlace1000(b *testing.B) {
	insts := counted("w", 1000, &spec.Placement{Spread: true})
	ns := nodesNamed("a", "b", "c")
	cur := Place(insts, ns, nil).Assign
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Place(insts, ns, cur)
	}
}
