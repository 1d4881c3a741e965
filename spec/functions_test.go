package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty/convert"
)

// funcCase is one call of a function and its result (an HCL expression
// too), or the text its error must hold.
type funcCase struct {
	fn, call, want, err string
}

// funcCases has at least one case for every function of the language, as
// Terraform documents it.
var funcCases = []funcCase{
	{"abs", `abs(-12.4)`, `12.4`, ""},
	{"abspath", `abspath("bin/x")`, `"/orch-fuzz/config/bin/x"`, ""},
	{"alltrue", `alltrue([true, "true"])`, `true`, ""},
	{"alltrue", `alltrue([true, false])`, `false`, ""},
	{"alltrue", `alltrue([])`, `true`, ""},
	{"anytrue", `anytrue([false, true])`, `true`, ""},
	{"anytrue", `anytrue([])`, `false`, ""},
	{"base64decode", `base64decode("SGVsbG8gV29ybGQ=")`, `"Hello World"`, ""},
	{"base64encode", `base64encode("Hello World")`, `"SGVsbG8gV29ybGQ="`, ""},
	{"base64sha256", `base64sha256("hello world")`, `"uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="`, ""},
	{"base64sha512", `base64sha512("hello world")`, `"MJ7MSJwS1utMxA9QyQLytNDtd+5RGnx6m808qG1M2G+YndNbxf9JlnDaNCVbRbDP2DDoH2Bdz33FVC6TrpzXbw=="`, ""},
	{"basename", `basename("foo/bar/baz.txt")`, `"baz.txt"`, ""},
	{"can", `can(regex("^[a-z]+$", "abc"))`, `true`, ""},
	{"can", `can(regex("^[a-z]+$", "ABC"))`, `false`, ""},
	{"ceil", `ceil(5.1)`, `6`, ""},
	{"chomp", `chomp("hello\n\n")`, `"hello"`, ""},
	{"chunklist", `chunklist(["a", "b", "c"], 2)`, `[["a", "b"], ["c"]]`, ""},
	{"cidrhost", `cidrhost("10.12.112.0/20", 16)`, `"10.12.112.16"`, ""},
	{"cidrhost", `cidrhost("fd00:fd12:3456:7890::/56", 16)`, `"fd00:fd12:3456:7800::10"`, ""},
	{"cidrnetmask", `cidrnetmask("172.16.0.0/12")`, `"255.240.0.0"`, ""},
	{"cidrsubnet", `cidrsubnet("172.16.0.0/12", 4, 2)`, `"172.18.0.0/16"`, ""},
	{"cidrsubnets", `cidrsubnets("10.1.0.0/16", 4, 4, 8, 4)`, `["10.1.0.0/20", "10.1.16.0/20", "10.1.32.0/24", "10.1.48.0/20"]`, ""},
	{"coalesce", `coalesce("", "b", "c")`, `"b"`, ""},
	{"coalesce", `coalesce(null, 1, 2)`, `1`, ""},
	{"coalescelist", `coalescelist([], ["c"])`, `["c"]`, ""},
	{"compact", `compact(["a", "", "b"])`, `["a", "b"]`, ""},
	{"concat", `concat(["a"], ["b", "c"])`, `["a", "b", "c"]`, ""},
	{"contains", `contains(["a", "b"], "b")`, `true`, ""},
	{"csvdecode", `csvdecode("a,b\n1,2\n")`, `[{a = "1", b = "2"}]`, ""},
	{"dirname", `dirname("foo/bar/baz.txt")`, `"foo/bar"`, ""},
	{"distinct", `distinct(["a", "b", "a"])`, `["a", "b"]`, ""},
	{"element", `element(["a", "b", "c"], 4)`, `"b"`, ""},
	{"endswith", `endswith("hello world", "world")`, `true`, ""},
	{"endswith", `endswith("hello world", "hello")`, `false`, ""},
	{"file", `file("data/hello.txt")`, `"Hello\n"`, ""},
	{"file", `file("data/blob.bin")`, ``, "not UTF-8"},
	{"filebase64", `filebase64("data/blob.bin")`, `"/wA="`, ""},
	{"fileexists", `fileexists("data/hello.txt")`, `true`, ""},
	{"fileexists", `fileexists("data/nothing.txt")`, `false`, ""},
	{"fileexists", `fileexists("data")`, ``, "not a regular file"},
	{"flatten", `flatten([["a", "b"], [], ["c"]])`, `["a", "b", "c"]`, ""},
	{"floor", `floor(4.9)`, `4`, ""},
	{"format", `format("Hello, %s! %d", "Ander", 3)`, `"Hello, Ander! 3"`, ""},
	{"formatdate", `formatdate("DD MMM YYYY hh:mm ZZZ", "2018-01-02T23:12:01Z")`, `"02 Jan 2018 23:12 UTC"`, ""},
	{"formatlist", `formatlist("Hello, %s!", ["Valentina", "Ander"])`, `["Hello, Valentina!", "Hello, Ander!"]`, ""},
	{"indent", `indent(2, "a\nb")`, `"a\n  b"`, ""},
	{"index", `index(["a", "b", "c"], "b")`, `1`, ""},
	{"index", `index(["a", "b", "c"], "d")`, ``, "item not found"},
	{"join", `join(", ", ["foo", "bar"])`, `"foo, bar"`, ""},
	{"jsondecode", `jsondecode("{\"hello\": \"world\"}")`, `{hello = "world"}`, ""},
	{"jsondecode", `jsondecode(file("data/deep.json"))`, ``, "nests deeper than 256 levels (at byte 256)"},
	{"jsondecode", `jsondecode(file("data/ok.json"))`, `[[[[["x]]"]]]]]`, ""},
	{"jsonencode", `jsonencode({hello = "world"})`, `"{\"hello\":\"world\"}"`, ""},
	{"keys", `keys({a = 1, c = 2, d = 3})`, `["a", "c", "d"]`, ""},
	{"length", `length("hello")`, `5`, ""},
	{"length", `length("👾🕹️")`, `2`, ""},
	{"length", `length(["a", "b"])`, `2`, ""},
	{"length", `length({a = "b"})`, `1`, ""},
	{"length", `length(toset(["a", "a"]))`, `1`, ""},
	{"length", `length(1)`, ``, "must be a string, a collection type, or a structural type"},
	{"log", `log(16, 2)`, `4`, ""},
	{"lookup", `lookup({a = "ay", b = "bee"}, "c", "what?")`, `"what?"`, ""},
	{"lower", `lower("HELLO")`, `"hello"`, ""},
	{"max", `max(12, 54, 3)`, `54`, ""},
	{"md5", `md5("hello world")`, `"5eb63bbbe01eeed093cb22bb8f5acdc3"`, ""},
	{"merge", `merge({a = "b"}, {e = "f"})`, `{a = "b", e = "f"}`, ""},
	{"min", `min(12, 54, 3)`, `3`, ""},
	{"one", `one(["hello"])`, `"hello"`, ""},
	{"one", `one([])`, `null`, ""},
	{"one", `one(["a", "b"])`, ``, "either zero or one elements"},
	{"parseint", `parseint("FF", 16)`, `255`, ""},
	{"pow", `pow(3, 2)`, `9`, ""},
	{"range", `range(1, 4)`, `[1, 2, 3]`, ""},
	{"regex", `regex("[a-z]+", "53453453.345345aaabbbccc23454")`, `"aaabbbccc"`, ""},
	{"regexall", `regexall("[a-z]+", "1234abcd5678efgh9")`, `["abcd", "efgh"]`, ""},
	{"replace", `replace("1 + 2 + 3", "+", "-")`, `"1 - 2 - 3"`, ""},
	{"replace", `replace("hello world", "/w.*d/", "everybody")`, `"hello everybody"`, ""},
	{"reverse", `reverse([1, 2, 3])`, `[3, 2, 1]`, ""},
	{"setintersection", `setintersection(["a", "b"], ["b", "c"])`, `["b"]`, ""},
	{"setproduct", `setproduct(["a"], ["x", "y"])`, `[["a", "x"], ["a", "y"]]`, ""},
	{"setsubtract", `setsubtract(["a", "b", "c"], ["a", "c"])`, `["b"]`, ""},
	{"setunion", `setunion(["a", "b"], ["b", "c"])`, `["a", "b", "c"]`, ""},
	{"sha1", `sha1("hello world")`, `"2aae6c35c94fcfb415dbe95f408b9ce91ee846ed"`, ""},
	{"sha256", `sha256("hello world")`, `"b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"`, ""},
	{"sha512", `sha512("hello world")`, `"309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee511a7c7a9bcd3ca86d4cd86f989dd35bc5ff499670da34255b45b0cfd830e81f605dcf7dc5542e93ae9cd76f"`, ""},
	{"signum", `signum(-13)`, `-1`, ""},
	{"slice", `slice(["a", "b", "c", "d"], 1, 3)`, `["b", "c"]`, ""},
	{"sort", `sort(["e", "d", "a", "x"])`, `["a", "d", "e", "x"]`, ""},
	{"split", `split(",", "foo,bar,baz")`, `["foo", "bar", "baz"]`, ""},
	{"startswith", `startswith("hello world", "hello")`, `true`, ""},
	{"startswith", `startswith("hello world", "world")`, `false`, ""},
	{"strcontains", `strcontains("hello world", "wor")`, `true`, ""},
	{"strrev", `strrev("hello")`, `"olleh"`, ""},
	{"substr", `substr("hello world", 1, 4)`, `"ello"`, ""},
	{"sum", `sum([10, 13, 6, 4.5])`, `33.5`, ""},
	{"sum", `sum([])`, ``, "cannot sum an empty list"},
	{"templatefile", `templatefile("data/t.tmpl", {port = 8080, names = ["a", "b"]})`, `"listen 8080\nname a\nname b\n"`, ""},
	{"templatefile", `templatefile("data/t.tmpl", {port = 1})`, ``, `vars map does not contain key "names"`},
	{"templatefile", `templatefile("data/self.tmpl", {})`, ``, "cannot call templatefile from inside"},
	{"timeadd", `timeadd("2017-11-22T00:00:00Z", "10m")`, `"2017-11-22T00:10:00Z"`, ""},
	{"title", `title("hello world")`, `"Hello World"`, ""},
	{"tobool", `tobool("true")`, `true`, ""},
	{"tolist", `tolist(["a", "b"])`, `["a", "b"]`, ""},
	{"tomap", `tomap({a = 1})`, `{a = 1}`, ""},
	{"tonumber", `tonumber("1")`, `1`, ""},
	{"toset", `toset(["a", "b", "a"])`, `["a", "b"]`, ""},
	{"tostring", `tostring(1)`, `"1"`, ""},
	{"trim", `trim("?!hello?!", "!?")`, `"hello"`, ""},
	{"trimprefix", `trimprefix("helloworld", "hello")`, `"world"`, ""},
	{"trimspace", `trimspace("  hello\n")`, `"hello"`, ""},
	{"trimsuffix", `trimsuffix("helloworld", "world")`, `"hello"`, ""},
	{"try", `try(tonumber("x"), 7)`, `7`, ""},
	{"upper", `upper("hello")`, `"HELLO"`, ""},
	{"urlencode", `urlencode("Hello World!")`, `"Hello+World%21"`, ""},
	{"values", `values({a = 3, c = 2, d = 1})`, `[3, 2, 1]`, ""},
	{"zipmap", `zipmap(["a", "b"], [1, 2])`, `{a = 1, b = 2}`, ""},
}

var funcFS = fstest.MapFS{
	"data/hello.txt":  {Data: []byte("Hello\n")},
	"data/blob.bin":   {Data: []byte{0xff, 0x00}},
	"data/t.tmpl":     {Data: []byte("listen ${port}\n%{ for n in names ~}\nname ${n}\n%{ endfor ~}\n")},
	"data/self.tmpl":  {Data: []byte("${templatefile(\"data/self.tmpl\", {})}")},
	"data/deep.tmpl":  {Data: []byte(strings.Repeat("${[", 60000))},
	"data/.keep":      {Data: nil},
	"data/deep.json":  {Data: []byte(strings.Repeat("[", 1000000) + strings.Repeat("]", 1000000))},
	"data/ok.json":    {Data: []byte(`[[[[["x]]"]]]]]`)},
	"data/empty.tmpl": {Data: []byte("")},
}

// TestFunctions calls every function of the language as Terraform's
// documentation does and checks the result.
func TestFunctions(t *testing.T) {
	funcs := functions(funcFS, fuzzDir)
	covered := map[string]bool{}
	for _, c := range funcCases {
		covered[c.fn] = true
		if !strings.HasPrefix(c.call, c.fn+"(") {
			t.Errorf("case %s calls %s", c.fn, c.call)
		}
		ctx := &hcl.EvalContext{Functions: funcs}
		expr, diags := hclsyntax.ParseExpression([]byte(c.call), "call", hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("%s: %s", c.call, diags)
		}
		got, diags := expr.Value(ctx)
		if c.err != "" {
			if !diags.HasErrors() || !strings.Contains(diags.Error(), c.err) {
				t.Errorf("%s = %#v (%v), want an error with %q", c.call, got, diags, c.err)
			}
			continue
		}
		if diags.HasErrors() {
			t.Errorf("%s: %s", c.call, diags.Error())
			continue
		}
		wexpr, diags := hclsyntax.ParseExpression([]byte(c.want), "want", hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("%s: %s", c.want, diags)
		}
		want, _ := wexpr.Value(nil)
		if want.IsNull() {
			if !got.IsNull() {
				t.Errorf("%s = %#v, want null", c.call, got)
			}
			continue
		}
		if conv, err := convert.Convert(want, got.Type()); err == nil {
			want = conv
		}
		if !got.RawEquals(want) {
			t.Errorf("%s = %#v, want %#v", c.call, got, want)
		}
	}
	for name := range funcs {
		if !covered[name] {
			t.Errorf("function %s has no case", name)
		}
	}
}

// TestFunctionsDocumented: docs/language.md lists exactly the functions,
// each with a description.
func TestFunctionsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "language.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z0-9]+)\\(([^`]*)\\)` \\| ([^|]+) \\|$")
	documented := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		if strings.TrimSpace(m[3]) == "" {
			t.Errorf("%s has no description", m[1])
		}
		documented[m[1]] = true
	}
	funcs := functions(funcFS, fuzzDir)
	var missing, extra []string
	for name := range funcs {
		if !documented[name] {
			missing = append(missing, name)
		}
	}
	for name := range documented {
		if _, ok := funcs[name]; !ok {
			extra = append(extra, name)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("docs/language.md misses %v and lists %v, which orch does not have", missing, extra)
	}
}

// TestLengthOfAString: length() counts the characters of a string in a
// configuration (it failed: go-cty's length takes collections only), and
// templatefile renders a file of the directory.
func TestLengthOfAString(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"main.hcl": `locals {
  name = "héllo"
}

daemon "api" {
  command = ["/bin/sh", "-c", templatefile("run.tmpl", { n = length(local.name) })]
  env     = { NAME_LEN = length(local.name), SUM = sha256(local.name) }
}
`,
		"run.tmpl": "echo ${n}",
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, diags := Load(dir, Options{Schemas: testSchemas})
	if diags.HasErrors() {
		t.Fatalf("%s", renderDiags(diags))
	}
	r := resource(t, cfg, "daemon.api")
	sum := sha256.Sum256([]byte("héllo"))
	if r.Env["NAME_LEN"] != "5" || r.Command[2] != "echo 5" || r.Env["SUM"] != hex.EncodeToString(sum[:]) {
		t.Fatalf("env %v, command %q", r.Env, r.Command)
	}
}

// TestTemplateFileLimits: a template is checked against the nesting cap
// before it is parsed, like a configuration file.
func TestTemplateFileLimits(t *testing.T) {
	funcs := functions(funcFS, fuzzDir)
	expr, _ := hclsyntax.ParseExpression([]byte(`templatefile("data/deep.tmpl", {})`), "call", hcl.InitialPos)
	_, diags := expr.Value(&hcl.EvalContext{Functions: funcs})
	if !diags.HasErrors() || !strings.Contains(diags.Error(), "data/deep.tmpl:1,") || !strings.Contains(diags.Error(), "nested too deeply") {
		t.Fatalf("%v", diags)
	}
}
