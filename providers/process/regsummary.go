package process

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/owned"
	"github.com/orch-dev/orch/spec"
)

// The registry summary, <logs>/logd.registry.summary, spares a plan the
// replay of the whole registry when adoption has nothing to do, which is
// nearly always: every instance of the registry is the one the state
// records for its address. Replaying the registry of 10,000 daemons (8
// MB of JSON lines) took 85 ms of CPU and 24 MB of allocations of each
// no-op plan, a tenth of both (issue 19).
//
// It is an image of the registry's live entries, as the replay keeps
// them (by key): for each, its name, address, project, runtime, whether
// it is pending, and the SHA-256 of its handle; with the registry's
// device and inode and the offset up to which it was read. Adopt writes
// it after replaying the registry when it was missing or of another
// file, and SummarizeRegistry (orch apply, while it waits for its starts
// to prove alive) after the lines of an apply. A later Adopt whose
// registry is the same file, at least that long (the registry is only
// appended to, and compacted into a new file), reads the summary instead,
// replays on it the lines appended since (a few: the starts and
// deletions of the last apply), and concludes that there is nothing to do
// only when, as the full pass would: no entry of the project is pending,
// and every committed one is the only instance of its name, of an
// address the state records with that very handle (the hashes are
// compared). Anything else (a pending start, a second instance, an
// address or a handle the state does not know) goes the full way over the
// registry itself, as before.
const summaryName = registryName + ".summary"

const summaryMagic = "orch registry summary 1"

// summaryHits counts the Adopts the summary answered (for tests).
var summaryHits atomic.Int64

// sumEntry is what the summary keeps of a live registry entry.
type sumEntry struct {
	name, address, project, runtime string
	pending                         bool
	hasHandle                       bool
	handle                          [32]byte // SHA-256 of the handle's bytes
}

// regSummary is the registry's live entries as the summary keeps them.
type regSummary struct {
	dev, ino uint64
	offset   int64
	inst     map[string]sumEntry // key -> entry
	names    map[string]int      // name -> number of live keys
}

func handleSum(h []byte) (sum [32]byte, has bool) {
	if len(h) == 0 {
		return sum, false
	}
	return sha256.Sum256(h), true
}

func (s *regSummary) put(k string, e sumEntry) {
	if cur, ok := s.inst[k]; ok {
		s.drop(cur.name)
	}
	s.inst[k] = e
	s.names[e.name]++
}

func (s *regSummary) drop(name string) {
	if s.names[name]--; s.names[name] <= 0 {
		delete(s.names, name)
	}
}

// apply replays one registry line on the summary, as replayRegistry does
// on the live entries.
func (s *regSummary) apply(e regEntry) {
	switch e.op() {
	case regGone:
		k := e.key()
		if cur, ok := s.inst[k]; ok {
			sum, has := handleSum(e.Handle)
			if e.ID != "" || (cur.hasHandle == has && cur.handle == sum) {
				delete(s.inst, k)
				s.drop(cur.name)
			}
		}
	case regCommit:
		if cur, ok := s.inst[e.ID]; ok {
			cur.handle, cur.hasHandle = handleSum(e.Handle)
			cur.pending = false
			s.inst[e.ID] = cur
		}
	case regPut:
		se := sumEntry{name: e.Name, address: e.Address, project: e.Project, runtime: e.Runtime, pending: e.Pending}
		se.handle, se.hasHandle = handleSum(e.Handle)
		s.put(e.key(), se)
	}
}

// summaryOf makes the summary of live, read up to offset of the registry
// (dev, ino).
func summaryOf(live *regLive, dev, ino uint64, offset int64) *regSummary {
	s := &regSummary{dev: dev, ino: ino, offset: offset,
		inst: make(map[string]sumEntry, len(live.inst)), names: make(map[string]int, len(live.names))}
	for k, e := range live.inst {
		se := sumEntry{name: e.Name, address: e.Address, project: e.Project, runtime: e.Runtime, pending: e.Pending}
		se.handle, se.hasHandle = handleSum(e.Handle)
		s.inst[k] = se
		s.names[e.Name]++
	}
	return s
}

// nothingToAdopt reports whether Adopt, asked req, would find nothing to
// adopt, resolve or stop among the summary's entries, judged as the full
// pass judges its common case; false means: look at the registry.
func (s *regSummary) nothingToAdopt(req providers.AdoptRequest, ours func(*regEntry) bool) bool {
	for _, e := range s.inst {
		re := regEntry{logConf: logConf{Project: e.project, Runtime: e.runtime}}
		if !ours(&re) {
			continue
		}
		if e.pending {
			return false
		}
		if !e.hasHandle {
			continue // the full pass skips it too
		}
		if s.names[e.name] != 1 {
			return false
		}
		addr, err := spec.ParseAddress(e.address)
		if err != nil || req.Known == nil || !req.Known(addr) {
			return false
		}
		if req.KnownHandle != nil {
			if sum, has := handleSum(req.KnownHandle(addr)); !has || sum != e.handle {
				return false
			}
		}
	}
	return true
}

// encode writes the summary; ok is false when a field cannot be written
// (a tab or a newline in it: nothing orch writes).
func (s *regSummary) encode() ([]byte, bool) {
	// Sized once (a guess of 120 bytes a line fell short at 10,000 and
	// grew the buffer by copies to 24 MB).
	size := 64
	for k, e := range s.inst {
		size += len(k) + len(e.name) + len(e.address) + len(e.project) + len(e.runtime) + 5 + 2 + 64 + 1
	}
	var b bytes.Buffer
	b.Grow(size)
	fmt.Fprintf(&b, "%s %d %d %d\n", summaryMagic, s.dev, s.ino, s.offset)
	var hx [64]byte
	for k, e := range s.inst {
		for _, f := range []string{k, e.name, e.address, e.project, e.runtime} {
			if strings.ContainsAny(f, "\t\n") {
				return nil, false
			}
			b.WriteString(f)
			b.WriteByte('\t')
		}
		switch {
		case e.pending:
			b.WriteByte('p')
		default:
			b.WriteByte('c')
		}
		b.WriteByte('\t')
		if e.hasHandle {
			hex.Encode(hx[:], e.handle[:])
			b.Write(hx[:])
		} else {
			b.WriteByte('-')
		}
		b.WriteByte('\n')
	}
	return b.Bytes(), true
}

// summaryHeader reads the first line of a summary: the registry's device,
// inode and the offset it was read to.
func summaryHeader(line string) (dev, ino uint64, offset int64, ok bool) {
	f := strings.Fields(strings.TrimPrefix(line, summaryMagic))
	if !strings.HasPrefix(line, summaryMagic+" ") || len(f) != 3 {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	dev, err1 = strconv.ParseUint(f[0], 10, 64)
	ino, err2 = strconv.ParseUint(f[1], 10, 64)
	offset, err3 = strconv.ParseInt(f[2], 10, 64)
	return dev, ino, offset, err1 == nil && err2 == nil && err3 == nil && offset >= 0
}

// readSummary reads the summary of the logs directory dir; nil when there
// is none or it does not parse.
func readSummary(dir string) *regSummary {
	f, err := owned.OpenFile(filepath.Join(dir, summaryName), os.O_RDONLY)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() {
		return nil
	}
	s := &regSummary{inst: map[string]sumEntry{}, names: map[string]int{}}
	var ok bool
	if s.dev, s.ino, s.offset, ok = summaryHeader(sc.Text()); !ok {
		return nil
	}
	intern := map[string]string{}
	in := func(b []byte) string {
		if v, ok := intern[string(b)]; ok {
			return v
		}
		v := string(b)
		if len(intern) < 64 {
			intern[v] = v
		}
		return v
	}
	var fields [7][]byte
	for sc.Scan() {
		line := sc.Bytes()
		n := 0
		for n < 6 {
			i := bytes.IndexByte(line, '\t')
			if i < 0 {
				return nil
			}
			fields[n], line = line[:i], line[i+1:]
			n++
		}
		fields[6] = line
		if bytes.IndexByte(line, '\t') >= 0 {
			return nil
		}
		e := sumEntry{name: string(fields[1]), project: in(fields[3]), runtime: in(fields[4])}
		e.address = e.name
		if !bytes.Equal(fields[2], fields[1]) {
			e.address = string(fields[2])
		}
		switch string(fields[5]) {
		case "p":
			e.pending = true
		case "c":
		default:
			return nil
		}
		if h := fields[6]; len(h) != 1 || h[0] != '-' {
			if len(h) != 64 {
				return nil
			}
			if _, err := hex.Decode(e.handle[:], h); err != nil {
				return nil
			}
			e.hasHandle = true
		}
		k := string(fields[0])
		if _, dup := s.inst[k]; dup {
			return nil
		}
		s.inst[k] = e
		s.names[e.name]++
	}
	if sc.Err() != nil {
		return nil
	}
	return s
}

// writeSummary writes s beside the registry; best effort.
func writeSummary(dir string, s *regSummary) {
	if b, ok := s.encode(); ok {
		writeFileAtomic(filepath.Join(dir, summaryName), b)
	}
}

// summaryCurrent reports whether the summary of dir was made from the
// registry as it is now (the same file, not shorter), reading only the
// summary's first line: a plan then need not warm the registry.
func summaryCurrent(dir string) bool {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, registryName), &st); err != nil {
		return false
	}
	f, err := owned.OpenFile(filepath.Join(dir, summaryName), os.O_RDONLY)
	if err != nil {
		return false
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, 128).ReadString('\n')
	if err != nil {
		return false
	}
	dev, ino, offset, ok := summaryHeader(strings.TrimSuffix(line, "\n"))
	return ok && dev == uint64(st.Dev) && ino == st.Ino && offset <= st.Size
}

// SummarizeRegistry brings the summary of the registry of the daemons of
// stateDir up to the registry as it is now, for the next Adopt: from the
// summary and the lines appended since when there is one of this file,
// else from the whole registry. orch apply calls it while it waits for
// its starts to prove alive, so that the plan after an apply does not
// replay the registry. Best effort.
//
// It first waits for a compaction of the registry that this process
// began (the apply's appends set them off): one that ended after the
// summary was written would replace the file the summary was made of,
// and the next plan would replay the whole registry after all (the
// first no-op plan after an apply of 10,000 following a destroy: 13 MB
// of its peak live heap).
func SummarizeRegistry(stateDir string) {
	logsDir := filepath.Join(stateDir, "logs")
	if owned.Check(logsDir) != nil {
		return
	}
	waitCompaction(filepath.Join(logsDir, registryName))
	if s := currentSummary(logsDir); s != nil {
		return
	}
	withRegistryAt(logsDir, func(live *regLive, dev, ino uint64, offset int64) {
		if offset >= 0 {
			writeSummary(logsDir, summaryOf(live, dev, ino, offset))
		}
	})
}

// currentSummary reads the summary of the logs directory dir and replays
// on it the lines appended to the registry since it was written (writing
// it again then); nil when there is none of the registry as it is.
func currentSummary(dir string) *regSummary {
	s := readSummary(dir)
	if s == nil {
		return nil
	}
	path := filepath.Join(dir, registryName)
	f, err := owned.OpenFile(path, os.O_RDONLY)
	if err != nil {
		return nil
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil
	}
	if uint64(st.Dev) != s.dev || st.Ino != s.ino || st.Size < s.offset {
		return nil
	}
	read := s.offset
	if st.Size > s.offset {
		b := make([]byte, st.Size-s.offset)
		n, err := f.ReadAt(b, s.offset)
		if err != nil && n == 0 {
			return nil
		}
		n = bytes.LastIndexByte(b[:n], '\n') + 1
		eachRegLine(b[:n], s.apply)
		s.offset += int64(n)
	}
	if s.offset > read {
		writeSummary(dir, s) // the lines appended since, replayed once
	}
	return s
}

// adoptFromSummary answers Adopt from the summary when it can say there is
// nothing to do (nothing); otherwise the caller reads the registry, and
// writes the summary again unless it was current.
func adoptFromSummary(dir string, req providers.AdoptRequest, ours func(*regEntry) bool) (nothing, current bool) {
	s := currentSummary(dir)
	if s == nil {
		return false, false
	}
	if !s.nothingToAdopt(req, ours) {
		return false, true
	}
	summaryHits.Add(1)
	return true, true
}
