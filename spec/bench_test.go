package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeBenchConfig writes n daemon blocks spread over files files. Each
// daemon has a command, env, a health block, a restart block and, after the
// first few, a depends_on on an earlier daemon; every third one also refers
// to an earlier daemon's name in its env.
func writeBenchConfig(tb testing.TB, dir string, n, files int) {
	tb.Helper()
	bufs := make([]strings.Builder, files)
	bufs[0].WriteString(`variable "base_port" {
  type    = number
  default = 10000
}

locals {
  bin = "${path.root}/bin"
}
`)
	for i := 0; i < n; i++ {
		b := &bufs[i%files]
		fmt.Fprintf(b, "\ndaemon \"d%d\" {\n", i)
		fmt.Fprintf(b, "  command = [\"${local.bin}/svc\", \"--port\", var.base_port + %d]\n", i)
		fmt.Fprintf(b, "  env = {\n    INDEX = \"%d\"\n    MODE  = \"bench\"\n", i)
		if i >= 3 && i%3 == 0 {
			fmt.Fprintf(b, "    PEER  = daemon.d%d.name\n", i/2)
		}
		b.WriteString("  }\n")
		if i >= 1 {
			fmt.Fprintf(b, "  depends_on = [daemon.d%d]\n", (i*7919+13)%i)
		}
		fmt.Fprintf(b, "  health {\n    tcp      = \"127.0.0.1:%d\"\n    interval = \"5s\"\n  }\n", 10000+i%50000)
		b.WriteString("  restart {\n    policy      = \"on-failure\"\n    backoff     = \"200ms\"\n    max_backoff = \"30s\"\n  }\n")
		b.WriteString("}\n")
	}
	for i := range bufs {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.hcl", i)), []byte(bufs[i].String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

func benchmarkLoad(b *testing.B, n, files int) {
	dir := b.TempDir()
	writeBenchConfig(b, dir, n, files)
	opts := Options{Schemas: testSchemas}
	// one untimed load proves the config valid
	cfg, diags := Load(dir, opts)
	if diags.HasErrors() {
		b.Fatalf("the generated config does not load:\n%s", renderDiags(diags))
	}
	if len(cfg.Resources) != n {
		b.Fatalf("%d resources, want %d", len(cfg.Resources), n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, diags := Load(dir, opts); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
}

func BenchmarkLoad10k(b *testing.B)   { benchmarkLoad(b, 10000, 20) }
func BenchmarkLoadSmall(b *testing.B) { benchmarkLoad(b, 10, 1) }

// TestBenchConfigLoads keeps the benchmark's generator honest in normal test
// runs, at a small size.
func TestBenchConfigLoads(t *testing.T) {
	dir := t.TempDir()
	writeBenchConfig(t, dir, 200, 5)
	cfg, diags := Load(dir, Options{Schemas: testSchemas})
	if diags.HasErrors() {
		t.Fatalf("%s", renderDiags(diags))
	}
	if len(cfg.Resources) != 200 {
		t.Fatalf("%d resources", len(cfg.Resources))
	}
	r := resource(t, cfg, "daemon.d9")
	// PEER refers to d4 (9/2) and depends_on names d4 ((9*7919+13)%9)
	if r.Env["PEER"] != "d4" || !sameSet(addrStrings(r.DependsOn), []string{"daemon.d4", "runtime.process.default"}) {
		t.Errorf("d9: env %v deps %v", r.Env, r.DependsOn)
	}
}

// writeTypicalConfig writes n daemons of the everyday shape: a command, an
// env entry, and a dependency on an earlier daemon (every fifth also
// references an earlier daemon's name); no nested blocks.
func writeTypicalConfig(tb testing.TB, dir string, n, files int) {
	tb.Helper()
	bufs := make([]strings.Builder, files)
	bufs[0].WriteString("locals {\n  bin = \"${path.root}/bin\"\n}\n")
	for i := 0; i < n; i++ {
		b := &bufs[i%files]
		fmt.Fprintf(b, "\ndaemon \"d%d\" {\n  command = [\"${local.bin}/svc\", \"--id\", \"%d\"]\n", i, i)
		if i >= 5 && i%5 == 0 {
			fmt.Fprintf(b, "  env     = { PEER = daemon.d%d.name }\n", i/2)
		} else {
			b.WriteString("  env     = { MODE = \"bench\" }\n")
		}
		if i >= 1 {
			fmt.Fprintf(b, "  depends_on = [daemon.d%d]\n", (i*7919+13)%i)
		}
		b.WriteString("}\n")
	}
	for i := range bufs {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.hcl", i)), []byte(bufs[i].String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

func BenchmarkLoad10kTypical(b *testing.B) {
	dir := b.TempDir()
	writeTypicalConfig(b, dir, 10000, 20)
	opts := Options{Schemas: testSchemas}
	if cfg, diags := Load(dir, opts); diags.HasErrors() || len(cfg.Resources) != 10000 {
		b.Fatalf("the generated config does not load: %s", renderDiags(diags))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, diags := Load(dir, opts); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
}

// BenchmarkCheckSource measures the pre-parse limits check (limits.go) on
// the files of BenchmarkLoad10k, to set against the load itself.
func BenchmarkCheckSource(b *testing.B) {
	dir := b.TempDir()
	writeBenchConfig(b, dir, 10000, 20)
	names, err := ConfigFiles(os.DirFS(dir))
	if err != nil {
		b.Fatal(err)
	}
	var srcs [][]byte
	size := 0
	for _, n := range names {
		src, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			b.Fatal(err)
		}
		srcs = append(srcs, src)
		size += len(src)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, src := range srcs {
			if d := CheckSource(src, names[j]); d != nil {
				b.Fatal(d)
			}
		}
	}
}

// BenchmarkCheckSourceAdversarial measures the check on 8 MiB built to be
// slow: unterminated comments, and brackets in strings.
func BenchmarkCheckSourceAdversarial(b *testing.B) {
	for name, src := range map[string]string{
		"open-comments": "a = 1\n" + strings.Repeat("/*{}\n", MaxConfigFileSize/5-4),
		"strings":       "a = \"" + strings.Repeat("[", MaxConfigFileSize-10) + "\"",
		"heredoc":       "a = <<EOT\n" + strings.Repeat("x[\n", MaxConfigFileSize/3-10) + "EOT\n",
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			for i := 0; i < b.N; i++ {
				CheckSource([]byte(src), "main.hcl")
			}
		})
	}
}

// BenchmarkLoad10kTypicalCached is BenchmarkLoad10kTypical served from the
// evaluated-configuration cache (cache.go): the blocks that no other block
// refers to (about nine in ten) come from it.
func BenchmarkLoad10kTypicalCached(b *testing.B) {
	dir := b.TempDir()
	writeTypicalConfig(b, dir, 10000, 20)
	if err := os.Mkdir(filepath.Join(dir, ".orch"), 0o700); err != nil {
		b.Fatal(err)
	}
	opts := Options{Schemas: testSchemas, Cache: true}
	if cfg, diags := Load(dir, opts); diags.HasErrors() || len(cfg.Resources) != 10000 {
		b.Fatalf("the generated config does not load: %s", renderDiags(diags))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		lastCacheHits.Store(0)
		if _, diags := Load(dir, opts); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
	b.ReportMetric(float64(lastCacheHits.Load()), "hits")
}
