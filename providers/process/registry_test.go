package process

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func handleOf(pid int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"pid":%d,"start":1}`, pid))
}

// TestRegistryLastLineWins: a name's latest line wins; a deletion deletes
// only the entry with its handle, so a deletion of an old instance
// replayed after a newer instance's start deletes nothing.
func TestRegistryLastLineWins(t *testing.T) {
	dir := t.TempDir()
	add := func(name string, pid int, size int64) {
		t.Helper()
		if err := appendRegistry(dir, regEntry{Name: name, logConf: logConf{Address: "daemon." + name, MaxSize: size, Handle: handleOf(pid)}}); err != nil {
			t.Fatal(err)
		}
	}
	gone := func(name string, pid int) {
		t.Helper()
		if err := appendRegistry(dir, regEntry{Name: name, logConf: logConf{Handle: handleOf(pid)}, Gone: true}); err != nil {
			t.Fatal(err)
		}
	}
	add("a", 1, 10)
	add("b", 2, 10)
	add("a", 1, 20) // an update of a
	add("b", 3, 10) // b replaced (create before destroy)
	gone("b", 2)    // the old b deleted: the new one stays
	add("c", 4, 10)
	gone("c", 4)
	for _, read := range []struct {
		name string
		get  func(string) (regEntry, bool)
	}{
		{"full", func(n string) (regEntry, bool) {
			all, err := readRegistry(dir)
			if err != nil {
				t.Fatal(err)
			}
			return all.latest(n)
		}},
		{"cached", func(n string) (regEntry, bool) {
			e, ok, err := registryEntry(dir, n)
			if err != nil {
				t.Fatal(err)
			}
			return e, ok
		}},
	} {
		if e, ok := read.get("a"); !ok || e.MaxSize != 20 {
			t.Errorf("%s: a = %+v, %v; want the update", read.name, e, ok)
		}
		if e, ok := read.get("b"); !ok || string(e.Handle) != string(handleOf(3)) {
			t.Errorf("%s: b = %+v, %v; want the newer instance", read.name, e, ok)
		}
		if _, ok := read.get("c"); ok {
			t.Errorf("%s: c deleted but found", read.name)
		}
	}
	// The cache follows what is appended after it was filled.
	add("d", 5, 10)
	if _, ok, _ := registryEntry(dir, "d"); !ok {
		t.Error("cached read missed a line appended since")
	}
	// A torn last line (a writer killed mid-write) is skipped.
	f, _ := os.OpenFile(filepath.Join(dir, registryName), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"name":"e","addr`)
	f.Close()
	if all, err := readRegistry(dir); err != nil || len(all.inst) != 3 {
		t.Errorf("with a torn line: %d entries, %v; want 3", len(all.inst), err)
	}
}

// TestRegistryCompactsUnderConcurrentWriters: writers append from many
// goroutines while the file crosses the compaction threshold several
// times; no line is lost and the file ends far smaller than everything
// written.
func TestRegistryCompactsUnderConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	const writers, each = 8, 2000
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				// Every writer rewrites its own 10 names over and over.
				name := fmt.Sprintf("w%d-n%d", w, i%10)
				// Pending: compaction keeps them (it drops the lines of
				// processes that do not run, as these fake handles).
				if err := appendRegistry(dir, regEntry{Name: name, Pending: true, logConf: logConf{Address: name, MaxSize: int64(i)}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	WaitRegistryCompactions()
	all, err := readRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(all.inst) != writers*10 {
		t.Fatalf("%d live entries, want %d", len(all.inst), writers*10)
	}
	for w := 0; w < writers; w++ {
		for n := 0; n < 10; n++ {
			e := all.inst["~"+fmt.Sprintf("w%d-n%d", w, n)]
			if want := int64(each - 10 + n); e.MaxSize != want {
				t.Errorf("w%d-n%d: max_size %d, want the last written %d", w, n, e.MaxSize, want)
			}
		}
	}
	st, err := os.Stat(filepath.Join(dir, registryName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() >= 4*registryCompactMin {
		t.Errorf("registry is %d bytes after %d lines: never compacted", st.Size(), writers*each)
	}
}

// TestRegistryCompactionDropsEnded: a compaction keeps pending starts and
// the instances that run, and drops the lines of processes that ended (a
// daemon restarted after each crash would otherwise grow the registry for
// ever, a line per restart).
func TestRegistryCompactionDropsEnded(t *testing.T) {
	dir := t.TempDir()
	self, _ := readStat(os.Getpid())
	running := json.RawMessage(fmt.Sprintf(`{"pid":%d,"start_ticks":%d}`, os.Getpid(), self.StartTicks))
	appendRegistry(dir, regEntry{Name: "runs", ID: "r", logConf: logConf{Address: "daemon.runs", Handle: running}})
	appendRegistry(dir, regEntry{Name: "starting", ID: "s", Pending: true, logConf: logConf{Address: "daemon.starting"}})
	for i := 0; i < 6000; i++ {
		// Restarts of a crashing daemon: a new instance each time.
		appendRegistry(dir, regEntry{Name: "crashes", ID: fmt.Sprint("c", i), logConf: logConf{Address: "daemon.crashes", Handle: handleOf(1 << 22)}})
	}
	WaitRegistryCompactions()
	all, err := readRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := all.latest("runs"); !ok || all.inst["s"].Name != "starting" {
		t.Fatalf("compaction dropped a running instance or a pending start: %v", all.inst)
	}
	if n := len(all.of("crashes")); n > registryCompactMin/100 {
		t.Fatalf("%d ended instances kept after compactions", n)
	}
}

// TestRegistryCompactionRemembered: the size a compaction left is kept
// beside the registry, so that a new orch process (here: this process's
// memory of it forgotten) does not compact a registry of live daemons at
// its first append, and does once the file has doubled since.
func TestRegistryCompactionRemembered(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, registryName)
	self, _ := readStat(os.Getpid())
	running := json.RawMessage(fmt.Sprintf(`{"pid":%d,"start_ticks":%d}`, os.Getpid(), self.StartTicks))
	// Live entries only, more than registryCompactMin of them: the first
	// compaction finds nothing to drop and decides against.
	for i := 0; ; i++ {
		appendRegistry(dir, regEntry{Name: fmt.Sprint("d", i), ID: fmt.Sprint("i", i), logConf: logConf{Address: "daemon.d", Handle: running}})
		WaitRegistryCompactions()
		if v, ok := compacted.Load(path); ok && v.(int64) > 0 {
			break
		}
	}
	inode := func() uint64 {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	mark, err := os.ReadFile(path + registryMarkSuffix)
	if err != nil {
		t.Fatalf("no mark beside the registry: %v", err)
	}
	before := inode()
	compacted.Delete(path) // a new process
	appendRegistry(dir, regEntry{Name: "ended", ID: "e", logConf: logConf{Address: "daemon.ended", Handle: handleOf(1 << 22)}})
	WaitRegistryCompactions()
	if inode() != before {
		t.Fatalf("a new process compacted the registry at its first append (mark %q)", mark)
	}
	// Once the file has doubled since, it is compacted (the ended line
	// dropped): within as many bytes of appends again as it holds.
	ended := func() bool {
		all, err := readRegistry(dir)
		if err != nil {
			t.Fatal(err)
		}
		_, ok := all.latest("ended")
		return ok
	}
	st, _ := os.Stat(path)
	limit := st.Size()
	for i := 0; ended(); i++ {
		if st, _ := os.Stat(path); st.Size() > 2*limit+1024 {
			t.Fatalf("the registry grew to %d bytes (mark %q) and was never compacted", st.Size(), mark)
		}
		for j := 0; j < 100; j++ {
			appendRegistry(dir, regEntry{Name: "crashes", ID: fmt.Sprint("c", i, "-", j), logConf: logConf{Address: "daemon.crashes", Handle: handleOf(1 << 22)}})
		}
		WaitRegistryCompactions()
	}
}

// TestReleaseRegistryCaches: once released, a registry's cached entries
// are gone, and the next lookup reads the file again, lines appended
// meanwhile included.
func TestReleaseRegistryCaches(t *testing.T) {
	dir := t.TempDir()
	if err := appendRegistry(dir, regEntry{Name: "a", ID: "1", logConf: logConf{Address: "daemon.a", Handle: handleOf(1)}}); err != nil {
		t.Fatal(err)
	}
	names := func() int {
		n := 0
		if err := withRegistry(dir, func(live *regLive) { n = len(live.inst) }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := names(); n != 1 {
		t.Fatalf("%d entries, want 1", n)
	}
	ReleaseRegistryCaches()
	v, _ := regCaches.Load(filepath.Join(dir, registryName))
	if c := v.(*regCache); c.live != nil || c.offset != 0 {
		t.Fatalf("released cache still holds %d entries at offset %d", len(c.live.inst), c.offset)
	}
	if err := appendRegistry(dir, regEntry{Name: "b", ID: "2", logConf: logConf{Address: "daemon.b", Handle: handleOf(2)}}); err != nil {
		t.Fatal(err)
	}
	if n := names(); n != 2 {
		t.Fatalf("after release: %d entries, want 2", n)
	}
}

// TestWarmRegistry: WarmRegistry replays the registry of a state
// directory into the cache Adopt reads through, so that Adopt parses only
// what was appended after it; a logs directory that is not orch's own is
// not read.
func TestWarmRegistry(t *testing.T) {
	stateDir := t.TempDir()
	dir := filepath.Join(stateDir, "logs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := appendRegistry(dir, regEntry{Name: "a", ID: "1", logConf: logConf{Address: "daemon.a", Handle: handleOf(1)}}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, registryName)
	WarmRegistry(stateDir)
	v, ok := regCaches.Load(path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !ok || v.(*regCache).live == nil || v.(*regCache).offset != fi.Size() {
		t.Fatal("WarmRegistry left the registry unread")
	}
	c := v.(*regCache)
	if err := appendRegistry(dir, regEntry{Name: "b", ID: "2", logConf: logConf{Address: "daemon.b", Handle: handleOf(2)}}); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := withRegistry(dir, func(live *regLive) { n = len(live.inst) }); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d entries after the warm-up and an appended line, want 2", n)
	}
	ReleaseRegistryCaches()

	// A logs directory others may write is left alone.
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	WarmRegistry(stateDir)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live != nil {
		t.Fatal("WarmRegistry read the registry of a directory that is not orch's own")
	}
}

// TestRegistryAppendsGathered: lines appended while a write is under way
// are written together in the next one, each exactly once and whole.
func TestRegistryAppendsGathered(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, registryName)
	v, _ := appenders.LoadOrStore(path, &appender{})
	a := v.(*appender)
	a.mu.Lock() // a write under way
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	add := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- appendRegistry(dir, regEntry{Name: fmt.Sprintf("d%d", i), Pending: true, logConf: logConf{Address: fmt.Sprintf("daemon.d%d", i)}})
		}()
	}
	queued := func() (lines int, writing bool) {
		a.qmu.Lock()
		defer a.qmu.Unlock()
		if a.next != nil {
			lines = bytes.Count(a.next.lines, []byte("\n"))
		}
		return lines, a.writing
	}
	// The first caller writes: it takes its own line and waits for the
	// write under way.
	add(0)
	for {
		if lines, writing := queued(); writing && lines == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// The 49 others gather behind it.
	for i := 1; i < n; i++ {
		add(i)
	}
	for {
		if lines, _ := queued(); lines == n-1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	before := a.writes
	a.mu.Unlock()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	a.mu.Lock()
	writes := a.writes - before
	a.mu.Unlock()
	if writes != 2 {
		t.Errorf("%d writes for %d lines, want 2 (the first line, then the 49 gathered)", writes, n)
	}
	all, err := readRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(all.inst) != n {
		t.Fatalf("%d entries, want %d", len(all.inst), n)
	}
	data, _ := os.ReadFile(path)
	if lines := bytes.Count(data, []byte("\n")); lines != n {
		t.Fatalf("%d lines, want %d", lines, n)
	}
}

// TestRegistryCompactionCopiesLiveLines: a compaction copies the live
// entries' lines as they are (a pending put and its commit line, a line
// longer than the copy's buffer, an entry of an older orch without an
// ID) and drops the rest; the registry replays to the same live entries
// before and after, and the kept lines are in their old order.
func TestRegistryCompactionCopiesLiveLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, registryName)
	self, _ := readStat(os.Getpid())
	running := json.RawMessage(fmt.Sprintf(`{"pid":%d,"start_ticks":%d}`, os.Getpid(), self.StartTicks))
	var b bytes.Buffer
	line := func(e regEntry) {
		j, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	line(regEntry{Name: "a", ID: "a1", Pending: true, logConf: logConf{Address: "daemon.a"}})
	for i := 0; i < 3000; i++ {
		line(regEntry{Name: "crashes", ID: fmt.Sprint("c", i), logConf: logConf{Address: "daemon.crashes", Handle: handleOf(1 << 22)}})
		if i == 1000 {
			line(regEntry{ID: "a1", Name: "a", logConf: logConf{Handle: running}}) // the commit of a1
			b.WriteString("{cut off by a crash\n")
			line(regEntry{Name: "long", ID: "l1", logConf: logConf{Address: "daemon.long", ConfigHash: strings.Repeat("h", 200<<10), Handle: running}})
			line(regEntry{Name: "legacy", logConf: logConf{Address: "daemon.legacy", Handle: running}})
			line(regEntry{Name: "gone", ID: "g1", logConf: logConf{Address: "daemon.gone", Handle: running}})
		}
		if i == 2000 {
			line(regEntry{Name: "gone", ID: "g1", Gone: true})
			line(regEntry{Name: "pending", ID: "p1", Pending: true, logConf: logConf{Address: "daemon.pending"}})
		}
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	before := parseRegistry(b.Bytes())
	compactRegistry(path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) >= b.Len()/2 {
		t.Fatalf("registry is %d bytes after compaction, %d before", len(data), b.Len())
	}
	after := parseRegistry(data)
	want := map[string]bool{"a1": true, "l1": true, "~legacy": true, "p1": true}
	if len(after.inst) != len(want) {
		t.Fatalf("after compaction: %d entries, want %v", len(after.inst), want)
	}
	var order []string
	for k, e := range after.inst {
		if !want[k] {
			t.Errorf("kept %s", k)
			continue
		}
		was := before.inst[k]
		e.seq, was.seq = 0, 0
		if !reflect.DeepEqual(e, was) {
			t.Errorf("%s replays to %+v, was %+v", k, e, was)
		}
		order = append(order, k)
	}
	sort.Slice(order, func(i, j int) bool { return after.inst[order[i]].seq < after.inst[order[j]].seq })
	if got := strings.Join(order, " "); got != "a1 l1 ~legacy p1" {
		t.Errorf("kept entries in order %s, want a1 l1 ~legacy p1", got)
	}
	if e := after.inst["a1"]; e.Pending || string(e.Handle) != string(running) {
		t.Errorf("a1's commit line was not kept: %+v", e)
	}
	mark, err := os.ReadFile(path + registryMarkSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := strconv.ParseInt(strings.TrimSpace(string(mark)), 10, 64); n != int64(len(data)) {
		t.Errorf("mark says %d bytes, the registry has %d", n, len(data))
	}
}

// TestRegistryAppendsGoOnDuringCompaction: a compaction set off by an
// append runs beside the appends that follow (the steps that write them
// never wait for it), and the lines appended between its judgement and
// its copy are in the compacted file, after the live lines it kept.
func TestRegistryAppendsGoOnDuringCompaction(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, registryName)
	appendRegistry(dir, regEntry{Name: "a", ID: "a1", Pending: true, logConf: logConf{Address: "daemon.a"}})
	release := holdCompaction(t, dir)
	// Held between its judgement and its copy: appends still go through.
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 20; i++ {
			if err := appendRegistry(dir, regEntry{Name: fmt.Sprint("late", i), ID: fmt.Sprint("l", i), Pending: true, logConf: logConf{Address: "daemon.late"}}); err != nil {
				done <- err
				return
			}
		}
		done <- appendRegistry(dir, regEntry{Name: "a", ID: "a1", Gone: true})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		release()
		t.Fatal("appends waited for a compaction")
	}
	before, _ := os.Stat(path)
	release()
	WaitRegistryCompactions()
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() >= before.Size()/2 {
		t.Fatalf("registry %d bytes after the compaction, %d before: not compacted", after.Size(), before.Size())
	}
	all, err := readRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if all.inst[fmt.Sprint("l", i)].Name != fmt.Sprint("late", i) {
			t.Errorf("late%d, appended during the compaction, is lost", i)
		}
	}
	if _, ok := all.inst["a1"]; ok {
		t.Error("a1's gone line, appended during the compaction, is lost: a1 is still live")
	}
	if n := len(all.of("crashes")); n != 0 {
		t.Errorf("%d ended instances kept", n)
	}
}

// holdCompaction appends to the registry in dir 4,000 ended instances of
// "crashes", with no compaction set off meanwhile (the last one is
// remembered as huge), then one more line that sets one off, and returns
// once that compaction has judged every ended line and is held, before
// its copy, until release is called (at the test's end at the latest).
func holdCompaction(t *testing.T, dir string) (release func()) {
	t.Helper()
	path := filepath.Join(dir, registryName)
	held, free := make(chan struct{}), make(chan struct{})
	var heldOnce, freeOnce sync.Once
	compactionJudged = func() {
		heldOnce.Do(func() { close(held) })
		<-free
	}
	release = func() { freeOnce.Do(func() { close(free) }) }
	t.Cleanup(func() {
		release()
		WaitRegistryCompactions()
		compactionJudged = func() {}
	})
	compacted.Store(path, int64(1<<40))
	for i := 0; i < 4000; i++ {
		if err := appendRegistry(dir, regEntry{Name: "crashes", ID: fmt.Sprint("c", i), logConf: logConf{Address: "daemon.crashes", Handle: handleOf(1 << 22)}}); err != nil {
			t.Fatal(err)
		}
	}
	compacted.Store(path, int64(0))
	go appendRegistry(dir, regEntry{Name: "crashes", ID: "c-last", logConf: logConf{Address: "daemon.crashes", Handle: handleOf(1 << 22)}})
	select {
	case <-held:
	case <-time.After(60 * time.Second):
		t.Fatal("no compaction was set off")
	}
	return release
}

// registryWriterEnv makes TestRegistryWriterChild a writer of
// TestRegistryCompactsAcrossProcesses: "DIR ID".
const registryWriterEnv = "ORCH_TEST_REGISTRY_WRITER"

// TestRegistryWriterChild is a writer process of
// TestRegistryCompactsAcrossProcesses (it does nothing otherwise): it
// appends, for its 10 names, a pending line each time, with ended
// instances between them, so that its compactions have lines to drop.
func TestRegistryWriterChild(t *testing.T) {
	v := os.Getenv(registryWriterEnv)
	if v == "" {
		return
	}
	dir, id, _ := strings.Cut(v, " ")
	for i := 0; i < 3000; i++ {
		name := fmt.Sprintf("w%s-n%d", id, i%10)
		// No ID: each line of a name replaces the one before.
		if err := appendRegistry(dir, regEntry{Name: name, Pending: true, logConf: logConf{Address: name, MaxSize: int64(i)}}); err != nil {
			t.Fatal(err)
		}
		if err := appendRegistry(dir, regEntry{Name: "ended" + id, ID: fmt.Sprint("e", id, "-", i), logConf: logConf{Address: "daemon.ended", Handle: handleOf(1 << 22)}}); err != nil {
			t.Fatal(err)
		}
	}
	WaitRegistryCompactions()
}

// TestRegistryCompactsAcrossProcesses: three processes append to one
// registry and compact it as it doubles, each judging it under a shared
// lock beside the others' appends and copying it under an exclusive one
// (which flock(2) does not take atomically from a shared one): at the
// end every process's last line for each of its names is there, the
// ended instances are mostly gone, and no compaction's copy is left.
func TestRegistryCompactsAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	const writers = 3
	var cmds []*exec.Cmd
	for w := 0; w < writers; w++ {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestRegistryWriterChild$", "-test.count", "1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d", registryWriterEnv, dir, w))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("writer %d: %s", w, out.String())
			}
		})
	}
	for w, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer %d: %v", w, err)
		}
	}
	all, err := readRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	for w := 0; w < writers; w++ {
		for n := 0; n < 10; n++ {
			name := fmt.Sprintf("w%d-n%d", w, n)
			e, ok := all.inst["~"+name]
			if want := int64(3000 - 10 + n); !ok || e.MaxSize != want {
				t.Errorf("%s: max_size %d (found %v), want the last written %d", name, e.MaxSize, ok, want)
			}
		}
	}
	if n := len(all.of("ended0")) + len(all.of("ended1")) + len(all.of("ended2")); n > writers*3000/2 {
		t.Errorf("%d of %d ended instances kept: not compacted", n, writers*3000)
	} else {
		t.Logf("%d of %d ended instances kept", n, writers*3000)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("a compaction's copy is left: %s", e.Name())
		}
	}
}
