package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRedactorForms(t *testing.T) {
	r := NewRedactor("p@ss w\"rd", "ab", "hunter2", "hunter22", "18080")
	for in, want := range map[string]string{
		"exec /x/hunter2: no such file":       "exec /x/(sensitive value): no such file",
		"hunter22 and hunter2":                "(sensitive value) and (sensitive value)",
		"http://u:p%40ss%20w%22rd@host/":      "http://u:(sensitive value)@host/",
		`{"detail":"x p@ss w\"rd y"}`:         `{"detail":"x (sensitive value) y"}`,
		"q=p%40ss+w%22rd":                     "q=(sensitive value)",
		"ab is too short to be taken for one": "ab is too short to be taken for one",
		"path /a/p%40ss%20w%22rd/b":           "path /a/(sensitive value)/b",
		"nothing to hide":                     "nothing to hide",
	} {
		if got := r.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	var none *Redactor
	if none.Redact("hunter2") != "hunter2" || NewRedactor("ab") != nil {
		t.Error("the nil Redactor must change nothing, and short values make none")
	}
	u := NewRedactor("secret-one").Union(NewRedactor("secret-two"))
	if got := u.Redact("secret-one secret-two"); got != "(sensitive value) (sensitive value)" {
		t.Errorf("Union: %q", got)
	}
}

// TestConfigRedactor: the values of sensitive variables, and of attributes
// derived from them, are what Config.Redactor removes; other values are
// left alone.
func TestConfigRedactor(t *testing.T) {
	cfg := load(t, map[string]string{"main.hcl": `
variable "tok" {
  type      = string
  sensitive = true
}
variable "name" {
  type    = string
  default = "visible-name"
}
daemon "a" {
  command = ["/bin/prog-${var.tok}", var.name]
  env     = { B64 = base64encode(var.tok) }
}
`}, Options{Schemas: testSchemas, Vars: []string{"tok=s3cret-value"}})
	text := "/bin/prog-s3cret-value visible-name " + "czNjcmV0LXZhbHVl"
	got := cfg.Redact(text)
	if strings.Contains(got, "s3cret") || strings.Contains(got, "czNjcmV0LXZhbHVl") || !strings.Contains(got, "visible-name") {
		t.Errorf("Redact(%q) = %q", text, got)
	}
}

// BenchmarkLoadSensitive1000 loads 1,000 daemons whose env each holds a
// value derived from a sensitive variable (1,001 secrets for the
// Redactor); BenchmarkRedactorBuild1000 and BenchmarkRedactEvent1000 time
// the Redactor alone.
func BenchmarkLoadSensitive1000(b *testing.B) {
	dir := b.TempDir()
	var sb strings.Builder
	sb.WriteString("variable \"tok\" {\n  type      = string\n  sensitive = true\n}\n")
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&sb, "daemon \"d%d\" {\n  command = [\"/bin/sleep\", \"1000\"]\n  env = { TOKEN = \"${var.tok}-%d\" }\n}\n", i, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	opts := Options{Schemas: testSchemas, Vars: []string{"tok=s3cret-value"}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, diags := Load(dir, opts); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
}

func benchSecrets() []string {
	secrets := []string{"s3cret-value"}
	for i := 0; i < 1000; i++ {
		secrets = append(secrets, fmt.Sprintf("s3cret-value-%d", i))
	}
	return secrets
}

func BenchmarkRedactorBuild1000(b *testing.B) {
	secrets := benchSecrets()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		NewRedactor(secrets...).Redact("x") // strings.Replacer builds its trie on first use
	}
}

func BenchmarkRedactEvent1000(b *testing.B) {
	r := NewRedactor(benchSecrets()...)
	ev := `{"time":"2026-12-04T14:28:20.52006311Z","type":"unhealthy","address":"daemon.web[12]","detail":"http http://127.0.0.1:8080/health: connect: connection refused (not ready within start_timeout 1s: 11 failed probes, none passed)"}` + "\n"
	b.ReportAllocs()
	b.SetBytes(int64(len(ev)))
	for i := 0; i < b.N; i++ {
		r.Redact(ev)
	}
}
