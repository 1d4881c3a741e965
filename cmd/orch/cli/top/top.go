// Package top is orch top: a live terminal view of what an agent (orch up,
// orch agent) supervises, built with bubbletea. It reads the agent's
// snapshot (GET /v1/snapshot) once, then again after events (GET
// /v1/events: at most one read per 200 ms however many come), and every 2 s
// for CPU and memory, which change without events. Keys act through the
// agent's API: restart, stop (the stop signal, SIGTERM: the restart policy
// then applies), pause, resume, any signal; Enter follows an instance's
// log.
package top

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/orch-dev/orch/executor/agent"
	"golang.org/x/sys/unix"
)

// Run shows the view on out, reading keys from in, until q, Ctrl-C or
// ctx is done.
func Run(ctx context.Context, c *agent.Client, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := &model{ctx: ctx, c: c, sortKey: sortAddress, logBuf: &logBuffer{}, width: 80, height: 24}
	if f, ok := out.(*os.File); ok {
		// The size now; bubbletea tells of changes (SIGWINCH).
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 && ws.Row > 0 {
			m.width, m.height = int(ws.Col), int(ws.Row)
		}
	}
	p := tea.NewProgram(m, tea.WithContext(ctx), tea.WithInput(in), tea.WithOutput(out), tea.WithAltScreen())
	m.send = p.Send
	go func() {
		err := c.Events(ctx, "", func(raw json.RawMessage) error {
			p.Send(eventMsg(raw))
			return nil
		})
		if ctx.Err() == nil {
			p.Send(streamEndedMsg{err})
		}
	}()
	_, err := p.Run()
	if err == tea.ErrProgramKilled && ctx.Err() != nil {
		return nil
	}
	return err
}

type (
	snapshotMsg struct {
		snap *agent.SnapshotResponse
		err  error
	}
	usageMsg struct {
		usage map[string]agent.Usage
		err   error
	}
	eventMsg       json.RawMessage
	streamEndedMsg struct{ err error }
	tickMsg        struct{}
	refreshMsg     struct{}
	doneMsg        struct{ text string }
	logLineMsg     struct{}
)

// sort orders
const (
	sortAddress = iota
	sortState
	sortCPU
	sortMemory
	sortRestarts
	sortCount
)

var sortNames = [...]string{"address", "state", "cpu", "memory", "restarts"}

type model struct {
	ctx  context.Context
	c    *agent.Client
	send func(tea.Msg)

	snap      *agent.SnapshotResponse
	rows      []agent.InstanceView // filtered and sorted
	cursor    int
	offset    int
	width     int
	height    int
	sortKey   int
	filter    string
	editing   string // "filter", "signal" or "" while typing one
	input     string
	message   string
	lastEvent string
	fetching  bool
	dirty     bool // an event came while fetching
	err       error

	// The log view: Enter follows the selected instance's log.
	logAddr   string
	logCancel context.CancelFunc
	logBuf    *logBuffer
}

func (m *model) Init() tea.Cmd {
	m.fetching = true
	return tea.Batch(m.fetch(), tick())
}

func tick() tea.Cmd {
	return tea.Tick(3*time.Second, func(time.Time) tea.Msg { return tickMsg{} })
}

func (m *model) fetch() tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
		defer cancel()
		s, err := m.c.Snapshot(ctx)
		return snapshotMsg{s, err}
	}
}

// fetchUsage reads what each instance uses (CPU, memory), which changes
// without events.
func (m *model) fetchUsage() tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
		defer cancel()
		u, err := m.c.Usage(ctx)
		return usageMsg{u, err}
	}
}

// refresh reads the snapshot again, or marks it to be read once the read
// in flight ends.
func (m *model) refresh() tea.Cmd {
	if m.fetching {
		m.dirty = true
		return nil
	}
	m.fetching = true
	return m.fetch()
}

func (m *model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		if msg.Width > 0 && msg.Height > 0 {
			m.width, m.height = msg.Width, msg.Height
			m.clamp()
		}
	case snapshotMsg:
		m.fetching = false
		if msg.err != nil {
			m.err = msg.err
		} else {
			m.snap, m.err = msg.snap, nil
			m.arrange()
		}
		if m.dirty {
			m.dirty = false
			// Events came meanwhile: read again, a little later, so a
			// burst costs a few reads.
			return m, tea.Tick(200*time.Millisecond, func(time.Time) tea.Msg { return refreshMsg{} })
		}
	case refreshMsg:
		return m, m.refresh()
	case eventMsg:
		var ev struct {
			Type    string `json:"type"`
			Address string `json:"address"`
			Detail  string `json:"detail"`
		}
		json.Unmarshal(msg, &ev)
		m.lastEvent = strings.TrimSpace(ev.Address + " " + ev.Type)
		return m, m.refresh()
	case streamEndedMsg:
		m.err = fmt.Errorf("the agent's event stream ended (did it stop?): %v", msg.err)
	case tickMsg:
		return m, tea.Batch(m.fetchUsage(), tick())
	case usageMsg:
		if msg.err == nil && m.snap != nil {
			for i := range m.snap.Instances {
				in := &m.snap.Instances[i]
				if u, ok := msg.usage[in.Address]; ok {
					in.CPUSeconds, in.CPUPercent, in.RSSBytes, in.Procs = u.CPUSeconds, u.CPUPercent, u.RSSBytes, u.Procs
				}
			}
			m.arrange()
		}
	case doneMsg:
		m.message = msg.text
		return m, m.refresh()
	case logLineMsg:
	case tea.KeyMsg:
		return m.key(msg)
	}
	return m, nil
}

// arrange filters and sorts the snapshot into rows, keeping the cursor on
// the same instance.
func (m *model) arrange() {
	if m.snap == nil {
		return
	}
	sel := m.selected()
	m.rows = m.rows[:0]
	f := strings.ToLower(m.filter)
	for _, in := range m.snap.Instances {
		if f == "" || strings.Contains(strings.ToLower(in.Address+" "+in.State+" "+in.Kind+" "+in.Runtime), f) {
			m.rows = append(m.rows, in)
		}
	}
	less := func(a, b agent.InstanceView) bool { return a.Address < b.Address }
	switch m.sortKey {
	case sortState:
		less = func(a, b agent.InstanceView) bool { return a.State < b.State }
	case sortCPU:
		less = func(a, b agent.InstanceView) bool { return a.CPUPercent > b.CPUPercent }
	case sortMemory:
		less = func(a, b agent.InstanceView) bool { return a.RSSBytes > b.RSSBytes }
	case sortRestarts:
		less = func(a, b agent.InstanceView) bool { return a.Restarts > b.Restarts }
	}
	sort.SliceStable(m.rows, func(i, j int) bool { return less(m.rows[i], m.rows[j]) })
	m.cursor = 0
	for i, in := range m.rows {
		if in.Address == sel {
			m.cursor = i
		}
	}
	m.clamp()
}

func (m *model) selected() string {
	if m.cursor < len(m.rows) {
		return m.rows[m.cursor].Address
	}
	return ""
}

// listHeight is how many rows fit.
func (m *model) listHeight() int { return max(m.height-5, 1) }

func (m *model) clamp() {
	m.cursor = max(0, min(m.cursor, len(m.rows)-1))
	h := m.listHeight()
	if m.cursor < m.offset {
		m.offset = m.cursor
	}
	if m.cursor >= m.offset+h {
		m.offset = m.cursor - h + 1
	}
	m.offset = max(0, min(m.offset, len(m.rows)-h))
}

func (m *model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	if k.Type == tea.KeyRunes && len(k.Runes) > 1 {
		// Keys typed faster than read come as one message ("/web"):
		// each is a key of its own.
		var cmds []tea.Cmd
		for _, r := range k.Runes {
			_, cmd := m.key(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}, Alt: k.Alt})
			cmds = append(cmds, cmd)
		}
		return m, tea.Batch(cmds...)
	}
	if k.String() == "ctrl+c" {
		m.stopLog()
		return m, tea.Quit
	}
	if m.editing != "" {
		switch k.Type {
		case tea.KeyEnter:
			what, v := m.editing, strings.TrimSpace(m.input)
			m.editing = ""
			if what == "filter" {
				m.filter = v
				m.arrange()
				return m, nil
			}
			if v == "" {
				return m, nil
			}
			return m, m.act("signal "+v, func(ctx context.Context, a string) error { return m.c.Signal(ctx, a, v) })
		case tea.KeyEsc:
			m.editing = ""
		case tea.KeyBackspace:
			if m.input != "" {
				m.input = m.input[:len(m.input)-1]
			}
		case tea.KeyRunes, tea.KeySpace:
			m.input += string(k.Runes)
		}
		if m.editing == "filter" {
			m.filter = m.input
			m.arrange()
		}
		return m, nil
	}
	if m.logAddr != "" {
		switch k.String() {
		case "q", "esc", "enter", "left":
			m.stopLog()
		}
		return m, nil
	}
	switch k.String() {
	case "q":
		return m, tea.Quit
	case "up", "k":
		m.cursor--
	case "down", "j":
		m.cursor++
	case "pgup":
		m.cursor -= m.listHeight()
	case "pgdown", " ":
		m.cursor += m.listHeight()
	case "home", "g":
		m.cursor = 0
	case "end", "G":
		m.cursor = len(m.rows) - 1
	case "s":
		m.sortKey = (m.sortKey + 1) % sortCount
		m.arrange()
	case "/":
		m.editing, m.input = "filter", m.filter
	case "!":
		m.editing, m.input = "signal", ""
	case "esc":
		m.filter = ""
		m.arrange()
	case "enter", "l":
		if a := m.selected(); a != "" {
			m.followLog(a)
		}
	case "r":
		return m, m.act("restart", func(ctx context.Context, a string) error { _, err := m.c.Restart(ctx, a, false); return err })
	case "x":
		return m, m.act("stop (held until t)", func(ctx context.Context, a string) error { _, err := m.c.Stop(ctx, a); return err })
	case "t":
		return m, m.act("start", func(ctx context.Context, a string) error { _, err := m.c.Start(ctx, a); return err })
	case "p":
		return m, m.act("pause", func(ctx context.Context, a string) error { _, err := m.c.Pause(ctx, a); return err })
	case "u":
		return m, m.act("resume", func(ctx context.Context, a string) error { _, err := m.c.Resume(ctx, a); return err })
	}
	m.clamp()
	return m, nil
}

// act runs what on the selected instance through the agent.
func (m *model) act(what string, f func(context.Context, string) error) tea.Cmd {
	a := m.selected()
	if a == "" {
		return nil
	}
	m.message = what + " " + a + "..."
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
		defer cancel()
		if err := f(ctx, a); err != nil {
			return doneMsg{what + " " + a + ": " + err.Error()}
		}
		return doneMsg{what + " " + a + ": done"}
	}
}

func (m *model) followLog(a string) {
	ctx, cancel := context.WithCancel(m.ctx)
	m.logAddr, m.logCancel = a, cancel
	m.logBuf.reset()
	buf, send := m.logBuf, m.send
	go func() {
		err := m.c.Logs(ctx, a, 200, true, writerFunc(func(p []byte) (int, error) {
			buf.write(p)
			send(logLineMsg{})
			return len(p), nil
		}))
		if err != nil && ctx.Err() == nil {
			buf.write([]byte("(" + err.Error() + ")\n"))
			send(logLineMsg{})
		}
	}()
}

func (m *model) stopLog() {
	if m.logCancel != nil {
		m.logCancel()
		m.logCancel = nil
	}
	m.logAddr = ""
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// logBuffer keeps the last lines of the followed log.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
	part  []byte
}

func (b *logBuffer) reset() {
	b.mu.Lock()
	b.lines, b.part = nil, nil
	b.mu.Unlock()
}

func (b *logBuffer) write(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.part = append(b.part, p...)
	for {
		i := bytes.IndexByte(b.part, '\n')
		if i < 0 {
			break
		}
		b.lines = append(b.lines, string(b.part[:i]))
		b.part = b.part[i+1:]
	}
	if len(b.lines) > 1000 {
		b.lines = append([]string(nil), b.lines[len(b.lines)-500:]...)
	}
}

func (b *logBuffer) last(n int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.lines) > n {
		return append([]string(nil), b.lines[len(b.lines)-n:]...)
	}
	return append([]string(nil), b.lines...)
}

func (m *model) View() string {
	w := m.width
	if w <= 0 {
		w = 80
	}
	var b strings.Builder
	line := func(s string) {
		if len([]rune(s)) > w {
			s = string([]rune(s)[:w])
		}
		b.WriteString(s)
		b.WriteByte('\n')
	}
	if m.logAddr != "" {
		line(fmt.Sprintf("orch top - log of %s (following; q, Esc: back)", m.logAddr))
		for _, l := range m.logBuf.last(max(m.height-2, 1)) {
			line(l)
		}
		return strings.TrimRight(b.String(), "\n")
	}
	head := "orch top"
	if m.snap != nil {
		counts := map[string]int{}
		for _, in := range m.snap.Instances {
			counts[in.State]++
		}
		var states []string
		for s := range counts {
			states = append(states, s)
		}
		sort.Strings(states)
		var parts []string
		for _, s := range states {
			parts = append(parts, strconv.Itoa(counts[s])+" "+s)
		}
		head += fmt.Sprintf(" - %d instances: %s - sort %s", len(m.snap.Instances), strings.Join(parts, ", "), sortNames[m.sortKey])
		if m.filter != "" {
			head += " - filter " + strconv.Quote(m.filter)
		}
	}
	line(head)
	cols := m.columns(w)
	line(cols.header())
	if m.snap == nil {
		if m.err != nil {
			line("cannot read the agent: " + m.err.Error())
		} else {
			line("reading the agent...")
		}
	}
	h := m.listHeight()
	for i := m.offset; i < len(m.rows) && i < m.offset+h; i++ {
		r := cols.row(m.rows[i], time.Now())
		if i == m.cursor {
			r = "\x1b[7m" + padRight(r, w) + "\x1b[0m"
		}
		b.WriteString(r)
		b.WriteByte('\n')
	}
	for i := len(m.rows) - m.offset; i < h; i++ {
		b.WriteByte('\n')
	}
	switch {
	case m.editing == "filter":
		line("filter: " + m.input + "_")
	case m.editing == "signal":
		line("signal to " + m.selected() + " (HUP, USR1, ...): " + m.input + "_")
	case m.err != nil && m.snap != nil:
		line(m.err.Error())
	case m.message != "":
		line(m.message)
	default:
		line("last event: " + m.lastEvent)
	}
	line("enter log  r restart  x stop  t start  p pause  u resume  ! signal  s sort  / filter  q quit")
	return strings.TrimRight(b.String(), "\n")
}

// columns lays the table out for a width: the address takes what the
// others leave; kind, health and runtime only when there is room.
type columns struct {
	addr                  int
	kind, health, runtime bool
}

func (m *model) columns(w int) columns {
	c := columns{kind: w >= 100, health: w >= 110, runtime: w >= 140}
	fixed := 11 + 4 + 13 + 8 + 7 + 9 // state, restarts, pid/id, uptime, cpu, memory
	if c.kind {
		fixed += 7
	}
	if c.health {
		fixed += 10
	}
	if c.runtime {
		fixed += 25
	}
	c.addr = max(w-fixed-1, 12)
	return c
}

func (c columns) header() string {
	s := padRight("ADDRESS", c.addr) + " "
	if c.kind {
		s += padRight("KIND", 6) + " "
	}
	if c.runtime {
		s += padRight("RUNTIME", 24) + " "
	}
	s += padRight("STATE", 10) + " "
	if c.health {
		s += padRight("HEALTH", 9) + " "
	}
	return s + padLeft("RST", 3) + " " + padRight("PID/ID", 12) + " " + padLeft("UPTIME", 7) + " " + padLeft("CPU", 6) + " " + padLeft("MEM", 8)
}

func (c columns) row(in agent.InstanceView, now time.Time) string {
	s := padRight(in.Address, c.addr) + " "
	if c.kind {
		s += padRight(in.Kind, 6) + " "
	}
	if c.runtime {
		s += padRight(in.Runtime, 24) + " "
	}
	s += padRight(in.State, 10) + " "
	if c.health {
		s += padRight(dash(in.Health), 9) + " "
	}
	id := "-"
	switch {
	case in.ID != "":
		id = in.ID
		if len(id) > 12 {
			id = id[:12]
		}
	case in.Pid != 0:
		id = strconv.Itoa(in.Pid)
	}
	up, cpu, mem := "-", "-", "-"
	if in.StartedAt != nil {
		up = shortDuration(now.Sub(*in.StartedAt))
	}
	if in.Procs > 0 {
		cpu = strconv.FormatFloat(in.CPUPercent, 'f', 1, 64) + "%"
		mem = bytesize(in.RSSBytes)
	}
	return s + padLeft(strconv.Itoa(in.Restarts), 3) + " " + padRight(id, 12) + " " + padLeft(up, 7) + " " + padLeft(cpu, 6) + " " + padLeft(mem, 8)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func padRight(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		if n <= 1 {
			return string(r[:n])
		}
		return string(r[:n-1]) + "…"
	}
	return s + strings.Repeat(" ", n-len(r))
}

func padLeft(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return strings.Repeat(" ", n-len(s)) + s
}

func shortDuration(d time.Duration) string {
	s := int(d.Seconds())
	switch {
	case s < 0:
		return "0s"
	case s < 60:
		return strconv.Itoa(s) + "s"
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

func bytesize(n uint64) string {
	const k = 1024
	switch {
	case n >= k*k*k:
		return fmt.Sprintf("%.1fG", float64(n)/(k*k*k))
	case n >= k*k:
		return fmt.Sprintf("%.1fM", float64(n)/(k*k))
	case n >= k:
		return fmt.Sprintf("%.0fK", float64(n)/k)
	}
	return strconv.FormatUint(n, 10) + "B"
}
