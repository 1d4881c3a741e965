package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// cacheBase is the configuration the cache's tests edit: variables, a
// local, a declared process runtime, references between blocks, count,
// for_each, depends_on, file(), nested blocks, a comment and a heredoc.
const cacheBase = `orch {
  name = "cachetest"
}

variable "base" {
  default = 8000
}

variable "tag" {
  type    = string
  default = "v1"
}

locals {
  bin  = "sleep"
  port = var.base + 1
}

runtime "process" "main" {}

daemon "a" {
  command = [local.bin, "100"]
  env     = { PORT = local.port, TAG = var.tag }
}

daemon "b" {
  command    = ["sleep", "200"]
  env        = { A = daemon.a.env.PORT }
  depends_on = [job.init]
}

job "init" {
  command = ["true"]
}

# a comment between blocks
daemon "c" {
  count   = 2
  command = ["sleep", "${count.index}"]
}

daemon "d" {
  for_each = { x = "1", y = "2" }
  command  = ["sleep", each.value]
  env      = { DATA = file("data.txt") }
}

daemon "e" {
  command = ["sleep", "5"]
  health {
    exec     = ["true"]
    interval = "5s"
  }
  restart {
    policy = "always"
  }
}

daemon "f" {
  runtime = runtime.process.main
  command = ["sh", "-c", <<EOT
echo ${var.tag}
  }
EOT
  ]
}

daemon "g" {
  command = ["sleep", "7"]
  env     = { V = var.tag }
}
`

// cacheCase is a directory and the inputs of a load.
type cacheCase struct {
	dir     string
	vars    []string
	environ []string
}

func newCacheCase(t testing.TB) *cacheCase {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, ".orch"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &cacheCase{dir: dir, environ: []string{"PATH=" + os.Getenv("PATH")}}
	c.write(t, "main.hcl", cacheBase)
	c.write(t, "data.txt", "one")
	return c
}

func (c *cacheCase) write(t testing.TB, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (c *cacheCase) opts(cache bool) Options {
	return Options{Schemas: testSchemas, Vars: c.vars, Environ: c.environ, CheckPrograms: true, Cache: cache}
}

// check loads c with and without the cache and fails unless both give
// the same configuration and the same diagnostics; it returns the hits.
func (c *cacheCase) check(t testing.TB) (hits int64) {
	t.Helper()
	lastCacheHits.Store(0)
	cached, cd := Load(c.dir, c.opts(true))
	hits = lastCacheHits.Load()
	plain, pd := Load(c.dir, c.opts(false))
	if a, b := diagText(pd), diagText(cd); a != b {
		t.Fatalf("diagnostics differ\nwithout the cache:\n%s\nwith it:\n%s", a, b)
	}
	if d := configDiff(plain, cached); d != "" {
		t.Fatalf("configurations differ: %s", d)
	}
	return hits
}

// diagText renders diagnostics with every field a user sees, sorted: HCL
// reports the unexpected attributes of a block in map order, so two loads
// without the cache may order them differently.
func diagText(diags hcl.Diagnostics) string {
	var lines []string
	for _, d := range diags {
		var b strings.Builder
		fmt.Fprintf(&b, "%d %s: %s", d.Severity, d.Summary, d.Detail)
		if d.Subject != nil {
			fmt.Fprintf(&b, " @%s", d.Subject)
		}
		if d.Context != nil {
			fmt.Fprintf(&b, " ctx %s", d.Context)
		}
		lines = append(lines, b.String())
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// configDiff compares two loads: everything a later phase reads.
func configDiff(a, b *Config) string {
	if (a == nil) != (b == nil) {
		return "one is nil"
	}
	if a == nil {
		return ""
	}
	if a.Hash != b.Hash {
		return "Hash"
	}
	if !reflect.DeepEqual(a.Reads, b.Reads) {
		return fmt.Sprintf("Reads %v / %v", a.Reads, b.Reads)
	}
	if !reflect.DeepEqual(a.Project, b.Project) {
		return "Project"
	}
	if len(a.Resources) != len(b.Resources) {
		return fmt.Sprintf("%d resources / %d", len(a.Resources), len(b.Resources))
	}
	for i := range a.Resources {
		if !resourcesEqual(a.Resources[i], b.Resources[i]) {
			return fmt.Sprintf("resource %s:\n%#v\n%#v", a.Resources[i].Addr, *a.Resources[i], *b.Resources[i])
		}
	}
	if len(a.Runtimes) != len(b.Runtimes) {
		return "runtimes"
	}
	for i := range a.Runtimes {
		x, y := a.Runtimes[i], b.Runtimes[i]
		if x.Addr != y.Addr || x.DeclRange != y.DeclRange || x.Plugin != y.Plugin || !valuesEqual(x.Attrs, y.Attrs) {
			return "runtime " + x.Addr.String()
		}
	}
	if (a.Graph == nil) != (b.Graph == nil) {
		return "graph"
	}
	if a.Graph != nil {
		if !reflect.DeepEqual(a.Graph.Nodes(), b.Graph.Nodes()) {
			return "graph nodes"
		}
		for _, n := range a.Graph.Nodes() {
			if !reflect.DeepEqual(a.Graph.DependenciesOf(n), b.Graph.DependenciesOf(n)) {
				return "graph edges of " + n.String()
			}
		}
	}
	if len(a.Files) != len(b.Files) {
		return "files"
	}
	for name, f := range a.Files {
		g := b.Files[name]
		if g == nil || !bytes.Equal(f.Bytes, g.Bytes) {
			return "file " + name
		}
		// the context a diagnostic shows, at every offset
		fc, fok := f.Nav.(interface{ ContextString(int) string })
		gc, gok := g.Nav.(interface{ ContextString(int) string })
		if fok != gok {
			return "nav of " + name
		}
		if fok {
			for off := 0; off < len(f.Bytes); off++ {
				if fc.ContextString(off) != gc.ContextString(off) {
					return fmt.Sprintf("context of %s at %d: %q / %q", name, off, fc.ContextString(off), gc.ContextString(off))
				}
			}
		}
	}
	return ""
}

func valuesEqual(a, b map[string]cty.Value) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !v.RawEquals(w) {
			return false
		}
	}
	return true
}

func resourcesEqual(a, b *Resource) bool {
	x, y := *a, *b
	if !valuesEqual(x.Attrs, y.Attrs) {
		return false
	}
	if (x.Config == cty.NilVal) != (y.Config == cty.NilVal) || x.Config != cty.NilVal && !x.Config.RawEquals(y.Config) {
		return false
	}
	x.Attrs, y.Attrs, x.Config, y.Config = nil, nil, cty.NilVal, cty.NilVal
	return reflect.DeepEqual(x, y)
}

func TestCacheServesUnchangedBlocks(t *testing.T) {
	c := newCacheCase(t)
	if hits := c.check(t); hits != 0 {
		t.Fatalf("%d hits from an empty cache", hits)
	}
	if _, err := os.Stat(filepath.Join(c.dir, ".orch", CacheFile)); err != nil {
		t.Fatalf("no cache written: %v", err)
	}
	// a, c, e and g are cacheable; b refers to a (a is then not: its
	// value is needed), d reads a file, f's text holds none of those but
	// is fine; init is referenced only by depends_on
	hits := c.check(t)
	if hits < 4 {
		t.Fatalf("%d hits on an unchanged configuration, want at least 4 (last abort: %v)", hits, lastCacheAbort.Load())
	}
	// moving every block down two lines keeps the entries and moves
	// their ranges
	c.write(t, "main.hcl", "\n\n"+cacheBase)
	if got := c.check(t); got != hits {
		t.Fatalf("%d hits after moving the blocks, want %d", got, hits)
	}
}

// Each input of a block invalidates it.
func TestCacheInvalidation(t *testing.T) {
	edits := []struct {
		name string
		edit func(t *testing.T, c *cacheCase)
	}{
		{"variable by -var", func(t *testing.T, c *cacheCase) { c.vars = []string{"tag=v2"} }},
		{"variable by ORCH_VAR_", func(t *testing.T, c *cacheCase) { c.environ = append(c.environ, "ORCH_VAR_tag=v3") }},
		{"variable default", func(t *testing.T, c *cacheCase) {
			c.write(t, "main.hcl", strings.Replace(cacheBase, `default = "v1"`, `default = "v9"`, 1))
		}},
		{"local", func(t *testing.T, c *cacheCase) {
			c.write(t, "main.hcl", strings.Replace(cacheBase, `bin  = "sleep"`, `bin  = "true"`, 1))
		}},
		{"file read by file()", func(t *testing.T, c *cacheCase) { c.write(t, "data.txt", "two") }},
		{"referenced block", func(t *testing.T, c *cacheCase) {
			c.write(t, "main.hcl", strings.Replace(cacheBase, `[local.bin, "100"]`, `[local.bin, "101"]`, 1))
		}},
		{"runtime", func(t *testing.T, c *cacheCase) {
			c.write(t, "main.hcl", strings.Replace(cacheBase, `runtime "process" "main" {}`, `runtime "process" "main" {}
runtime "process" "other" {}`, 1))
		}},
		{"depends_on target removed", func(t *testing.T, c *cacheCase) {
			c.write(t, "main.hcl", strings.Replace(cacheBase, "job \"init\" {\n  command = [\"true\"]\n}\n", "", 1))
		}},
		{"block turned sensitive", func(t *testing.T, c *cacheCase) {
			c.write(t, "main.hcl", strings.Replace(cacheBase, `type    = string`, "type    = string\n  sensitive = true", 1))
		}},
		{"block now referenced", func(t *testing.T, c *cacheCase) {
			c.write(t, "main.hcl", cacheBase+"\ndaemon \"h\" {\n  command = [\"sleep\", daemon.g.env.V]\n}\n")
		}},
		{"a daemon's program gone", func(t *testing.T, c *cacheCase) {
			c.environ = []string{"PATH=/nonexistent"}
		}},
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			c := newCacheCase(t)
			c.check(t)
			if c.check(t) == 0 {
				t.Fatal("no hits before the edit")
			}
			e.edit(t, c)
			c.check(t)
			c.check(t) // and with the cache written after the edit
		})
	}
}

// A cache file that is corrupt, truncated, empty or of another salt is
// ignored without a word; an unwritable state directory leaves the load
// without a cache.
func TestCacheFileDamage(t *testing.T) {
	damage := map[string]func([]byte) []byte{
		"truncated":   func(b []byte) []byte { return b[:len(b)/2] },
		"empty":       func([]byte) []byte { return nil },
		"flipped":     func(b []byte) []byte { b = bytes.Clone(b); b[len(b)-20] ^= 0x40; return b },
		"header only": func(b []byte) []byte { return b[:len(cacheMagic)] },
		"garbage":     func([]byte) []byte { return bytes.Repeat([]byte("x"), 5000) },
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			c := newCacheCase(t)
			c.check(t)
			path := filepath.Join(c.dir, ".orch", CacheFile)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, f(b), 0o644); err != nil {
				t.Fatal(err)
			}
			c.write(t, "main.hcl", strings.Replace(cacheBase, `"5"`, `"6"`, 1))
			c.check(t) // no error, the same results; the file is rewritten
			if c.check(t) == 0 {
				t.Fatal("the damaged cache was not rewritten")
			}
		})
	}
	t.Run("unwritable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root writes anywhere")
		}
		c := newCacheCase(t)
		state := filepath.Join(c.dir, ".orch")
		if err := os.Chmod(state, 0o555); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(state, 0o755)
		c.check(t)
		if hits := c.check(t); hits != 0 {
			t.Fatalf("%d hits without a cache file", hits)
		}
	})
	t.Run("state directory writable by others", func(t *testing.T) {
		c := newCacheCase(t)
		c.check(t)
		state := filepath.Join(c.dir, ".orch")
		if err := os.Chmod(state, 0o777); err != nil {
			t.Fatal(err)
		}
		if hits := c.check(t); hits != 0 {
			t.Fatalf("%d hits from a cache in a directory others may write", hits)
		}
	})
	t.Run("file of another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("only root can give a file away")
		}
		c := newCacheCase(t)
		c.check(t)
		path := filepath.Join(c.dir, ".orch", CacheFile)
		if err := os.Chown(path, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		if hits := c.check(t); hits != 0 {
			t.Fatalf("%d hits from a cache file another user owns", hits)
		}
	})
	t.Run("symbolic link", func(t *testing.T) {
		c := newCacheCase(t)
		c.check(t)
		path := filepath.Join(c.dir, ".orch", CacheFile)
		if err := os.Rename(path, path+".real"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(path+".real", path); err != nil {
			t.Fatal(err)
		}
		if hits := c.check(t); hits != 0 {
			t.Fatalf("%d hits through a symbolic link", hits)
		}
	})
	t.Run("no state directory", func(t *testing.T) {
		c := newCacheCase(t)
		os.Remove(filepath.Join(c.dir, ".orch"))
		c.check(t)
		if _, err := os.Stat(filepath.Join(c.dir, ".orch")); err == nil {
			t.Fatal("the load created the state directory")
		}
	})
}

// Errors are never served from the cache: an error in a block whose
// neighbours are cached is reported as without the cache, at the same
// place.
func TestCacheErrorsAsWithout(t *testing.T) {
	c := newCacheCase(t)
	c.check(t)
	for _, bad := range []string{
		strings.Replace(cacheBase, `["sleep", "7"]`, `["sleep", 7 +]`, 1),
		strings.Replace(cacheBase, `["sleep", "5"]`, `["sleep", var.nope]`, 1),
		strings.Replace(cacheBase, `daemon "g"`, `daemon "e"`, 1),
		strings.Replace(cacheBase, `interval = "5s"`, `interval = "often"`, 1),
		cacheBase + "\ndaemon \"z\" {\n  command = [\"no-such-program-here\"]\n}\n",
		cacheBase + "\ndaemon \"h\" {\n  command = [\"sleep\", \"1\"]\n  health {\n    exec = [\"no-such-probe-here\"]\n  }\n}\n",
		strings.Replace(cacheBase, "EOT\n  ]", "  ]", 1),
	} {
		c.write(t, "main.hcl", bad)
		c.check(t)
		c.write(t, "main.hcl", cacheBase)
		c.check(t)
	}
}

// A configuration whose blocks the cutter cannot tell apart (a "}" line
// inside a heredoc, CRLF line ends) loads as without the cache.
func TestCacheAwkwardLayouts(t *testing.T) {
	c := newCacheCase(t)
	c.write(t, "main.hcl", strings.ReplaceAll(cacheBase, "\n", "\r\n"))
	c.check(t)
	c.check(t)
	c.write(t, "main.hcl", "daemon \"x\" {\n  command = [\"sh\", \"-c\", <<EOT\n}\ndaemon \"y\" {\nEOT\n  ]\n}\n")
	c.check(t)
	c.check(t)
	c.write(t, "other.hcl", "daemon \"w\" {\n  command = [\"sleep\", \"1\"]\n}\n")
	c.check(t)
	c.check(t)
}

// TestCacheCodecRoundTrip fills every field of a Resource and checks that
// the codec gives it back: a new field the codec cannot store fails here.
func TestCacheCodecRoundTrip(t *testing.T) {
	r := &Resource{}
	fill(reflect.ValueOf(r).Elem(), 1)
	r.Attrs = map[string]cty.Value{"image": cty.StringVal("nginx"), "ports": cty.ListVal([]cty.Value{cty.NumberIntVal(80)})}
	r.Config = cty.ObjectVal(map[string]cty.Value{"x": cty.True})
	rb := &rebase{file: "main.hcl", line: 10, byte: 300}
	r.DeclRange = hcl.Range{Filename: "main.hcl", Start: hcl.Pos{Line: 12, Column: 3, Byte: 320}, End: hcl.Pos{Line: 12, Column: 9, Byte: 326}}
	for i := range r.Ranges {
		r.Ranges[i].Range = r.DeclRange
	}
	b, err := encodeResource(nil, r, rb)
	if err != nil {
		t.Fatal(err)
	}
	got, err := (&decoder{b: b, rb: rb}).resource()
	if err != nil {
		t.Fatal(err)
	}
	if !resourcesEqual(r, got) {
		t.Fatalf("round trip:\n%#v\n%#v", *r, *got)
	}
	// moved: every range moves with the piece
	got, err = (&decoder{b: b, rb: &rebase{file: "other.hcl", line: 20, byte: 1000}}).resource()
	if err != nil {
		t.Fatal(err)
	}
	if got.DeclRange.Filename != "other.hcl" || got.DeclRange.Start.Line != 22 || got.DeclRange.Start.Byte != 1020 || got.DeclRange.Start.Column != 3 {
		t.Fatalf("moved range: %#v", got.DeclRange)
	}
	// every truncation fails to decode, none panics
	for i := 0; i < len(b); i++ {
		if _, err := (&decoder{b: b[:i], rb: rb}).resource(); err == nil {
			t.Fatalf("a truncation to %d of %d bytes decoded", i, len(b))
		}
	}
}

// fill sets every field of v to a value other than its zero.
func fill(v reflect.Value, depth int) {
	switch v.Type() {
	case reflect.TypeOf(cty.Value{}):
		return // set by the caller
	case reflect.TypeOf(hcl.Range{}):
		v.Set(reflect.ValueOf(hcl.Range{Filename: "main.hcl", Start: hcl.Pos{Line: 11, Column: 1, Byte: 301}, End: hcl.Pos{Line: 11, Column: 5, Byte: 305}}))
		return
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(-7 * depth))
		if v.Type() == reflect.TypeOf(time.Duration(0)) {
			v.SetInt(int64(3 * time.Second))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(5 * depth))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1.5)
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", depth))
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), depth+1)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := 0; i < 2; i++ {
			fill(s.Index(i), depth+1)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		fill(k, depth+1)
		e := reflect.New(v.Type().Elem()).Elem()
		fill(e, depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			fill(v.Field(i), depth+1)
		}
	}
}

// FuzzCacheEquivalence applies a sequence of random edits (each a pair of
// bytes: what, and where or which) to cacheBase and its inputs, in one
// directory whose cache carries over from edit to edit, and after each
// requires the load with the cache to give what the load without it gives:
// the same configuration and the same diagnostics. A stale hit fails it.
// Seeds are in testdata/fuzz/FuzzCacheEquivalence.
func FuzzCacheEquivalence(f *testing.F) {
	f.Add([]byte{0, 3, 4, 1, 0, 9, 5, 2, 7, 3})
	f.Add([]byte{6, 2, 6, 5, 8, 1, 9, 0, 1, 12})
	f.Add([]byte{3, 77, 3, 140, 2, 20, 4, 4})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 32 {
			ops = ops[:32]
		}
		c := newCacheCase(t)
		text := cacheBase
		c.check(t)
		for i := 0; i+1 < len(ops); i += 2 {
			text = cacheEdit(c, text, ops[i], ops[i+1])
			c.write(t, "main.hcl", text)
			if ops[i]%11 == 5 {
				c.write(t, "data.txt", fmt.Sprintf("d%d", ops[i+1]))
			}
			c.check(t)
		}
	})
}

// cacheEdit applies one edit to text (or to c's inputs).
func cacheEdit(c *cacheCase, text string, op, arg byte) string {
	lines := strings.Split(text, "\n")
	n := int(arg)
	switch op % 11 {
	case 0: // change a digit
		var at []int
		for i := 0; i < len(text); i++ {
			if text[i] >= '0' && text[i] <= '9' {
				at = append(at, i)
			}
		}
		if len(at) > 0 {
			i := at[n%len(at)]
			text = text[:i] + string('0'+(text[i]-'0'+1)%10) + text[i+1:]
		}
	case 1: // delete a line
		i := n % len(lines)
		text = strings.Join(append(lines[:i:i], lines[i+1:]...), "\n")
	case 2: // duplicate a line
		i := n % len(lines)
		text = strings.Join(append(lines[:i+1:i+1], lines[i:]...), "\n")
	case 3: // insert a byte
		alphabet := "\"{}\n x#=[]$"
		i := (n * 7) % (len(text) + 1)
		text = text[:i] + string(alphabet[n%len(alphabet)]) + text[i:]
	case 4: // a variable from -var
		c.vars = []string{fmt.Sprintf("tag=v%d", n%3)}
	case 5: // the file read by file() (written by the caller)
	case 6: // swap two neighbouring pieces
		cuts := append(blockCuts([]byte(text)), len(text))
		if len(cuts) > 3 {
			i := n % (len(cuts) - 2)
			a, b := text[cuts[i]:cuts[i+1]], text[cuts[i+1]:cuts[i+2]]
			text = text[:cuts[i]] + b + a + text[cuts[i+2]:]
		}
	case 7: // a variable from the environment
		c.environ = []string{"PATH=" + os.Getenv("PATH"), fmt.Sprintf("ORCH_VAR_base=%d", 7000+n%3)}
	case 8: // rename a block
		names := []string{`"a"`, `"b"`, `"c"`, `"e"`, `"g"`, `"init"`}
		name := names[n%len(names)]
		text = strings.Replace(text, name+" {", strings.TrimSuffix(name, `"`)+`x" {`, 1)
	case 9: // a reference to a block, added or removed
		if strings.Contains(text, "daemon.g.env.V") {
			text = strings.Replace(text, "daemon.g.env.V", `"v"`, 1)
		} else {
			text = strings.Replace(text, `["sleep", "5"]`, `["sleep", daemon.g.env.V]`, 1)
		}
	case 10: // back to the start
		text = cacheBase
		c.vars, c.environ = nil, []string{"PATH=" + os.Getenv("PATH")}
	}
	return text
}

// The edits of FuzzCacheEquivalence do reach the cache: over a sequence of
// them, blocks are served from it, and stale ones are caught.
func TestCacheEditsHit(t *testing.T) {
	c := newCacheCase(t)
	text := cacheBase
	c.check(t)
	var hits int64
	stale := 0
	for _, op := range [][2]byte{{0, 3}, {4, 1}, {7, 2}, {6, 1}, {5, 9}, {9, 0}, {9, 0}, {8, 1}, {0, 40}, {10, 0}} {
		text = cacheEdit(c, text, op[0], op[1])
		c.write(t, "main.hcl", text)
		if op[0] == 5 {
			c.write(t, "data.txt", "changed")
		}
		lastCacheAbort.Store("")
		hits += c.check(t)
		if why, _ := lastCacheAbort.Load().(string); strings.HasPrefix(why, "stale") {
			stale++
		}
	}
	if hits == 0 || stale == 0 {
		t.Fatalf("%d hits and %d stale loads over the edits: the test does not exercise the cache", hits, stale)
	}
}

// Line comments between blocks go with the block after them: a daemon
// followed by a commented variable block is still served from the cache.
func TestCacheCommentsBetweenBlocks(t *testing.T) {
	c := newCacheCase(t)
	c.write(t, "main.hcl", "daemon \"x\" {\n  command = [\"sleep\", var.n]\n}\n\n# the number\n// of seconds\nvariable \"n\" {\n  default = \"5\"\n}\n\n# the second\ndaemon \"y\" {\n  command = [\"sleep\", \"1\"]\n}\n")
	c.check(t)
	if hits := c.check(t); hits != 2 {
		t.Fatalf("%d hits, want 2 (last abort: %v)", hits, lastCacheAbort.Load())
	}
}

// FuzzCacheBytes loads arbitrary bytes as main.hcl three times: without
// the cache, with it (written), and with it again (served); all three must
// agree. Seeds are in testdata/fuzz/FuzzCacheBytes.
func FuzzCacheBytes(f *testing.F) {
	f.Add([]byte(cacheBase))
	f.Add([]byte(equivHCL))
	f.Add([]byte("daemon \"x\" {\n  command = [\"sh\", \"-c\", <<EOT\n}\ndaemon \"y\" {\nEOT\n  ]\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		c := newCacheCase(t)
		c.write(t, "main.hcl", string(src))
		c.check(t)
		c.check(t)
	})
}

// Values (a block's value for references, runtime attributes) round-trip
// exactly, by structure or, for what that does not write, by JSON.
func TestCacheValueRoundTrip(t *testing.T) {
	vals := []cty.Value{
		cty.StringVal("x"), cty.NumberIntVal(-42), cty.NumberFloatVal(0.1), cty.MustParseNumberVal("123456789012345678901234567890.5"),
		cty.True,
		cty.ObjectVal(map[string]cty.Value{
			"name": cty.StringVal("api"), "command": cty.ListVal([]cty.Value{cty.StringVal("sleep"), cty.StringVal("1")}),
			"env":   cty.MapVal(map[string]cty.Value{"A": cty.StringVal("1")}),
			"ports": cty.TupleVal([]cty.Value{cty.NumberIntVal(80), cty.StringVal("x")}),
		}),
		cty.ListValEmpty(cty.String), cty.MapValEmpty(cty.Number),
		cty.ObjectVal(map[string]cty.Value{"a": cty.NullVal(cty.String)}),
		cty.SetVal([]cty.Value{cty.StringVal("a"), cty.StringVal("b")}),
		cty.EmptyObjectVal, cty.EmptyTupleVal,
		cty.ListVal([]cty.Value{cty.ObjectVal(map[string]cty.Value{"k": cty.NumberIntVal(1)})}),
	}
	for _, v := range vals {
		b, err := encCty(nil, reflect.ValueOf(v), nil)
		if err != nil {
			t.Fatalf("%#v: %v", v, err)
		}
		var got cty.Value
		d := &decoder{b: b}
		if err := decCty(d, reflect.ValueOf(&got).Elem()); err != nil || len(d.b) != 0 {
			t.Fatalf("%#v: %v (%d bytes left)", v, err, len(d.b))
		}
		if !got.Type().Equals(v.Type()) || !got.RawEquals(v) {
			t.Fatalf("round trip of %#v gave %#v", v, got)
		}
		for i := 0; i < len(b); i++ {
			if err := decCty(&decoder{b: b[:i]}, reflect.ValueOf(&got).Elem()); err == nil {
				t.Fatalf("%#v: a truncation to %d of %d bytes decoded", v, i, len(b))
			}
		}
	}
}

// A warning about a health check's program is given again by a load the
// cache serves, at the same place (the cache keeps where it points).
func TestCacheKeepsProbeWarning(t *testing.T) {
	c := newCacheCase(t)
	c.write(t, "main.hcl", "job \"setup\" {\n  command = [\"true\"]\n}\ndaemon \"h\" {\n  command    = [\"sleep\", \"1\"]\n  depends_on = [job.setup]\n  health {\n    exec = [\"/nonexistent/probe\"]\n  }\n}\n")
	c.check(t)
	if hits := c.check(t); hits == 0 {
		t.Fatal("the second load was not served from the cache")
	}
	_, diags := Load(c.dir, c.opts(true))
	if len(diags) != 1 || diags[0].Severity != hcl.DiagWarning || diags[0].Subject == nil || diags[0].Subject.Start.Line != 8 {
		t.Fatalf("want the probe's warning at line 8 from the cache, got:\n%s", diagText(diags))
	}
}

// TestCacheFirstLoadMakesStateDir: with MakeStateDir (orch plan, apply,
// up) the first load of a project without a state directory makes it, for
// its user alone, and writes the cache there, so the second load is served
// from it; a load with errors, or one without MakeStateDir (orch
// validate), makes nothing.
func TestCacheFirstLoadMakesStateDir(t *testing.T) {
	c := newCacheCase(t)
	sd := filepath.Join(c.dir, ".orch")
	if err := os.Remove(sd); err != nil {
		t.Fatal(err)
	}
	opts := c.opts(true)
	if _, diags := Load(c.dir, opts); diags.HasErrors() {
		t.Fatal(diags)
	}
	if _, err := os.Lstat(sd); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a load without MakeStateDir left %s: %v", sd, err)
	}
	c.write(t, "broken.hcl", "daemon \"x\" {\n  count = \"two\"\n  command = [\"true\"]\n}\n")
	opts.MakeStateDir = true
	if _, diags := Load(c.dir, opts); !diags.HasErrors() {
		t.Fatal("the broken configuration loaded")
	}
	if _, err := os.Lstat(sd); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a load with errors made %s: %v", sd, err)
	}
	if err := os.Remove(filepath.Join(c.dir, "broken.hcl")); err != nil {
		t.Fatal(err)
	}
	lastCacheHits.Store(0)
	if _, diags := Load(c.dir, opts); diags.HasErrors() {
		t.Fatal(diags)
	}
	fi, err := os.Lstat(sd)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("the first load made %s as %v (%v), want a directory for its user alone", sd, fi, err)
	}
	if _, err := os.Stat(filepath.Join(sd, CacheFile)); err != nil {
		t.Fatalf("the first load wrote no cache: %v", err)
	}
	if hits := c.check(t); hits < 4 {
		t.Fatalf("%d hits on the load after the first, want at least 4 (last abort: %v)", hits, lastCacheAbort.Load())
	}
}
