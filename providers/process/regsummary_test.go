package process

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// TestSummaryReplaysAsRegistry: the summary of a registry, made whole or
// made at some line and then replayed with the lines after it (what
// Adopt does), holds what the replay of the registry itself holds, for
// random journals of starts (pending, committed), updates, deletions by
// ID and by handle, and lines of older orch versions (no ID); and it
// reads back as written.
func TestSummaryReplaysAsRegistry(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	for run := 0; run < 200; run++ {
		var lines []regEntry
		ids := []string{}
		for i := 0; i < 40; i++ {
			name := fmt.Sprintf("d%d", rnd.Intn(6))
			switch rnd.Intn(6) {
			case 0, 1: // a start: pending, then (mostly) committed
				id := fmt.Sprintf("id%d", i)
				ids = append(ids, id)
				lines = append(lines, regEntry{Name: name, ID: id, Pending: true, logConf: logConf{Address: "daemon." + name, Project: "p", Runtime: "runtime.process.default"}})
				if rnd.Intn(4) > 0 {
					lines = append(lines, regEntry{Name: name, ID: id, logConf: logConf{Handle: handleOf(i)}})
				}
			case 2: // an older orch's line: keyed by name
				lines = append(lines, regEntry{Name: name, logConf: logConf{Address: "daemon." + name, Project: "q", Handle: handleOf(rnd.Intn(40))}})
			case 3: // a deletion by ID
				if len(ids) > 0 {
					lines = append(lines, regEntry{Name: name, ID: ids[rnd.Intn(len(ids))], Gone: true})
				}
			case 4: // a deletion by name and handle
				lines = append(lines, regEntry{Name: name, Gone: true, logConf: logConf{Handle: handleOf(rnd.Intn(40))}})
			case 5: // a rotation update of a start
				if len(ids) > 0 {
					lines = append(lines, regEntry{Name: name, ID: ids[rnd.Intn(len(ids))], logConf: logConf{Address: "daemon." + name, Project: "p", MaxSize: 5, Handle: handleOf(i)}})
				}
			}
		}
		dir := t.TempDir()
		cut := rnd.Intn(len(lines) + 1)
		var cutOffset int64
		for i, e := range lines {
			if err := appendRegistry(dir, e); err != nil {
				t.Fatal(err)
			}
			if i+1 == cut {
				fi, _ := os.Stat(filepath.Join(dir, registryName))
				cutOffset = fi.Size()
			}
		}
		b, err := os.ReadFile(filepath.Join(dir, registryName))
		if err != nil {
			t.Fatal(err)
		}
		want := summaryOf(parseRegistry(b), 1, 2, int64(len(b)))
		got := summaryOf(parseRegistry(b[:cutOffset]), 1, 2, cutOffset)
		enc, ok := got.encode()
		if !ok {
			t.Fatal("summary not encoded")
		}
		if err := os.WriteFile(filepath.Join(dir, summaryName), enc, 0o600); err != nil {
			t.Fatal(err)
		}
		back := readSummary(dir)
		if back == nil || !reflect.DeepEqual(back, got) {
			t.Fatalf("run %d: summary read back differs:\n%+v\n%+v", run, back, got)
		}
		for rest := b[cutOffset:]; len(rest) > 0; {
			i := indexNL(rest)
			e, ok := parseRegLine(rest[:i], interner{})
			if !ok {
				e = regEntry{}
				if err := json.Unmarshal(rest[:i], &e); err != nil {
					t.Fatalf("line %q: %v", rest[:i], err)
				}
			}
			got.apply(e)
			rest = rest[i+1:]
		}
		got.offset = int64(len(b))
		if !reflect.DeepEqual(got.inst, want.inst) || !reflect.DeepEqual(got.names, want.names) {
			t.Fatalf("run %d (cut at line %d): replayed summary\n%+v\n%+v\nwant\n%+v\n%+v", run, cut, got.inst, got.names, want.inst, want.names)
		}
	}
}

func indexNL(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return len(b)
}

// TestAdoptFromSummary: a first Adopt replays the registry and writes the
// summary; the next ones, the registry unchanged or grown by the lines of
// an apply, are answered from it when every instance is the one the state
// records; an instance the state does not record, another handle, a
// second instance of a name or a pending start sends Adopt to the
// registry again.
func TestAdoptFromSummary(t *testing.T) {
	stateDir := t.TempDir()
	dir := filepath.Join(stateDir, "logs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	known := map[spec.Address][]byte{}
	start := func(name, id string, pid int) {
		t.Helper()
		e := regEntry{Name: "daemon." + name, ID: id, Pending: true, logConf: logConf{Address: "daemon." + name, Project: "p", Runtime: "runtime.process.default"}}
		if err := appendRegistry(dir, e); err != nil {
			t.Fatal(err)
		}
		if pid > 0 {
			if err := appendRegistry(dir, regEntry{Name: e.Name, ID: id, logConf: logConf{Handle: handleOf(pid)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 1; i <= 20; i++ {
		name := fmt.Sprintf("d%d", i)
		start(name, "id-"+name, 1000+i)
		known[spec.Address{Kind: spec.KindDaemon, Name: name}] = handleOf(1000 + i)
	}
	p := New(Options{})
	req := providers.AdoptRequest{Project: "p", StateDir: stateDir,
		Known:       func(a spec.Address) bool { _, ok := known[a]; return ok },
		KnownHandle: func(a spec.Address) providers.Handle { return providers.Handle(known[a]) }}
	adopt := func(wantHit bool) {
		t.Helper()
		ReleaseRegistryCaches()
		before := summaryHits.Load()
		resp, err := p.Adopt(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Objects) != 0 {
			t.Fatalf("adopted %+v", resp.Objects)
		}
		if hit := summaryHits.Load() > before; hit != wantHit {
			t.Fatalf("answered from the summary: %v, want %v", hit, wantHit)
		}
	}
	adopt(false) // no summary yet: written now
	if _, err := os.Stat(filepath.Join(dir, summaryName)); err != nil {
		t.Fatal(err)
	}
	adopt(true)
	// An apply replaces d3 (deletion, then a new start) and adds d21.
	if err := appendRegistry(dir, regEntry{Name: "daemon.d3", ID: "id-d3", Gone: true}); err != nil {
		t.Fatal(err)
	}
	start("d3", "id-d3b", 2003)
	start("d21", "id-d21", 2021)
	known[spec.Address{Kind: spec.KindDaemon, Name: "d3"}] = handleOf(2003)
	known[spec.Address{Kind: spec.KindDaemon, Name: "d21"}] = handleOf(2021)
	adopt(true)
	adopt(true)

	// The state records another handle for d4: the registry decides.
	known[spec.Address{Kind: spec.KindDaemon, Name: "d4"}] = handleOf(4444)
	adopt(false)
	known[spec.Address{Kind: spec.KindDaemon, Name: "d4"}] = handleOf(1004)
	adopt(true)
	// The state does not record d5.
	delete(known, spec.Address{Kind: spec.KindDaemon, Name: "d5"})
	adopt(false)
	known[spec.Address{Kind: spec.KindDaemon, Name: "d5"}] = handleOf(1005)
	adopt(true)
	// A second instance of d6 (a replace cut short).
	start("d6", "id-d6b", 3006)
	adopt(false)
	if err := appendRegistry(dir, regEntry{Name: "daemon.d6", ID: "id-d6b", Gone: true}); err != nil {
		t.Fatal(err)
	}
	adopt(true)
	// A pending start (its orch, this process, runs: left alone).
	start("d22", "id-d22", 0)
	adopt(false)
	if err := appendRegistry(dir, regEntry{Name: "daemon.d22", ID: "id-d22", Gone: true}); err != nil {
		t.Fatal(err)
	}
	adopt(true)
	// Another project's instances are none of this one's business.
	if err := appendRegistry(dir, regEntry{Name: "daemon.x", ID: "id-x", logConf: logConf{Address: "daemon.x", Project: "other", Handle: handleOf(9)}}); err != nil {
		t.Fatal(err)
	}
	adopt(true)
	// A summary of another file (the registry compacted, say) is not read.
	b, _ := os.ReadFile(filepath.Join(dir, registryName))
	if err := os.Remove(filepath.Join(dir, registryName)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, registryName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	adopt(false)
	adopt(true)
	// SummarizeRegistry makes it current again after lines were added.
	start("d23", "id-d23", 2023)
	known[spec.Address{Kind: spec.KindDaemon, Name: "d23"}] = handleOf(2023)
	SummarizeRegistry(stateDir)
	if !summaryCurrent(dir) {
		t.Fatal("SummarizeRegistry left the summary behind the registry")
	}
	s := readSummary(dir)
	fi, _ := os.Stat(filepath.Join(dir, registryName))
	if s == nil || s.offset != fi.Size() {
		t.Fatalf("summary after SummarizeRegistry: %+v, registry %d bytes", s, fi.Size())
	}
	adopt(true)
	// Without a summary, SummarizeRegistry makes one from the registry.
	if err := os.Remove(filepath.Join(dir, summaryName)); err != nil {
		t.Fatal(err)
	}
	ReleaseRegistryCaches()
	SummarizeRegistry(stateDir)
	if !summaryCurrent(dir) {
		t.Fatal("SummarizeRegistry wrote no summary")
	}
	adopt(true)
}

// TestSummaryAfterCompaction: SummarizeRegistry, called while a
// compaction of the registry that the same process set off is under way,
// leaves a summary of the registry as the compaction left it (of the new
// file): the next plan reads the summary, not the whole registry.
func TestSummaryAfterCompaction(t *testing.T) {
	stateDir := t.TempDir()
	dir := filepath.Join(stateDir, "logs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, registryName)
	// Live instances, then a compaction set off and held (holdCompaction).
	for i := 0; i < 20; i++ {
		e := regEntry{Name: fmt.Sprintf("daemon.d%d", i), ID: fmt.Sprint("id", i), Pending: true, logConf: logConf{Address: fmt.Sprintf("daemon.d%d", i), Project: "p", Runtime: "runtime.process.default"}}
		if err := appendRegistry(dir, e); err != nil {
			t.Fatal(err)
		}
	}
	release := holdCompaction(t, dir)
	awaited := make(chan struct{}, 1)
	compactionAwaited = func() { awaited <- struct{}{} }
	t.Cleanup(func() { compactionAwaited = func() {} })
	summarized := make(chan struct{})
	go func() {
		defer close(summarized)
		SummarizeRegistry(stateDir)
	}()
	// A summary that does not wait for the compaction is written while
	// it is held; one that waits says so, and is written once released.
	select {
	case <-summarized:
	case <-awaited:
	case <-time.After(60 * time.Second):
		t.Fatal("SummarizeRegistry neither returned nor waited for the compaction")
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	release()
	select {
	case <-summarized:
	case <-time.After(60 * time.Second):
		t.Fatal("SummarizeRegistry did not return after the compaction ended")
	}
	WaitRegistryCompactions()
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, after) {
		t.Fatal("the registry was not compacted into a new file: the test tests nothing")
	}
	if !summaryCurrent(dir) {
		t.Fatal("the summary is not of the registry the compaction left: the next plan replays the whole registry")
	}
}
