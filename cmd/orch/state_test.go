package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

const twoDaemons = `
daemon "db" {
  command = ["/bin/sleep", "600"]
  stop {
    timeout = "2s"
  }
}

daemon "worker" {
  count   = 2
  command = ["/bin/sleep", "60${count.index}"]
  stop {
    timeout = "2s"
  }
}
`

// usedPages lists the leaf and branch pages of a bbolt file (not the free
// ones) and its page size.
func usedPages(t *testing.T, path string) ([]int, int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ids []int
	err = db.View(func(tx *bolt.Tx) error {
		for id := 2; ; id++ {
			p, err := tx.Page(id)
			if err != nil || p == nil {
				return err
			}
			if p.Type == "leaf" || p.Type == "branch" {
				ids = append(ids, id)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids, db.Info().PageSize
}

// noPanic fails the test when r shows a Go panic.
func noPanic(t *testing.T, r result) {
	t.Helper()
	if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
		t.Fatalf("orch panicked:\n%s", r.stderr)
	}
}

// TestDamagedState: a state.db damaged in the ways the issue saw (random
// bytes over some pages, several seeds), truncated, empty or zeros makes
// status, plan and apply exit 1 with one message naming the file and what
// to do, never a panic (exit 2, as before), and never a new state over it.
func TestDamagedState(t *testing.T) {
	dir := project(t, twoDaemons)
	orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	path := filepath.Join(dir, ".orch", "state.db")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Put the good state back for the cleanup's destroy.
	defer os.WriteFile(path, good, 0o600)
	ids, pageSize := usedPages(t, path)
	pulled := filepath.Join(t.TempDir(), "pulled.json")
	os.WriteFile(pulled, []byte(orch(t, dir, nil, "state", "pull").want(t, 0).stdout), 0o600)
	damaged := map[string][]byte{
		// Below the high-water mark whatever the write history: the two
		// meta pages, the free list and the root are 4 pages already (half
		// the file could hold every page in use, which is no damage).
		"truncated": good[:3*pageSize],
		"empty":     {},
		"zeros":     make([]byte, len(good)),
	}
	for seed := uint64(1); seed <= 4; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		b := append([]byte{}, good...)
		for range 1 + rng.IntN(2) {
			id := ids[rng.IntN(len(ids))]
			for i := 0; i < pageSize; i++ {
				b[id*pageSize+i] = byte(rng.Uint32())
			}
		}
		damaged[fmt.Sprintf("random pages, seed %d", seed)] = b
	}
	for name, content := range damaged {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"status"}, {"plan"}, {"apply", "-auto-approve"}, {"destroy", "-auto-approve"}, {"state", "list"}, {"state", "check"}} {
				r := orch(t, dir, nil, args...)
				noPanic(t, r)
				r.want(t, 1)
				if !strings.Contains(r.stderr, "state file "+path+" is damaged") || !strings.Contains(r.stderr, "orch state recover") {
					t.Fatalf("orch %v: the error does not name the file and what to do:\n%s", args, r.stderr)
				}
			}
			if got, _ := os.ReadFile(path); string(got) != string(content) {
				t.Fatal("the damaged state file was changed")
			}
		})
	}
	// A copy pulled earlier restores it: push refuses the damaged file
	// without -force, and sets it aside with it.
	os.WriteFile(path, make([]byte, len(good)), 0o600)
	r := orch(t, dir, nil, "state", "push", pulled).want(t, 1)
	if !strings.Contains(r.stderr, "pass -force") {
		t.Fatalf("push onto a damaged file without -force:\n%s", r.stderr)
	}
	r = orch(t, dir, nil, "state", "push", "-force", pulled).want(t, 0)
	if !strings.Contains(r.stdout, "Pushed 3 records") || !strings.Contains(r.stdout, ".damaged-") {
		t.Fatalf("push -force onto a damaged file:\n%s", r.stdout)
	}
	orch(t, dir, nil, "plan", "-detailed-exitcode").want(t, 0)
}

// TestStateCommands: list, show, rm (forgets without stopping), pull,
// push (serial and lineage checks, -force), check, and recover of an
// emptied state file from what the process runtime reports.
func TestStateCommands(t *testing.T) {
	dir := project(t, twoDaemons)
	orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	st := status(t, dir)
	r := orch(t, dir, nil, "state", "list").want(t, 0)
	if r.stdout != "daemon.db\ndaemon.worker[0]\ndaemon.worker[1]\n" {
		t.Fatalf("state list:\n%s", r.stdout)
	}
	r = orch(t, dir, nil, "state", "show", "-json", "daemon.worker[1]").want(t, 0)
	var rec struct {
		Address string `json:"address"`
		Status  string `json:"status"`
		Handle  struct {
			Pid int `json:"pid"`
		} `json:"handle"`
		Config json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil {
		t.Fatal(err, r.stdout)
	}
	if rec.Address != "daemon.worker[1]" || rec.Status != "running" || rec.Handle.Pid != st["daemon.worker[1]"].Pid || !strings.Contains(string(rec.Config), "601") {
		t.Fatalf("state show: %+v\n%s", rec, r.stdout)
	}
	orch(t, dir, nil, "state", "show", "daemon.nope").want(t, 1)
	pulled := orch(t, dir, nil, "state", "pull").want(t, 0).stdout
	pullFile := filepath.Join(t.TempDir(), "pulled.json")
	os.WriteFile(pullFile, []byte(pulled), 0o600)
	orch(t, dir, nil, "state", "check").want(t, 0)

	// rm forgets without stopping.
	pid := st["daemon.worker[0]"].Pid
	r = orch(t, dir, nil, "state", "rm", "daemon.worker[0]").want(t, 0)
	if !strings.Contains(r.stdout, "not stopped") || !alive(pid) {
		t.Fatalf("state rm: alive %v\n%s", alive(pid), r.stdout)
	}
	if r := orch(t, dir, nil, "state", "list").want(t, 0); strings.Contains(r.stdout, "worker[0]") {
		t.Fatalf("still listed after rm:\n%s", r.stdout)
	}
	if fi, err := os.Stat(filepath.Join(dir, ".orch", "state.db.backup")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("no 0600 backup after rm: %v", err)
	}
	// The pulled document is older now: refused, then forced.
	r = orch(t, dir, nil, "state", "push", pullFile).want(t, 1)
	if !strings.Contains(r.stderr, "older than the state's") {
		t.Fatalf("push of an older serial:\n%s", r.stderr)
	}
	var doc map[string]any
	json.Unmarshal([]byte(pulled), &doc)
	doc["lineage"] = strings.Repeat("0f", 16)
	doc["serial"] = 100
	ob, _ := json.Marshal(doc)
	otherFile := filepath.Join(t.TempDir(), "other.json")
	os.WriteFile(otherFile, ob, 0o600)
	r = orch(t, dir, nil, "state", "push", otherFile).want(t, 1)
	if !strings.Contains(r.stderr, "lineage") {
		t.Fatalf("push of another lineage:\n%s", r.stderr)
	}
	// The backup rm kept is a state file push takes as it is.
	orch(t, dir, nil, "state", "push", "-force", filepath.Join(dir, ".orch", "state.db.backup")).want(t, 0)
	if r := orch(t, dir, nil, "state", "list").want(t, 0); !strings.Contains(r.stdout, "worker[0]") {
		t.Fatalf("not back after the push of the backup:\n%s", r.stdout)
	}
	orch(t, dir, nil, "state", "push", "-force", pullFile).want(t, 0)
	if r := orch(t, dir, nil, "state", "list").want(t, 0); !strings.Contains(r.stdout, "worker[0]") {
		t.Fatalf("not back after push:\n%s", r.stdout)
	}
	orch(t, dir, nil, "plan", "-detailed-exitcode").want(t, 0)

	// Without a valid configuration the state commands still work.
	main := filepath.Join(dir, "main.hcl")
	cfg, _ := os.ReadFile(main)
	os.WriteFile(main, []byte("daemon {"), 0o644)
	r = orch(t, dir, nil, "state", "list").want(t, 0)
	if !strings.Contains(r.stdout, "daemon.db") || !strings.Contains(r.stderr, "does not load") {
		t.Fatalf("state list with a broken configuration:\n%s\n%s", r.stdout, r.stderr)
	}
	os.WriteFile(main, cfg, 0o644)

	// recover: a healthy state is refused; an emptied one is set aside and
	// rebuilt from adoption, with the same pids, and plans no change.
	r = orch(t, dir, nil, "state", "recover").want(t, 1)
	if !strings.Contains(r.stderr, "not damaged") {
		t.Fatalf("recover of a healthy state:\n%s", r.stderr)
	}
	path := filepath.Join(dir, ".orch", "state.db")
	os.Truncate(path, 0)
	r = orch(t, dir, nil, "state", "recover").want(t, 0)
	if !strings.Contains(r.stdout, "Recovered 3 instances") {
		t.Fatalf("recover:\n%s\n%s", r.stdout, r.stderr)
	}
	after := status(t, dir)
	for addr, l := range st {
		if after[addr].Pid != l.Pid || after[addr].State != "running" {
			t.Errorf("%s after recover: %+v, before %+v", addr, after[addr], l)
		}
	}
	orch(t, dir, nil, "plan", "-detailed-exitcode").want(t, 0)
	m, _ := filepath.Glob(path + ".damaged-*")
	if len(m) != 1 {
		t.Fatalf("damaged file kept as %v", m)
	}
}

// TestStateDirOwnership: a .orch others may write, or owned by another
// user, is refused by every command with the path and the fix; no state
// is created in it.
func TestStateDirOwnership(t *testing.T) {
	dir := project(t, twoDaemons)
	sd := filepath.Join(dir, ".orch")
	if err := os.Mkdir(sd, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(sd, 0o777)
	for _, args := range [][]string{{"apply", "-auto-approve"}, {"plan"}, {"status"}, {"state", "list"}} {
		r := orch(t, dir, nil, args...).want(t, 1)
		if !strings.Contains(r.stderr, "refusing "+sd+": it is writable by others (mode 0777); chmod go-w "+sd) {
			t.Fatalf("orch %v in a 0777 state dir:\n%s", args, r.stderr)
		}
	}
	if ents, _ := os.ReadDir(sd); len(ents) != 0 {
		t.Fatalf("files created in the refused directory: %v", ents)
	}
	if os.Geteuid() != 0 {
		t.Skip("the chown case needs root")
	}
	os.Chmod(sd, 0o700)
	os.Chown(sd, 1234, 1234)
	defer os.Chown(sd, 0, 0)
	for _, args := range [][]string{{"apply", "-auto-approve"}, {"status"}} {
		r := orch(t, dir, nil, args...).want(t, 1)
		if !strings.Contains(r.stderr, "refusing "+sd+": it is owned by uid 1234") {
			t.Fatalf("orch %v in a state dir of uid 1234:\n%s", args, r.stderr)
		}
	}
}
