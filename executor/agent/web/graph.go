package web

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"sort"

	"github.com/orch-dev/orch/executor/agent"
)

// graph draws the dependency graph of the instances as SVG: one column
// per depth (what has no dependency on the left), an arrow from each
// instance to what it depends on, each box coloured by its state.
func (s *Server) graph(w http.ResponseWriter, r *http.Request) {
	snap, err := s.API.Snapshot(r)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-cache")
	DrawGraph(w, snap.Instances)
}

// Box sizes of DrawGraph, in pixels.
const (
	boxW, boxH = 170, 24
	colGap     = 60
	rowGap     = 10
	margin     = 10
)

// stateColour is the fill of a box in each state.
func stateColour(state string) string {
	switch state {
	case "ready", "running":
		return "#c8f0c8"
	case "starting", "restarting", "waiting", "loaded", "stopping", "pending":
		return "#fff0b0"
	case "unhealthy", "failed", "blocked", "exited":
		return "#f8c0c0"
	case "paused":
		return "#d0d8f8"
	}
	return "#e4e4e4"
}

// DrawGraph writes the SVG of the dependency graph of insts.
func DrawGraph(w io.Writer, insts []agent.InstanceView) {
	index := map[string]int{}
	for i, in := range insts {
		index[in.Address] = i
	}
	depth := make([]int, len(insts))
	for i := range depth {
		depth[i] = -1
	}
	var depthOf func(i int, seen map[int]bool) int
	depthOf = func(i int, seen map[int]bool) int {
		if depth[i] >= 0 {
			return depth[i]
		}
		if seen[i] {
			return 0 // a cycle cannot be declared; be safe all the same
		}
		seen[i] = true
		d := 0
		for _, dep := range insts[i].DependsOn {
			if j, ok := index[dep]; ok {
				d = max(d, depthOf(j, seen)+1)
			}
		}
		depth[i] = d
		return d
	}
	cols := map[int][]int{}
	maxDepth, maxRows := 0, 0
	for i := range insts {
		d := depthOf(i, map[int]bool{})
		cols[d] = append(cols[d], i)
		maxDepth = max(maxDepth, d)
		maxRows = max(maxRows, len(cols[d]))
	}
	type pos struct{ x, y int }
	at := make([]pos, len(insts))
	for d, is := range cols {
		sort.Slice(is, func(a, b int) bool { return insts[is[a]].Address < insts[is[b]].Address })
		for row, i := range is {
			at[i] = pos{margin + d*(boxW+colGap), margin + row*(boxH+rowGap)}
		}
	}
	width := 2*margin + (maxDepth+1)*(boxW+colGap) - colGap
	height := 2*margin + maxRows*(boxH+rowGap) - rowGap
	if len(insts) == 0 {
		width, height = 300, 40
	}
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprint(w, `<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker></defs>`+"\n")
	if len(insts) == 0 {
		fmt.Fprint(w, `<text x="10" y="24">nothing runs here yet</text></svg>`+"\n")
		return
	}
	for i, in := range insts {
		for _, dep := range in.DependsOn {
			j, ok := index[dep]
			if !ok {
				continue
			}
			fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#666" marker-end="url(#arrow)"/>`+"\n",
				at[i].x, at[i].y+boxH/2, at[j].x+boxW, at[j].y+boxH/2)
		}
	}
	for i, in := range insts {
		name := in.Address
		if len(name) > 26 {
			name = name[:25] + "…"
		}
		fmt.Fprintf(w, `<g class="node" data-address="%s"><title>%s: %s</title><rect x="%d" y="%d" width="%d" height="%d" rx="4" fill="%s" stroke="#888"/><text x="%d" y="%d">%s</text></g>`+"\n",
			html.EscapeString(in.Address), html.EscapeString(in.Address), html.EscapeString(in.State),
			at[i].x, at[i].y, boxW, boxH, stateColour(in.State), at[i].x+6, at[i].y+16, html.EscapeString(name))
	}
	fmt.Fprint(w, "</svg>\n")
}
