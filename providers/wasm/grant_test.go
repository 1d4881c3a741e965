//go:build linux

package wasm_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/providers/wasm"
	"github.com/orch-dev/orch/spec"
	"github.com/zclconf/go-cty/cty"
	"golang.org/x/sys/unix"
)

// fsCase is one operation of the fsops guest and what it must give: "ok"
// (any result), "ok <result>", "err", "EPERM" (an error, that one), or ""
// (either).
type fsCase struct {
	op   []string
	want string
}

// grantLayout makes root/in, the grant, and root/outside, which the guest
// must never reach: outside/secret, outside/victim, and symbolic links in
// the grant made by the host (as a guest of an older orch could have):
// relative and absolute ones out of it, a chain of them out of it, one to
// an outside file, a dangling one to a file that does not exist outside.
// It returns the grant, and the outside directory.
func grantLayout(t *testing.T) (in, outside string) {
	t.Helper()
	root := t.TempDir()
	in, outside = filepath.Join(root, "in"), filepath.Join(root, "outside")
	for _, d := range []string{in, outside, filepath.Join(in, "data")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		filepath.Join(outside, "secret"):  "SECRET",
		filepath.Join(outside, "victim"):  "VICTIM",
		filepath.Join(in, "data", "file"): "DATA",
	}
	for p, s := range files {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"hostrel":  "../outside",
		"hostabs":  outside,
		"c1":       "c2",
		"c2":       "c3",
		"c3":       "../outside",
		"hostfile": "../outside/secret",
		"dangle":   "../outside/created",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(in, name)); err != nil {
			t.Fatal(err)
		}
	}
	return in, outside
}

// checkOutside fails t unless outside holds exactly secret and victim,
// untouched.
func checkOutside(t *testing.T, outside string) {
	t.Helper()
	es, err := os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "secret,victim" {
		t.Errorf("the guest changed the directory outside its grant: %v", names)
	}
	for name, want := range map[string]string{"secret": "SECRET", "victim": "VICTIM"} {
		if b, err := os.ReadFile(filepath.Join(outside, name)); err != nil || string(b) != want {
			t.Errorf("outside/%s: %q, %v", name, b, err)
		}
	}
}

// runFSOps runs the fsops guest with the grant /in of the host directory
// in, and returns what each operation gave.
func runFSOps(t *testing.T, in string, writable bool, budget time.Duration, ops ...[]string) []string {
	t.Helper()
	f := newFixture(t, cacheState, nil)
	results, cancel := collect(f.host, "escape.result")
	defer cancel()
	var vals []cty.Value
	for _, op := range ops {
		var args []cty.Value
		for _, a := range op {
			args = append(args, cty.StringVal(a))
		}
		vals = append(vals, cty.ListVal(args))
	}
	r := resource(t, "fsops", guest(t, "hostile"), cty.ObjectVal(map[string]cty.Value{
		"mode": cty.StringVal("fsops"), "ops": cty.ListVal(vals)}))
	r.Limits.CallTimeout = budget
	r.Grants = &spec.Grants{Dirs: map[string]string{"/in": in}}
	if writable {
		r.Grants.Writable = []string{"/in"}
	}
	rn := f.start(t, r)
	if err := rn.stop(); err != nil {
		t.Fatalf("%v\n%s", err, f.rec.logText())
	}
	var out []string
	for i := range ops {
		got := string(next(t, results).Data)
		prefix := strconv.Itoa(i) + " "
		if !strings.HasPrefix(got, prefix) {
			t.Fatalf("result %d: %q", i, got)
		}
		out = append(out, strings.TrimPrefix(got, prefix))
	}
	return out
}

// checkCases runs cases and fails t for each result that is not wanted.
func checkCases(t *testing.T, in string, writable bool, cases []fsCase) {
	t.Helper()
	var ops [][]string
	for _, c := range cases {
		ops = append(ops, c.op)
	}
	got := runFSOps(t, in, writable, 10*time.Second, ops...)
	for i, c := range cases {
		g := got[i]
		if strings.Contains(g, "SECRET") || strings.Contains(g, "VICTIM") {
			t.Errorf("%v: reached outside the grant: %q", c.op, g)
			continue
		}
		ok := false
		switch {
		case c.want == "":
			ok = true
		case c.want == "EPERM":
			ok = strings.HasPrefix(g, "err ") && strings.HasSuffix(g, ": Operation not permitted")
		case c.want == "ok" || c.want == "err":
			ok = strings.HasPrefix(g, c.want+" ") || g == c.want
		default:
			ok = g == c.want
		}
		if !ok {
			t.Errorf("%v: got %q, want %q", c.op, g, c.want)
		}
	}
}

// resolutions runs fn once with openat2 resolving (when the kernel has
// it) and once with os.Root's walk.
func resolutions(t *testing.T, fn func(t *testing.T)) {
	for _, on := range []bool{true, false} {
		name := "walk"
		if on {
			name = "openat2"
		}
		t.Run(name, func(t *testing.T) {
			if on && !wasm.HasOpenat2() {
				t.Skip("the kernel has no openat2")
			}
			defer wasm.UseOpenat2(on)()
			fn(t)
		})
	}
}

// TestGrantSymlinkEscape: in a writable grant, a guest can neither make a
// symbolic link out of it (relative, absolute, through ".."), nor go out
// through one that is there (relative, absolute, chained, dangling), to
// read, write, create, stat, list, make a directory, remove, hard link or
// rename; links that stay inside work as before.
func TestGrantSymlinkEscape(t *testing.T) {
	resolutions(t, func(t *testing.T) {
		in, outside := grantLayout(t)
		// A directory the guest reads in several batches of fd_readdir.
		var many []string
		if err := os.Mkdir(filepath.Join(in, "many"), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range 300 {
			name := fmt.Sprintf("f%03d", i)
			many = append(many, name)
			if err := os.WriteFile(filepath.Join(in, "many", name), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		checkCases(t, in, true, []fsCase{
			// Making links out.
			{[]string{"symlink", "../outside", "/in/esc"}, "EPERM"},
			{[]string{"symlink", "../outside/secret", "/in/esc2"}, "EPERM"},
			{[]string{"symlink", "/etc/passwd", "/in/abs"}, "EPERM"},
			{[]string{"symlink", "sub/../../outside", "/in/esc3"}, "EPERM"},
			{[]string{"symlink", "../../outside", "/in/data/esc4"}, "EPERM"},
			{[]string{"read", "/in/esc/secret"}, "err"},
			{[]string{"read", "/in/esc2"}, "err"},
			{[]string{"write", "/in/esc/victim", "PWNED"}, "err"},
			{[]string{"read", "/in/abs"}, "err"},
			// Going out through links already there.
			{[]string{"read", "/in/hostrel/secret"}, "EPERM"},
			{[]string{"read", "/in/hostabs/secret"}, "EPERM"},
			{[]string{"read", "/in/c1/secret"}, "EPERM"},
			{[]string{"read", "/in/hostfile"}, "EPERM"},
			{[]string{"write", "/in/hostrel/victim", "PWNED"}, "EPERM"},
			{[]string{"write", "/in/hostfile", "PWNED"}, "EPERM"},
			{[]string{"write", "/in/c1/new", "X"}, "EPERM"},
			{[]string{"write", "/in/dangle", "X"}, "EPERM"},
			{[]string{"stat", "/in/hostrel/secret"}, "EPERM"},
			{[]string{"stat", "/in/hostfile"}, "EPERM"},
			{[]string{"readdir", "/in/hostrel"}, "EPERM"},
			{[]string{"readdir", "/in/c1"}, "EPERM"},
			{[]string{"mkdir", "/in/hostrel/newdir"}, "EPERM"},
			{[]string{"remove", "/in/hostrel/victim"}, "EPERM"},
			{[]string{"link", "/in/hostrel/secret", "/in/hl"}, "EPERM"},
			{[]string{"link", "/in/c1/victim", "/in/hl2"}, "EPERM"},
			{[]string{"link", "/in/hostfile", "/in/hl3"}, ""}, // the link itself, at most
			{[]string{"read", "/in/hl3"}, "EPERM"},
			{[]string{"write", "/in/mine", "MINE"}, "ok"},
			{[]string{"rename", "/in/mine", "/in/hostrel/mine"}, "EPERM"},
			{[]string{"rename", "/in/hostrel/victim", "/in/stolen"}, "EPERM"},
			{[]string{"rename", "/in/c1/secret", "/in/stolen2"}, "EPERM"},
			{[]string{"read", "/in/../outside/secret"}, "err"},
			{[]string{"read", "../outside/secret"}, "err"},
			{[]string{"read", "/etc/passwd"}, "err"},
			// Looking at a link is no escape.
			{[]string{"lstat", "/in/hostfile"}, "ok 17 L---------"},
			{[]string{"readlink", "/in/hostrel"}, "ok ../outside"},
			// Links that stay inside.
			{[]string{"symlink", "data/file", "/in/good"}, "ok"},
			{[]string{"read", "/in/good"}, "ok DATA"},
			{[]string{"stat", "/in/good"}, "ok 4 ----------"},
			{[]string{"lstat", "/in/good"}, "ok 9 L---------"},
			{[]string{"mkdir", "/in/sub"}, "ok"},
			{[]string{"symlink", "../data", "/in/sub/up"}, "ok"},
			{[]string{"read", "/in/sub/up/file"}, "ok DATA"},
			{[]string{"symlink", "good", "/in/g1"}, "ok"},
			{[]string{"symlink", "g1", "/in/g0"}, "ok"},
			{[]string{"read", "/in/g0"}, "ok DATA"},
			{[]string{"write", "/in/g0", "NEWDATA"}, "ok"},
			{[]string{"read", "/in/sub/up/file"}, "ok NEWDATA"},
			{[]string{"link", "/in/data/file", "/in/hard"}, "ok"},
			{[]string{"rename", "/in/hard", "/in/sub/hard2"}, "ok"},
			{[]string{"read", "/in/sub/hard2"}, "ok NEWDATA"},
			{[]string{"readdir", "/in/sub/up"}, "ok file"},
			{[]string{"readdir", "/in/sub"}, "ok hard2,up"},
			{[]string{"remove", "/in/sub/hard2"}, "ok"},
			{[]string{"rw", "/in/sub/rw"}, "ok world|11|HELLO again|2001-02-03T04:05:06Z"},
			{[]string{"readdir", "/in/many"}, "ok " + strings.Join(many, ",")},
			// Removing a link out removes the link, not what it points to.
			{[]string{"remove", "/in/hostrel"}, "ok"},
		})
		checkOutside(t, outside)
		if _, err := os.Lstat(filepath.Join(in, "hostrel")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("in/hostrel: %v", err)
		}
		if b, err := os.ReadFile(filepath.Join(in, "data", "file")); err != nil || string(b) != "NEWDATA" {
			t.Errorf("in/data/file: %q, %v", b, err)
		}
	})
}

// TestGrantSymlinkEscapeReadOnly: links out of a read-only grant are not
// followed either.
func TestGrantSymlinkEscapeReadOnly(t *testing.T) {
	resolutions(t, func(t *testing.T) {
		in, outside := grantLayout(t)
		checkCases(t, in, false, []fsCase{
			{[]string{"read", "/in/hostrel/secret"}, "err"},
			{[]string{"read", "/in/hostabs/secret"}, "err"},
			{[]string{"read", "/in/c1/secret"}, "err"},
			{[]string{"read", "/in/hostfile"}, "err"},
			{[]string{"readdir", "/in/hostrel"}, "err"},
			{[]string{"stat", "/in/hostfile"}, "err"},
			{[]string{"symlink", "data/file", "/in/good"}, "err"},
			{[]string{"write", "/in/dangle", "X"}, "err"},
			{[]string{"read", "/in/data/file"}, "ok DATA"},
			{[]string{"readdir", "/in/data"}, "ok file"},
		})
		checkOutside(t, outside)
	})
}

// TestGrantSymlinkRace: while the guest reads in/flip/f and writes
// in/flip/w over and over, the host swaps in/flip, atomically, between a
// directory and a symbolic link out of the grant. The guest must see the
// directory or an error, never the outside.
func TestGrantSymlinkRace(t *testing.T) {
	resolutions(t, func(t *testing.T) {
		in, outside := grantLayout(t)
		flip, alt := filepath.Join(in, "flip"), filepath.Join(in, "flip-alt")
		if err := os.Mkdir(flip, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(flip, "f"), []byte("INSIDE"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(outside, "f"), []byte("SECRET"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../outside", alt); err != nil {
			t.Fatal(err)
		}
		if err := unix.Renameat2(unix.AT_FDCWD, flip, unix.AT_FDCWD, alt, unix.RENAME_EXCHANGE); err != nil {
			t.Skipf("no RENAME_EXCHANGE here: %v", err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var swaps int
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := unix.Renameat2(unix.AT_FDCWD, flip, unix.AT_FDCWD, alt, unix.RENAME_EXCHANGE); err != nil {
					t.Error(err)
					return
				}
				swaps++
			}
		})
		got := runFSOps(t, in, true, time.Minute, []string{"race", "/in/flip/f", "/in/flip/w", "50"})[0]
		close(stop)
		wg.Wait()
		t.Logf("%s, %d swaps", got, swaps)
		m := regexp.MustCompile(`^ok inside=(\d+) failed=(\d+) leaked=(\d+) rounds=\d+`).FindStringSubmatch(got)
		if m == nil {
			t.Fatalf("race: %q", got)
		}
		if m[3] != "0" || strings.Contains(got, "SECRET") {
			t.Errorf("the guest read outside its grant: %s", got)
		} else if inside, _ := strconv.Atoi(m[1]); inside < 50 {
			t.Errorf("the guest did not see the directory 50 times: %s", got)
		} else if failed, _ := strconv.Atoi(m[2]); failed < 50 {
			t.Errorf("the guest did not see the link 50 times: %s", got)
		}
		// outside/f is the only thing the test added there.
		if b, err := os.ReadFile(filepath.Join(outside, "f")); err != nil || string(b) != "SECRET" {
			t.Errorf("outside/f: %q, %v", b, err)
		}
		os.Remove(filepath.Join(outside, "f"))
		checkOutside(t, outside)
	})
}

// BenchmarkGrantRead: a guest reads a 64-byte file of a directory grant
// with os.ReadFile (path_open, fd_filestat_get, fd_read, fd_close), at
// depth 1 (/in/small.txt) and 4 (/in/a/b/c/small.txt), resolved with
// openat2 or with os.Root's walk. One op is one read; the guest reads in
// batches of up to 2000 per event.
func BenchmarkGrantRead(b *testing.B) {
	dir := b.TempDir()
	deep := filepath.Join(dir, "a", "b", "c")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		b.Fatal(err)
	}
	for _, d := range []string{dir, deep} {
		if err := os.WriteFile(filepath.Join(d, "small.txt"), []byte(strings.Repeat("x", 64)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, res := range []string{"openat2", "walk"} {
		for _, p := range []string{"/in/small.txt", "/in/a/b/c/small.txt"} {
			b.Run(res+"/depth"+strconv.Itoa(strings.Count(p, "/")-1), func(b *testing.B) {
				if res == "openat2" && !wasm.HasOpenat2() {
					b.Skip("the kernel has no openat2")
				}
				defer wasm.UseOpenat2(res == "openat2")()
				f := newFixture(b, cacheState, nil)
				r := resource(b, "reader", guest(b, "hostile"), cty.ObjectVal(map[string]cty.Value{
					"mode": cty.StringVal("reader"), "paths": cty.ListVal([]cty.Value{cty.StringVal(p)})}))
				r.Grants = &spec.Grants{Dirs: map[string]string{"/in": dir}}
				done, cancel := collect(f.host, "bench.done")
				defer cancel()
				rn := f.start(b, r)
				read := func(n int) {
					f.host.Bus().Publish(bus.Event{Topic: "bench.read", Data: []byte(strconv.Itoa(n))})
					select {
					case <-done:
					case err := <-rn.done:
						b.Fatalf("%v\n%s", err, f.rec.logText())
					case <-time.After(time.Minute):
						b.Fatal("no bench.done within a minute")
					}
				}
				read(100) // warm
				b.ResetTimer()
				for left := b.N; left > 0; {
					n := min(left, 2000)
					read(n)
					left -= n
				}
			})
		}
	}
}
