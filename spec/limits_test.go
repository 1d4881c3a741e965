package spec

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// loadOne loads src as the only configuration file, name.
func loadOne(t *testing.T, name, src string, opts Options) hcl.Diagnostics {
	t.Helper()
	if opts.Schemas == nil {
		opts.Schemas = testSchemas
	}
	fsys := fstest.MapFS{name: {Data: []byte(src), Mode: 0o644}}
	cfg, diags := LoadFS(fsys, fuzzDir, opts)
	if cfg == nil {
		t.Fatal("nil Config")
	}
	return diags
}

// wantOneDiag checks that diags is one error, summary, at line:col of file.
func wantOneDiag(t *testing.T, diags hcl.Diagnostics, summary, file string, line, col int) {
	t.Helper()
	if len(diags) != 1 {
		t.Fatalf("want one diagnostic %q, got %d:\n%s", summary, len(diags), renderDiags(diags))
	}
	d := diags[0]
	if d.Severity != hcl.DiagError || d.Summary != summary {
		t.Fatalf("want error %q, got:\n%s", summary, renderDiags(diags))
	}
	if d.Subject == nil || d.Subject.Filename != file || d.Subject.Start.Line != line || d.Subject.Start.Column != col {
		t.Fatalf("want %q at %s:%d:%d, got:\n%s", summary, file, line, col, renderDiags(diags))
	}
}

// TestDeepNestingRefused: each way of nesting that HCL's parsers (or the
// evaluation of what they build) follow recursively, 60,000 deep, gives the
// nesting diagnostic at the level that passes the cap instead of a fatal
// stack overflow (which the test binary would die of).
func TestDeepNestingRefused(t *testing.T) {
	const n = 60000
	rep := strings.Repeat
	cap1 := MaxNestingDepth + 1 // the level that passes the cap
	cases := []struct {
		name, file, src string
		line, col       int
	}{
		{"brackets", "main.hcl", "a = " + rep("[", n), 1, 4 + cap1},
		{"braces", "main.hcl", "a = " + rep("{", n), 1, 4 + cap1},
		{"parens", "main.hcl", "a = " + rep("(", n), 1, 4 + cap1},
		{"closed brackets", "main.hcl", "locals {\n  a = " + rep("[", n) + rep("]", n) + "\n}\n", 2, 6 + cap1 - 1},
		{"blocks", "main.hcl", rep("a {\n", n), cap1, 3},
		{"bang", "main.hcl", "a = " + rep("!", n) + "x", 1, 4 + cap1},
		{"minus", "main.hcl", "a = " + rep("- ", n) + "x", 1, 4 + 2*cap1 - 1},
		{"left-deep sum", "main.hcl", "a = 1" + rep(" + 1", n), 1, 6 + 4*(cap1-1) + 1},
		{"sum over lines in parens", "main.hcl", "a = (1" + rep("\n+ 1", n) + ")", 1 + cap1 - 1, 1},
		{"for object over lines", "main.hcl", "a = {for k in x : k => 1" + rep("\n+ 1", n) + "}", 1 + cap1 - 1, 1},
		{"ternaries", "main.hcl", "a = " + rep("x ? 1 : ", n) + "2", 1, 4 + 8*(cap1-1) + 3},
		{"interpolations", "main.hcl", "a = " + rep(`"${`, n), 1, 4 + 3*(cap1/2) + 1},
		{"if directives", "main.hcl", "a = \"" + rep("%{if x}", n), 1, 6 + 7*(MaxNestingDepth-2)},
		{"heredocs", "main.hcl", "a = <<EOT\n" + rep("${<<EOT\n", n), 1 + cap1/2, 3},
		{"splats", "main.hcl", "a = x" + rep("[*]", n), 1, 7 + 3*(MaxNestingDepth-1)},
		{"function calls", "main.hcl", "a = " + rep("f(", n), 1, 4 + 2*(cap1-1) + 2},
		{"JSON arrays", "main.hcl.json", `{"locals": {"a": ` + rep("[", n), 1, 17 + cap1 - 2},
		{"JSON objects", "main.hcl.json", rep(`{"a":`, n), 1, 5*(cap1-1) + 1},
		{"JSON string template", "main.hcl.json", `{"locals": {"a": "${` + rep("[", n) + `}"}}`, 1, 17 + MaxNestingDepth},
		{"JSON type expression", "main.hcl.json", `{"variable": {"x": {"type": "` + rep("list(", n) + `"}}}`, 1, 34 + 5*(MaxNestingDepth-4)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			diags := loadOne(t, c.file, c.src, Options{})
			wantOneDiag(t, diags, "Configuration nested too deeply", c.file, c.line, c.col)
		})
	}
}

// TestNestingAtTheCap: nesting up to the cap loads; one more level is
// refused.
func TestNestingAtTheCap(t *testing.T) {
	// locals {} is a level: the attribute may hold MaxNestingDepth-1
	ok := "locals {\n  a = " + strings.Repeat("[", MaxNestingDepth-1) + strings.Repeat("]", MaxNestingDepth-1) + "\n}\n"
	if diags := loadOne(t, "main.hcl", ok, Options{}); diags.HasErrors() {
		t.Fatalf("%d levels refused:\n%s", MaxNestingDepth, renderDiags(diags))
	}
	bad := "locals {\n  a = " + strings.Repeat("[", MaxNestingDepth) + strings.Repeat("]", MaxNestingDepth) + "\n}\n"
	wantOneDiag(t, loadOne(t, "main.hcl", bad, Options{}), "Configuration nested too deeply", "main.hcl", 2, 6+MaxNestingDepth)
}

// TestNestingNotCounted: brackets and operators in strings, heredocs,
// comments, escapes, identifiers and separate items are not nesting, so
// configurations full of them load.
func TestNestingNotCounted(t *testing.T) {
	many := strings.Repeat("[{(", 1000)
	cases := map[string]string{
		"string":            `a = "` + many + `"`,
		"escaped quote":     `a = "\"` + many + `"`,
		"escaped interp":    `a = "$${` + many + `"`,
		"escaped control":   `a = "%%{if x}` + strings.Repeat("%%{if x}", 1000) + `"`,
		"hash comment":      "# " + many + "\na = 1",
		"slash comment":     "// " + many + "\na = 1",
		"block comment":     "/* " + many + "\n" + many + " */\na = 1",
		"heredoc":           "a = <<EOT\n" + many + "\n\"" + many + "\nEOT\nb = 1",
		"indented heredoc":  "a = <<-EOT\n  " + many + "\n  EOT\nb = 1",
		"heredoc in interp": "a = \"${<<EOT\n" + many + "\nEOT\n}\"\nb = 1",
		"identifiers":       "a = x" + strings.Repeat("-y", 2000),
		"exponents":         "a = [" + strings.Repeat("1e-5, ", 2000) + "]",
		"items":             "a = [" + strings.Repeat("1 + 1, ", 2000) + "]",
		"closed interps":    "a = \"" + strings.Repeat("${x}", 2000) + "\"",
		"closed ifs":        "a = \"" + strings.Repeat("%{if x}y%{endif}", 2000) + "\"",
		"json strings":      `{"locals": {"a": "` + many + `", "b": "echo \"` + many + `\" && (cd /tmp; ls)"}}`,
	}
	var b strings.Builder
	b.WriteString("locals {\n")
	for i := 0; i < 2000; i++ {
		b.WriteString("  x" + string(rune('a'+i%26)) + strings.Repeat("z", i/26) + " = 1 + 2 * 3 - 4\n")
	}
	b.WriteString("}\n")
	cases["many attributes with operators"] = b.String()
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			file := "main.hcl"
			if strings.HasPrefix(src, "{") {
				file = "main.hcl.json"
			}
			if d := CheckSource([]byte(src), file); d != nil {
				t.Fatalf("refused: %s: %s", d.Subject, d.Detail)
			}
		})
	}
}

// TestNestingOfExamples: every configuration of the repository passes the
// pre-scan, at the depth HCL's own lexer gives it.
func TestNestingOfExamples(t *testing.T) {
	var files []string
	for _, root := range []string{"../examples", "testdata"} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".hcl") || strings.HasSuffix(p, ".hcl.json")) {
				files = append(files, p)
			}
			return nil
		})
	}
	if len(files) < 10 {
		t.Fatalf("only %d configuration files found", len(files))
	}
	for _, p := range files {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if d := CheckSource(src, p); d != nil {
			t.Errorf("%s refused: %s", p, d.Detail)
		}
		if strings.HasSuffix(p, ".hcl") {
			_, got := nativeNesting(src, modeConfig, 1<<30)
			tokens, _ := hclsyntax.LexConfig(src, p, hcl.InitialPos)
			if _, want := tokenNesting(tokens, modeConfig, 1<<30); got != want {
				t.Errorf("%s: nesting %d, by HCL's tokens %d", p, got, want)
			}
		}
	}
}

// TestConfigFileTooLarge: a file over MaxConfigFileSize is refused, at the
// place the limit is passed, before it is parsed.
func TestConfigFileTooLarge(t *testing.T) {
	line := "# " + strings.Repeat("x", 1021) + "\n" // 1 KiB
	src := strings.Repeat(line, MaxConfigFileSize/1024) + "a = 1\n"
	diags := loadOne(t, "main.hcl", src, Options{})
	wantOneDiag(t, diags, "Configuration file too large", "main.hcl", MaxConfigFileSize/1024+1, 1)

	// just under the limit loads
	ok := strings.Repeat(line, MaxConfigFileSize/1024-1) + "daemon \"a\" {\n  command = [\"x\"]\n}\n"
	if diags := loadOne(t, "main.hcl", ok, Options{}); diags.HasErrors() {
		t.Fatalf("%s", renderDiags(diags))
	}
}

// TestVarFileAndVarNesting: -var-file contents and -var values are checked
// before they are parsed too.
func TestVarFileAndVarNesting(t *testing.T) {
	cfg := "variable \"x\" {\n  type = any\n  default = 1\n}\nvariable \"y\" {\n  type = bool\n  default = true\n}\n"
	deep := strings.Repeat("[", 60000)
	diags := loadOne(t, "main.hcl", cfg, Options{VarFiles: []VarFile{{Name: "deep.tfvars", Src: []byte("x = " + deep)}}})
	wantOneDiag(t, diags, "Configuration nested too deeply", "deep.tfvars", 1, 4+MaxNestingDepth+1)

	diags = loadOne(t, "main.hcl", cfg, Options{VarFiles: []VarFile{{Name: "deep.json", Src: []byte(`{"x": ` + deep)}}})
	wantOneDiag(t, diags, "Configuration nested too deeply", "deep.json", 1, 7+MaxNestingDepth-1)

	diags = loadOne(t, "main.hcl", cfg, Options{Vars: []string{"x=" + deep}})
	wantOneDiag(t, diags, "Value for variable nested too deeply", "main.hcl", 1, 1)

	diags = loadOne(t, "main.hcl", cfg, Options{Environ: []string{"ORCH_VAR_y=" + strings.Repeat("!", 60000) + "true"}})
	wantOneDiag(t, diags, "Value for variable nested too deeply", "main.hcl", 5, 1)

	// a value of modest depth is still read
	if diags := loadOne(t, "main.hcl", cfg, Options{Vars: []string{"x=[[[1]]]"}}); diags.HasErrors() {
		t.Fatalf("%s", renderDiags(diags))
	}
}

// TestNestingMatchesLexer: on sources chosen to be hard (heredocs, escapes,
// comments, directives, identifiers with '-', unclosed things), the byte
// scan measures exactly what HCL's own lexer's tokens give.
func TestNestingMatchesLexer(t *testing.T) {
	sources := []string{
		"a = <<EOT\n  [[[\n  EOT\nb = [[1]]\n",
		"a = <<-EOT\n  ${[[x]]}\n  EOT\n",
		"a = <<EOT\n${<<INNER\n[[${[1]}]]\nINNER\n}\nEOT\n",
		"a = <<EOT\r\n[${[1]}\r\nEOT\r\nb = [[2]]\r\n",
		"a = <<EOT\nEOT",
		"a = <<EOT \n[[\nEOT\n",
		`a = "${"}"}" b = "${ {x = [1]} }"`,
		`a = "\${[[[x" b = "$${[[[" c = "%%{if x}" d = "$$${[1]}"`,
		`a = "%{ if x }[%{ else }]%{ endif }%{for v in y}${v}%{endfor}"`,
		`a = "%{/* c */if x}y%{endif}"`,
		"a = [1 /* ] */, 2] # ]\nb = (1 // )\n+ 2)\n",
		"a = 1 /* unterminated [[ ",
		"a = x-y-z - 1e+5 - 1E-3 - 2\n",
		"a = {for k, v in x : k => v + 1\n+ 2}\nb = {\n  c = 1 + 2\n  d = 3 - 4\n}\n",
		"a = [for x in y: x if x > 0 && !x || x >= 2]\n",
		"ünïcode-x = [ü-ber - 1]\n",
		"a = x[*].y[*][0].*.z\n",
		"a = x ? y ? 1 : 2 : z ? 3 : 4\n",
		`a = "${x ~}" b = "${~ [1] ~}"`,
		"a = \"unterminated [[\nb = [[1]]\n",
		"a = \"${x\" b = [[1]]\n",
		"}}} a = [[1]] \"${ } }\"",
		"a = %{if x}\n",
		"a = <<EOT\n%{ if x }\n[[${y}]]\n%{ endif }\nEOT\n",
		"a = f(g(h([{b = (1)}])))\n",
	}
	for _, src := range sources {
		for _, mode := range []scanMode{modeConfig, modeExpression, modeTemplate} {
			_, got := nativeNesting([]byte(src), mode, 1<<30)
			var tokens hclsyntax.Tokens
			switch mode {
			case modeConfig:
				tokens, _ = hclsyntax.LexConfig([]byte(src), "f", hcl.InitialPos)
			case modeExpression:
				tokens, _ = hclsyntax.LexExpression([]byte(src), "f", hcl.InitialPos)
			case modeTemplate:
				tokens, _ = hclsyntax.LexTemplate([]byte(src), "f", hcl.InitialPos)
			}
			if _, want := tokenNesting(tokens, mode, 1<<30); got != want {
				t.Errorf("mode %d, %q: the scan finds %d, HCL's tokens %d", mode, src, got, want)
			}
		}
	}
}
