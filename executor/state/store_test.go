package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/spec"
)

func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), ".orch", "state.db")
	s, err := Open(path, Options{Operation: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func mustAddr(t *testing.T, s string) spec.Address {
	t.Helper()
	a, err := spec.ParseAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func sameInstance(t *testing.T, got, want Instance) {
	t.Helper()
	if got.Addr != want.Addr || got.Runtime != want.Runtime ||
		!bytes.Equal(got.Config, want.Config) || got.ConfigHash != want.ConfigHash ||
		!bytes.Equal(got.Handle, want.Handle) || got.Status != want.Status || got.LastError != want.LastError {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got.CreatedAt.IsZero() || got.UpdatedAt.IsZero() || got.UpdatedAt.Before(got.CreatedAt) {
		t.Errorf("%s: timestamps not set: created %v updated %v", got.Addr, got.CreatedAt, got.UpdatedAt)
	}
}

func serial(t *testing.T, s *Store) uint64 {
	t.Helper()
	n, err := s.Serial()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	insts := []Instance{
		testInstance(10),
		testInstance(2),
		{
			Addr:      mustAddr(t, `daemon.api["eu-west"]`),
			Runtime:   mustAddr(t, "runtime.docker.local"),
			Config:    []byte(`{"image":"example/pg:16","ports":["5432:5432"],"html":"<b>&amp;</b>","u":"\u00e9"}`),
			Handle:    []byte{0, 1, 2, 0xff},
			Status:    "failed",
			LastError: "exit status 1",
		},
		{Addr: mustAddr(t, "job.migrate")}, // nothing but an address
		{Addr: mustAddr(t, "module.compress"), Config: []byte(`null`)},
	}
	for _, in := range insts {
		if err := s.Put(in); err != nil {
			t.Fatal(err)
		}
	}
	for _, in := range insts {
		got, err := s.Get(in.Addr)
		if err != nil {
			t.Fatal(err)
		}
		sameInstance(t, got, in)
	}

	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, in := range list {
		names = append(names, in.Addr.String())
	}
	// spec.Address.Less: by kind, then name, then key (numerically).
	want := `daemon.api["eu-west"] daemon.svc[2] daemon.svc[10] job.migrate module.compress`
	if got := strings.Join(names, " "); got != want {
		t.Errorf("List order:\n got %s\nwant %s", got, want)
	}

	if _, err := s.Get(mustAddr(t, "daemon.nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a missing record: %v, want ErrNotFound", err)
	}
	if err := s.Delete(insts[0].Addr); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(insts[0].Addr); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Put(Instance{}); err == nil {
		t.Error("Put without an address succeeded")
	}
	if err := s.Put(Instance{Addr: insts[0].Addr, Config: []byte(`{"a":`)}); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("Put of invalid JSON config: %v", err)
	}
}

func TestTimestamps(t *testing.T) {
	s, _ := openTemp(t)
	in := testInstance(1)
	if err := s.Put(in); err != nil {
		t.Fatal(err)
	}
	first, _ := s.Get(in.Addr)
	in.Status = "stopped"
	if err := s.Put(in); err != nil { // CreatedAt zero: kept from the record
		t.Fatal(err)
	}
	second, _ := s.Get(in.Addr)
	if !second.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("CreatedAt moved: %v -> %v", first.CreatedAt, second.CreatedAt)
	}
	if second.UpdatedAt.Before(first.UpdatedAt) || second.Status != "stopped" {
		t.Errorf("second put: %+v", second)
	}
	explicit := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	in.CreatedAt = explicit
	s.Put(in)
	third, _ := s.Get(in.Addr)
	if !third.CreatedAt.Equal(explicit) {
		t.Errorf("explicit CreatedAt not kept: %v", third.CreatedAt)
	}
}

func TestSerial(t *testing.T) {
	s, path := openTemp(t)
	if n := serial(t, s); n != 0 {
		t.Fatalf("new store serial %d, want 0", n)
	}
	step := func(what string, want uint64, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n := serial(t, s); n != want {
			t.Errorf("after %s: serial %d, want %d", what, n, want)
		}
	}
	step("put", 1, s.Put(testInstance(1)))
	step("put again", 2, s.Put(testInstance(1)))
	step("delete", 3, s.Delete(testInstance(1).Addr))
	step("delete of a missing record", 3, s.Delete(testInstance(1).Addr))
	step("batch", 4, s.Update(func(tx *Tx) error {
		for i := range 5 {
			if err := tx.Put(testInstance(i)); err != nil {
				return err
			}
		}
		return tx.Delete(testInstance(0).Addr)
	}))
	step("empty batch", 4, s.Update(func(tx *Tx) error { return nil }))
	step("kv put", 4, s.KV("module.x").Put("k", []byte("v")))
	boom := errors.New("boom")
	if err := s.Update(func(tx *Tx) error { tx.Put(testInstance(9)); return boom }); err != boom {
		t.Fatalf("failed batch returned %v", err)
	}
	step("failed batch", 4, nil)

	var txSerial uint64
	s.View(func(tx *Tx) error { txSerial = tx.Serial(); return nil })
	if txSerial != 4 {
		t.Errorf("Tx.Serial %d, want 4", txSerial)
	}
	s.Close()
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n := serial(t, s2); n != 4 {
		t.Errorf("serial after reopen %d, want 4", n)
	}
}

func TestUpdateIsAtomic(t *testing.T) {
	s, _ := openTemp(t)
	s.Put(testInstance(0))
	boom := errors.New("boom")
	err := s.Update(func(tx *Tx) error {
		for i := 1; i < 10; i++ {
			tx.Put(testInstance(i))
		}
		tx.Delete(testInstance(0).Addr)
		// The transaction sees its own writes.
		if got, err := tx.List(); err != nil || len(got) != 9 {
			t.Errorf("List inside the batch: %d records, %v", len(got), err)
		}
		return boom
	})
	if err != boom {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	list, _ := s.List()
	if len(list) != 1 || list[0].Addr != testInstance(0).Addr {
		t.Errorf("a failed batch left %d records: %v", len(list), list)
	}
}

func TestLineage(t *testing.T) {
	s, path := openTemp(t)
	l := s.Lineage()
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(l) {
		t.Fatalf("lineage %q is not 128 bits of hex", l)
	}
	s.Put(testInstance(1))
	s.Close()
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Lineage() != l {
		t.Errorf("lineage changed on reopen: %s -> %s", l, s2.Lineage())
	}
	r, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Lineage() != l {
		t.Errorf("reader lineage %s, want %s", r.Lineage(), l)
	}
	s2.Close()
	other, _ := openTemp(t)
	if other.Lineage() == l {
		t.Error("two stores have the same lineage")
	}
}

func TestLockSameProcess(t *testing.T) {
	s, path := openTemp(t)
	_, err := Open(path, Options{Operation: "plan"})
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("second Open: %v, want a *LockedError", err)
	}
	host, _ := os.Hostname()
	if le.Pid != os.Getpid() || le.Operation != "test" || le.Host != host || le.Since.IsZero() {
		t.Errorf("lock holder %+v", le.LockInfo)
	}
	checkLockMessage(t, err, os.Getpid())

	s.Close()
	s2, err := Open(path, Options{Operation: "plan"})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
	// The lock file stays, empty.
	if b, err := os.ReadFile(path + ".lock"); err != nil || len(b) != 0 {
		t.Errorf("lock file after Close: %q, %v", b, err)
	}
}

func checkLockMessage(t *testing.T, err error, pid int) {
	t.Helper()
	m := regexp.MustCompile(`^state locked by pid (\d+) since (\S+) `).FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("lock message %q", err)
	}
	if m[1] != strconv.Itoa(pid) {
		t.Errorf("lock message names pid %s, want %d: %q", m[1], pid, err)
	}
	if _, perr := time.Parse(time.RFC3339, m[2]); perr != nil {
		t.Errorf("lock message time %q is not RFC 3339: %v", m[2], perr)
	}
}

func TestLockTimeoutWaits(t *testing.T) {
	s, path := openTemp(t)
	waiting := make(chan struct{})
	var once sync.Once
	type result struct {
		s   *Store
		err error
	}
	done := make(chan result, 1)
	go func() {
		s2, err := Open(path, Options{
			Operation:   "apply",
			LockTimeout: time.Minute,
			onWait:      func() { once.Do(func() { close(waiting) }) },
		})
		done <- result{s2, err}
	}()
	<-waiting // the second writer found the lock held and waits
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("waiting Open: %v", r.err)
	}
	defer r.s.Close()
	if err := r.s.Put(testInstance(1)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path + ".lock")
	if !bytes.Contains(b, []byte(`"operation":"apply"`)) {
		t.Errorf("lock file names the old holder: %s", b)
	}
}

func TestLockTimeoutExpires(t *testing.T) {
	_, path := openTemp(t)
	waited := false
	_, err := Open(path, Options{LockTimeout: 60 * time.Millisecond, onWait: func() { waited = true }})
	var le *LockedError
	if !errors.As(err, &le) || !waited {
		t.Fatalf("Open with an expiring timeout: %v (waited %v)", err, waited)
	}
}

func TestLockAcrossProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	c := startChild(t, "hold", path)
	c.waitLine(t, func(l string) bool { return l == "locked" })
	pid := c.cmd.Process.Pid

	_, err := Open(path, Options{Operation: "plan"})
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("Open while the child holds the lock: %v", err)
	}
	checkLockMessage(t, err, pid)
	if le.Operation != "apply" || !strings.Contains(err.Error(), "apply") {
		t.Errorf("lock message does not name the operation: %v", err)
	}

	// A reader is not excluded by the writer lock.
	r, err := OpenReadOnly(path)
	if err != nil {
		t.Fatalf("OpenReadOnly while a writer holds the lock: %v", err)
	}
	if _, err := r.List(); err != nil {
		t.Fatal(err)
	}

	c.kill(t) // the kernel releases the dead holder's flock: never stale
	s, err := Open(path, Options{Operation: "apply"})
	if err != nil {
		t.Fatalf("Open after the holder was killed: %v", err)
	}
	s.Close()
}

// TestLockOfDeadHolderHeldByItsFork: a writer killed while it was
// starting a process leaves that process a copy of its lock until the
// process execs. Another writer waits for it instead of failing at once,
// naming a holder that is gone (orch up run again right after orch up
// was killed in the middle of its starts).
func TestLockOfDeadHolderHeldByItsFork(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".orch", "state.db")
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	b, _ := json.Marshal(LockInfo{Pid: dead.Process.Pid, Operation: "up", Since: time.Now(), Host: host})
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	// The fork: it holds the lock (its copy of the descriptor) after the
	// holder has closed its own, until it exits.
	fork := exec.Command("sleep", "0.3")
	fork.ExtraFiles = []*os.File{f}
	if err := fork.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { fork.Wait(); close(exited) }()
	t.Cleanup(func() { fork.Process.Kill(); <-exited })
	f.Close()

	// Open found the lock held (it waited) and took it once the fork
	// let it go. (Whether the fork's Wait has returned yet is not what
	// says so: the lock goes at the fork's exit, before it is reaped.)
	waited := false
	s, err := Open(path, Options{Operation: "up", onWait: func() { waited = true }})
	if err != nil {
		t.Fatalf("Open while the dead holder's fork holds its lock: %v", err)
	}
	s.Close()
	if !waited {
		t.Error("Open took the lock while the fork still held it")
	}
}

func TestCrashSafety(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	c := startChild(t, "crash", path)
	// Let it commit a few dozen steps, then kill it mid-loop.
	c.waitLine(t, func(l string) bool { n, _ := strconv.Atoi(l); return n >= 40 })
	c.kill(t)
	committed := 0
	for l := range c.lines { // drained: the pipe is closed
		if n, err := strconv.Atoi(l); err == nil {
			committed = max(committed, n)
		}
	}
	committed = max(committed, 40)

	s, err := Open(path, Options{Operation: "check"})
	if err != nil {
		t.Fatalf("Open after a crash: %v", err)
	}
	defer s.Close()
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	// Every Put that returned is there; the one in flight may or may not be.
	if len(list) < committed || len(list) > committed+1 {
		t.Fatalf("%d records after a crash with %d committed", len(list), committed)
	}
	for i := range committed {
		got, err := s.Get(testInstance(i).Addr)
		if err != nil {
			t.Fatalf("committed step %d lost: %v", i, err)
		}
		sameInstance(t, got, testInstance(i))
	}
	if n := serial(t, s); n != uint64(len(list)) {
		t.Errorf("serial %d, want %d (one per committed Put)", n, len(list))
	}
	t.Logf("child committed %d steps before SIGKILL", committed)
}

func TestKV(t *testing.T) {
	s, _ := openTemp(t)
	a, b := s.KV("module.a"), s.KV("module.b")
	if _, err := a.Get("x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get from a namespace never written: %v", err)
	}
	for _, kv := range []struct {
		ns       *KV
		key, val string
	}{{a, "x", "a-x"}, {a, "y/1", "a-y1"}, {a, "y/2", "a-y2"}, {a, "z", ""}, {b, "x", "b-x"}} {
		if err := kv.ns.Put(kv.key, []byte(kv.val)); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := a.Get("x"); err != nil || string(v) != "a-x" {
		t.Errorf("a/x = %q, %v", v, err)
	}
	if v, err := b.Get("x"); err != nil || string(v) != "b-x" {
		t.Errorf("b/x = %q, %v", v, err)
	}
	if v, err := a.Get("z"); err != nil || v == nil || len(v) != 0 {
		t.Errorf("empty value: %q, %v", v, err)
	}
	if _, err := b.Get("y/1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("namespace b sees a's key: %v", err)
	}
	list, err := a.List("y/")
	if err != nil || len(list) != 2 || list[0].Key != "y/1" || string(list[1].Value) != "a-y2" {
		t.Errorf("List(y/) = %v, %v", list, err)
	}
	if all, _ := a.List(""); len(all) != 4 {
		t.Errorf("List() = %v", all)
	}
	if err := a.Delete("x"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get("x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	if v, _ := b.Get("x"); string(v) != "b-x" {
		t.Errorf("Delete in a reached b: %q", v)
	}
	if err := a.Drop(); err != nil {
		t.Fatal(err)
	}
	if all, _ := a.List(""); len(all) != 0 {
		t.Errorf("after Drop: %v", all)
	}
	if all, _ := b.List(""); len(all) != 1 {
		t.Errorf("Drop of a reached b: %v", all)
	}

	big := make([]byte, MaxKVValue+1)
	if err := a.Put("big", big); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "limit") {
		t.Errorf("Put of %d bytes: %v", len(big), err)
	}
	if err := a.Put("max", big[:MaxKVValue]); err != nil {
		t.Errorf("Put of exactly the limit: %v", err)
	}
	if err := a.Put(strings.Repeat("k", MaxKVKey+1), nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("long key: %v", err)
	}
	if err := s.KV("").Put("k", nil); err == nil {
		t.Error("empty namespace accepted")
	}
	// Instance records and KV do not mix.
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("KV writes show up as instances: %v", list)
	}
}

func TestFormatRefused(t *testing.T) {
	s, path := openTemp(t)
	s.Put(testInstance(1))
	s.Close()

	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, []byte("3")) })
	db.Close()

	for name, open := range map[string]func() (*Store, error){
		"Open":         func() (*Store, error) { return Open(path, Options{}) },
		"OpenReadOnly": func() (*Store, error) { return OpenReadOnly(path) },
	} {
		_, err := open()
		if !errors.Is(err, ErrUnsupportedFormat) || !strings.Contains(err.Error(), "format 3") {
			t.Errorf("%s of a format 3 file: %v", name, err)
		}
	}
	// The refusal released the lock.
	if _, err := Open(path, Options{}); errors.As(err, new(*LockedError)) {
		t.Errorf("lock kept after a refused Open: %v", err)
	}
}

func TestNotAStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("theirs")); return err })
	db.Close()
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "not an orch state file") {
		t.Errorf("Open of a foreign bbolt file: %v", err)
	}
	if _, err := OpenReadOnly(path); err == nil || !strings.Contains(err.Error(), "not an orch state file") {
		t.Errorf("OpenReadOnly of a foreign bbolt file: %v", err)
	}
}

func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenReadOnly(filepath.Join(dir, "none.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenReadOnly of a missing file: %v", err)
	}

	path := filepath.Join(dir, "state.db")
	w, err := Open(path, Options{Operation: "up"})
	if err != nil {
		t.Fatal(err)
	}
	w.Put(testInstance(1))
	w.KV("m").Put("k", []byte("v"))
	w.Close()

	// No writer.
	r, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := r.Get(testInstance(1).Addr); err != nil {
		t.Fatal(err)
	} else {
		sameInstance(t, got, testInstance(1))
	}
	if v, err := r.KV("m").Get("k"); err != nil || string(v) != "v" {
		t.Errorf("reader KV: %q, %v", v, err)
	}
	for what, err := range map[string]error{
		"Put":    r.Put(testInstance(2)),
		"Delete": r.Delete(testInstance(1).Addr),
		"Update": r.Update(func(*Tx) error { return nil }),
		"KV.Put": r.KV("m").Put("k", nil),
		"View":   r.View(func(tx *Tx) error { return tx.Put(testInstance(3)) }),
	} {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s through a reader: %v, want ErrReadOnly", what, err)
		}
	}

	// A writer (an `orch up` running for days) and a reader side by side:
	// the reader sees every committed step, the writer is never blocked
	// by the open reader.
	w, err = Open(path, Options{Operation: "up"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 2; i <= 4; i++ {
		if err := w.Put(testInstance(i)); err != nil {
			t.Fatalf("writer with a reader open: %v", err)
		}
		list, err := r.List()
		if err != nil {
			t.Fatalf("reader with a writer open: %v", err)
		}
		if len(list) != i {
			t.Errorf("reader sees %d records, want %d", len(list), i)
		}
	}
	ws, _ := w.Serial()
	rs, _ := r.Serial()
	if ws != rs {
		t.Errorf("reader serial %d, writer serial %d", rs, ws)
	}
}

// A reader that arrives while a write transaction is in flight waits for it
// and sees all of it, never half.
func TestReaderWaitsForTransaction(t *testing.T) {
	w, path := openTemp(t)
	r, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	inTx, release := make(chan struct{}), make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		werr <- w.Update(func(tx *Tx) error {
			for i := range 50 {
				tx.Put(testInstance(i))
			}
			close(inTx)
			<-release
			return nil
		})
	}()
	<-inTx
	rlist := make(chan int, 1)
	go func() {
		list, err := r.List()
		if err != nil {
			t.Error(err)
		}
		rlist <- len(list)
	}()
	close(release)
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if n := <-rlist; n != 50 {
		t.Errorf("reader saw %d of the 50 records of a transaction", n)
	}
}

func TestClosed(t *testing.T) {
	s, _ := openTemp(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.List(); !errors.Is(err, ErrClosed) {
		t.Errorf("List after Close: %v", err)
	}
	if err := s.Put(testInstance(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v", err)
	}
}

// The store keeps nothing in memory between calls: opening one with a
// thousand records, and reading them all once, leaves the heap as it was.
func TestMemory(t *testing.T) {
	s, path := openTemp(t)
	s.Update(func(tx *Tx) error {
		for i := range 1000 {
			if err := tx.Put(testInstance(i)); err != nil {
				return err
			}
		}
		return nil
	})
	s.Close()

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if list, err := s.List(); err != nil || len(list) != 1000 {
		t.Fatalf("List: %d, %v", len(list), err)
	}
	after := heap()
	if after > before && after-before > 256<<10 {
		t.Errorf("an open store with 1000 records holds %d KiB of heap", (after-before)>>10)
	}
	runtime.KeepAlive(s)
}

func TestParseAddr(t *testing.T) {
	for _, s := range []string{
		"daemon.api", "daemon.api[0]", "daemon.api[12]", "job.migrate", "module.compress",
		"runtime.process.host", "runtime.docker.local", "daemon.my_svc-2[3]",
		`daemon.api["eu"]`, `daemon.api["a]b"]`, `daemon.x["[1]"]`,
	} {
		want, err := spec.ParseAddress(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := spec.ParseAddress(s)
		if err != nil || got != want {
			t.Errorf("spec.ParseAddress(%q) = %#v, %v; want %#v", s, got, err, want)
		}
	}
}

// TestListSerial: the records come with the serial they were read at.
func TestListSerial(t *testing.T) {
	s, _ := openTemp(t)
	for i := 1; i <= 3; i++ {
		if err := s.Put(testInstance(i)); err != nil {
			t.Fatal(err)
		}
		insts, n, err := s.ListSerial()
		if err != nil {
			t.Fatal(err)
		}
		if len(insts) != i || n != uint64(i) || n != serial(t, s) {
			t.Fatalf("after %d puts: %d records at serial %d (Serial %d)", i, len(insts), n, serial(t, s))
		}
	}
}
