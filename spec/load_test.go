package spec

import (
	"reflect"
	"sort"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

const okDir = "/orch-test/ok"

// load loads files (name -> content) as a directory and fails the test on
// any diagnostic.
func load(t *testing.T, files map[string]string, opts Options) *Config {
	t.Helper()
	cfg, diags := loadFiles(files, opts)
	if len(diags) > 0 {
		t.Fatalf("unexpected diagnostics:\n%s", renderDiags(diags))
	}
	return cfg
}

func loadFiles(files map[string]string, opts Options) (*Config, hcl.Diagnostics) {
	fsys := fstest.MapFS{}
	for name, src := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(src), Mode: 0o644}
	}
	if opts.Schemas == nil {
		opts.Schemas = testSchemas
	}
	return LoadFS(fsys, okDir, opts)
}

func mustAddr(t *testing.T, s string) Address {
	t.Helper()
	a, err := ParseAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func resource(t *testing.T, cfg *Config, addr string) *Resource {
	t.Helper()
	r := cfg.Resource(mustAddr(t, addr))
	if r == nil {
		var have []string
		for _, r := range cfg.Resources {
			have = append(have, r.Addr.String())
		}
		t.Fatalf("no resource %s; have %v", addr, have)
	}
	return r
}

func addrStrings(as []Address) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func TestLoadValid(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		opts  Options
		check func(t *testing.T, cfg *Config)
	}{
		{
			name: "count expands into indexed instances",
			files: map[string]string{"main.hcl": `
daemon "api" {
  count   = 2
  command = ["/bin/api", "--port", 8000 + count.index]
}`},
			check: func(t *testing.T, cfg *Config) {
				if got := addrStrings(resourceAddrs(cfg)); !reflect.DeepEqual(got, []string{"daemon.api[0]", "daemon.api[1]"}) {
					t.Fatalf("instances = %v", got)
				}
				if got := resource(t, cfg, "daemon.api[1]").Command; !reflect.DeepEqual(got, []string{"/bin/api", "--port", "8001"}) {
					t.Errorf("command = %q", got)
				}
			},
		},
		{
			name: "count = 0 declares nothing",
			files: map[string]string{"main.hcl": `
daemon "api" {
  count   = 0
  command = ["/bin/api"]
}`},
			check: func(t *testing.T, cfg *Config) {
				if len(cfg.Resources) != 0 || len(cfg.Runtimes) != 0 {
					t.Errorf("resources = %v, runtimes = %d", resourceAddrs(cfg), len(cfg.Runtimes))
				}
			},
		},
		{
			name: "for_each over a map and a set",
			files: map[string]string{"main.hcl": `
daemon "web" {
  for_each = { eu = 8001, us = 8002 }
  command  = ["/bin/web", each.key, each.value]
}
daemon "worker" {
  for_each = toset(["b", "a"])
  command  = ["/bin/worker", each.value]
}`},
			check: func(t *testing.T, cfg *Config) {
				want := []string{`daemon.web["eu"]`, `daemon.web["us"]`, `daemon.worker["a"]`, `daemon.worker["b"]`}
				if got := addrStrings(resourceAddrs(cfg)); !reflect.DeepEqual(got, want) {
					t.Fatalf("instances = %v, want %v", got, want)
				}
				if got := resource(t, cfg, `daemon.web["eu"]`).Command; !reflect.DeepEqual(got, []string{"/bin/web", "eu", "8001"}) {
					t.Errorf("command = %q", got)
				}
			},
		},
		{
			name: "references between blocks and the value shape of a daemon",
			files: map[string]string{"main.hcl": `
daemon "db" {
  command = ["/bin/db", "--data", "/var/db"]
  env     = { PGPORT = "5432" }
  dir     = "db"
  user    = "postgres"
}
daemon "api" {
  count   = 2
  command = ["/bin/api"]
}
daemon "web" {
  for_each = { eu = 1 }
  command  = ["/bin/web"]
}
job "report" {
  command = ["/bin/report"]
  env = {
    NAME    = daemon.db.name
    ADDRESS = daemon.db.address
    PROGRAM = daemon.db.command[0]
    ARGS    = join(" ", daemon.db.command)
    PGPORT  = daemon.db.env.PGPORT
    DIR     = daemon.db.dir
    USER    = daemon.db.user
    API1    = daemon.api[1].address
    APIS    = length(daemon.api)
    WEB     = daemon.web["eu"].address
  }
}`},
			check: func(t *testing.T, cfg *Config) {
				r := resource(t, cfg, "job.report")
				want := map[string]string{
					"NAME": "db", "ADDRESS": "daemon.db", "PROGRAM": "/bin/db", "ARGS": "/bin/db --data /var/db",
					"PGPORT": "5432", "DIR": "db", "USER": "postgres", "API1": "daemon.api[1]", "APIS": "2",
					"WEB": `daemon.web["eu"]`,
				}
				if !reflect.DeepEqual(r.Env, want) {
					t.Errorf("env = %v\nwant %v", r.Env, want)
				}
				wantDeps := []string{"daemon.api", "daemon.db", "daemon.web", "runtime.process.default"}
				if got := addrStrings(r.DependsOn); !reflect.DeepEqual(got, wantDeps) {
					t.Errorf("DependsOn = %v, want %v", got, wantDeps)
				}
				if got := resource(t, cfg, "daemon.db").Dir; got != okDir+"/db" {
					t.Errorf("dir = %q", got)
				}
			},
		},
		{
			name: "locals chain and path.root",
			files: map[string]string{"main.hcl": `
locals {
  c = upper(local.b)
  a = "${path.root}/bin"
  b = "${local.a}/api"
}
daemon "api" {
  command = [local.b, local.c]
}`},
			check: func(t *testing.T, cfg *Config) {
				want := []string{okDir + "/bin/api", strings.ToUpper(okDir + "/bin/api")}
				if got := resource(t, cfg, "daemon.api").Command; !reflect.DeepEqual(got, want) {
					t.Errorf("command = %q, want %q", got, want)
				}
			},
		},
		{
			name: "typed -var values",
			files: map[string]string{"main.hcl": `
variable "port" {
  type = number
}
variable "args" {
  type = list(string)
}
variable "any" {
  default = "x"
}
daemon "api" {
  command = concat(["/bin/api", var.port + 1], var.args, [var.any[1]])
}`},
			opts: Options{Vars: []string{"port=8080", `args=["-v", "-q"]`, "any=[1, 2]"}},
			check: func(t *testing.T, cfg *Config) {
				want := []string{"/bin/api", "8081", "-v", "-q", "2"}
				if got := resource(t, cfg, "daemon.api").Command; !reflect.DeepEqual(got, want) {
					t.Errorf("command = %q, want %q", got, want)
				}
				if v := cfg.Variables["port"]; v.Source != "-var" || !v.Value.RawEquals(cty.NumberIntVal(8080)) {
					t.Errorf("port = %#v from %s", v.Value, v.Source)
				}
			},
		},
		{
			name: "validation blocks that pass",
			files: map[string]string{"main.hcl": `
variable "port" {
  type    = number
  default = 8080
  validation {
    condition     = var.port > 1024 && var.port < 65536
    error_message = "port must be above 1024."
  }
  validation {
    condition     = floor(var.port) == var.port
    error_message = "port must be whole."
  }
}`},
			check: func(t *testing.T, cfg *Config) {
				if cfg.Variables["port"] == nil {
					t.Fatal("variable port missing")
				}
			},
		},
		{
			name: "file() reads a file of the directory",
			files: map[string]string{
				"main.hcl": `
daemon "api" {
  command = ["/bin/api"]
  env     = { MOTD = trimspace(file("motd.txt")), HAS = fileexists("nope.txt") }
}`,
				"motd.txt": "hello\n",
			},
			check: func(t *testing.T, cfg *Config) {
				if got := resource(t, cfg, "daemon.api").Env; got["MOTD"] != "hello" || got["HAS"] != "false" {
					t.Errorf("env = %v", got)
				}
			},
		},
		{
			name: "implicit runtime.process.default",
			files: map[string]string{"main.hcl": `
daemon "api" {
  command = ["/bin/api"]
}`},
			check: func(t *testing.T, cfg *Config) {
				r := resource(t, cfg, "daemon.api")
				if r.Runtime.String() != "runtime.process.default" {
					t.Errorf("runtime = %s", r.Runtime)
				}
				if len(cfg.Runtimes) != 1 || !cfg.Runtimes[0].Implicit || cfg.Runtimes[0].Addr != r.Runtime {
					t.Errorf("runtimes = %+v", cfg.Runtimes)
				}
			},
		},
		{
			name: "a single declared process runtime replaces the default",
			files: map[string]string{"main.hcl": `
runtime "process" "host" {}
runtime "docker" "local" {}
daemon "api" {
  command = ["/bin/api"]
}
daemon "db" {
  runtime = runtime.docker.local
  image   = "postgres:16"
  ports   = ["5432:5432"]
}`},
			check: func(t *testing.T, cfg *Config) {
				if r := resource(t, cfg, "daemon.api"); r.Runtime.String() != "runtime.process.host" {
					t.Errorf("api runtime = %s", r.Runtime)
				}
				db := resource(t, cfg, "daemon.db")
				if db.Runtime.String() != "runtime.docker.local" || db.Attrs["image"].AsString() != "postgres:16" {
					t.Errorf("db = %s %v", db.Runtime, db.Attrs)
				}
				var rts []string
				for _, rt := range cfg.Runtimes {
					rts = append(rts, rt.Addr.String())
					if rt.Implicit {
						t.Errorf("%s is implicit", rt.Addr)
					}
				}
				if want := []string{"runtime.docker.local", "runtime.process.host"}; !reflect.DeepEqual(rts, want) {
					t.Errorf("runtimes = %v", rts)
				}
			},
		},
		{
			name: "defaults and nested blocks",
			files: map[string]string{"main.hcl": `
daemon "api" {
  command = ["/bin/api"]
  umask   = "0027"
  rlimits = { nofile = 4096 }
  health {
    http     = "http://127.0.0.1:8080/healthz"
    interval = "2s"
  }
  restart {
    policy      = "always"
    backoff     = "100ms"
    max_backoff = "5s"
  }
  stop {
    signal  = "INT"
    timeout = "3s"
  }
  log {
    max_size = "1MiB"
  }
  lifecycle {
    create_before_destroy = true
    ignore_changes        = [env, "health"]
  }
}
job "migrate" {
  command = ["/bin/migrate"]
}`},
			check: func(t *testing.T, cfg *Config) {
				r := resource(t, cfg, "daemon.api")
				if r.Umask != 0o027 || r.Rlimits["nofile"] != 4096 {
					t.Errorf("umask %o rlimits %v", r.Umask, r.Rlimits)
				}
				wantH := &Health{Kind: HealthHTTP, HTTP: "http://127.0.0.1:8080/healthz", Interval: 2 * time.Second, Timeout: DefaultHealthTimeout, Retries: DefaultHealthRetries, StartTimeout: DefaultStartTimeout}
				if !reflect.DeepEqual(r.Health, wantH) {
					t.Errorf("health = %+v", r.Health)
				}
				wantR := Restart{Policy: RestartAlways, Backoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second, MaxRestarts: DefaultMaxRestarts, Window: DefaultRestartWindow}
				if r.Restart != wantR {
					t.Errorf("restart = %+v", r.Restart)
				}
				if r.Stop.Signal.Name != "SIGINT" || r.Stop.Timeout != 3*time.Second {
					t.Errorf("stop = %+v", r.Stop)
				}
				if r.Log.MaxSize != 1<<20 || r.Log.MaxFiles != DefaultLogMaxFiles {
					t.Errorf("log = %+v", r.Log)
				}
				if !r.Lifecycle.CreateBeforeDestroy || !reflect.DeepEqual(r.Lifecycle.IgnoreChanges, []string{"env", "health"}) {
					t.Errorf("lifecycle = %+v", r.Lifecycle)
				}
				if _, ok := r.Ranges.Get("health"); !ok {
					t.Errorf("no range for health")
				}
				if m := resource(t, cfg, "job.migrate"); m.Restart.Policy != RestartNever || m.Health != nil {
					t.Errorf("job restart = %v health = %v", m.Restart.Policy, m.Health)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, load(t, tt.files, tt.opts))
		})
	}
}

func resourceAddrs(cfg *Config) []Address {
	out := make([]Address, len(cfg.Resources))
	for i, r := range cfg.Resources {
		out[i] = r.Addr
	}
	return out
}

func TestVariablePrecedence(t *testing.T) {
	src := map[string]string{"main.hcl": `
variable "a" {
  default = "default"
}
variable "b" {
  default = "default"
}
variable "c" {
  default = "default"
}
variable "d" {
  default = "default"
}
variable "e" {
  default = "default"
}`}
	opts := Options{
		Environ: []string{"ORCH_VAR_b=env", "ORCH_VAR_c=env", "ORCH_VAR_d=env", "ORCH_VAR_e=env", "PATH=/bin", "ORCH_VAR_NOPE=x"},
		VarFiles: []VarFile{
			{Name: "one.orchvars", Src: []byte("c = \"file1\"\nd = \"file1\"\ne = \"file1\"\n")},
			{Name: "two.orchvars.json", Src: []byte(`{"d": "file2", "e": "file2"}`)},
		},
		Vars: []string{"e=cli1", "e=cli2"},
	}
	cfg := load(t, src, opts)
	want := map[string][2]string{
		"a": {"default", "default"},
		"b": {"env", "ORCH_VAR_b"},
		"c": {"file1", "-var-file one.orchvars"},
		"d": {"file2", "-var-file two.orchvars.json"},
		"e": {"cli2", "-var"},
	}
	for name, w := range want {
		v := cfg.Variables[name]
		if v == nil {
			t.Fatalf("no variable %s", name)
		}
		if v.Value.AsString() != w[0] || v.Source != w[1] {
			t.Errorf("%s = %q from %q, want %q from %q", name, v.Value.AsString(), v.Source, w[0], w[1])
		}
	}
}

func TestSensitive(t *testing.T) {
	const secret = "hunter2-s3cr3t"
	src := `
variable "secret" {
  type      = string
  sensitive = true
}
daemon "db" {
  command = ["/bin/db", "--password", var.secret]
  env     = { PASSWORD = var.secret, PLAIN = "x" }
}
daemon "api" {
  command = ["/bin/api"]
  env     = { DB = "postgres://u:${var.secret}@db" }
}`
	cfg := load(t, map[string]string{"main.hcl": src}, Options{Vars: []string{"secret=" + secret}})
	db := resource(t, cfg, "daemon.db")
	for _, p := range []string{"env.PASSWORD", "command[2]"} {
		if !db.Sensitive[p] {
			t.Errorf("db.Sensitive lacks %q: %v", p, db.Sensitive)
		}
	}
	if db.Sensitive["env.PLAIN"] || db.Sensitive["command[0]"] {
		t.Errorf("db.Sensitive has too much: %v", db.Sensitive)
	}
	if !resource(t, cfg, "daemon.api").Sensitive["env.DB"] {
		t.Errorf("api.Sensitive = %v", resource(t, cfg, "daemon.api").Sensitive)
	}

	// Errors about a sensitive value never show it.
	bad := map[string]string{
		"umask":    `umask = var.secret`,
		"health":   "health {\n http = var.secret\n}",
		"tcp":      "health {\n tcp = var.secret\n}",
		"duration": "stop {\n timeout = var.secret\n}",
		"signal":   "stop {\n signal = var.secret\n}",
		"policy":   "restart {\n policy = var.secret\n}",
		"size":     "log {\n max_size = var.secret\n}",
		"envname":  `env = { ("${var.secret}=") = "x" }`,
		"rlimit":   `rlimits = { (var.secret) = 1 }`,
		"number":   `count = var.secret`,
		"tonumber": `env = { X = tonumber(var.secret) }`,
		"command":  `command = [var.secret, 1 + var.secret]`,
	}
	for name, body := range bad {
		t.Run(name, func(t *testing.T) {
			src := "variable \"secret\" {\n sensitive = true\n}\ndaemon \"x\" {\n command = [\"/bin/x\"]\n" + body + "\n}\n"
			if name == "command" {
				src = "variable \"secret\" {\n sensitive = true\n}\ndaemon \"x\" {\n" + body + "\n}\n"
			}
			_, diags := loadFiles(map[string]string{"main.hcl": src}, Options{Vars: []string{"secret=" + secret}})
			if !diags.HasErrors() {
				t.Fatalf("no error for %s", body)
			}
			for _, d := range diags {
				if strings.Contains(d.Summary+d.Detail, secret) {
					t.Errorf("the secret leaks: %s: %s", d.Summary, d.Detail)
				}
			}
		})
	}
	t.Run("validation", func(t *testing.T) {
		src := `
variable "secret" {
  sensitive = true
  validation {
    condition     = length(var.secret) < 5
    error_message = "too long: ${var.secret}"
  }
}`
		_, diags := loadFiles(map[string]string{"main.hcl": src}, Options{Vars: []string{"secret=" + secret}})
		if !diags.HasErrors() {
			t.Fatal("no error")
		}
		for _, d := range diags {
			if strings.Contains(d.Summary+d.Detail, secret) {
				t.Errorf("the secret leaks: %s: %s", d.Summary, d.Detail)
			}
		}
	})
}

const equivHCL = `
variable "port" {
  type    = number
  default = 8080
}
locals {
  bin = "/opt/bin"
}
daemon "db" {
  command = ["${local.bin}/db"]
  health {
    tcp = "127.0.0.1:5432"
  }
}
daemon "api" {
  count      = 2
  command    = ["${local.bin}/api", "--port", var.port + count.index]
  env        = { DB = daemon.db.address }
  depends_on = [daemon.db]
  restart {
    policy  = "always"
    backoff = "1s"
  }
}
`

const equivJSON = `{
  "variable": {"port": {"type": "number", "default": 8080}},
  "locals": {"bin": "/opt/bin"},
  "daemon": {
    "db": {
      "command": ["${local.bin}/db"],
      "health": {"tcp": "127.0.0.1:5432"}
    },
    "api": {
      "count": 2,
      "command": ["${local.bin}/api", "--port", "${var.port + count.index}"],
      "env": {"DB": "${daemon.db.address}"},
      "depends_on": ["daemon.db"],
      "restart": {"policy": "always", "backoff": "1s"}
    }
  }
}`

func TestJSONEquivalentToNative(t *testing.T) {
	native := load(t, map[string]string{"main.hcl": equivHCL}, Options{})
	js := load(t, map[string]string{"main.hcl.json": equivJSON}, Options{})
	if len(native.Resources) != 3 || len(js.Resources) != len(native.Resources) {
		t.Fatalf("native has %d resources, json %d", len(native.Resources), len(js.Resources))
	}
	for i, a := range native.Resources {
		b := js.Resources[i]
		a2, b2 := *a, *b
		a2.DeclRange, b2.DeclRange, a2.Ranges, b2.Ranges = hcl.Range{}, hcl.Range{}, nil, nil
		if !reflect.DeepEqual(a2, b2) {
			t.Errorf("%s differs:\nnative %+v\njson   %+v", a.Addr, a2, b2)
		}
	}
	if !reflect.DeepEqual(native.Graph.TopoOrder(), js.Graph.TopoOrder()) {
		t.Errorf("graphs differ")
	}
}

func TestGraph(t *testing.T) {
	src := `
daemon "db" {
  command = ["/bin/db"]
}
job "migrate" {
  command    = ["/bin/migrate"]
  depends_on = [daemon.db]
}
daemon "cache" {
  command = ["/bin/cache"]
}
daemon "api" {
  count      = 2
  command    = ["/bin/api"]
  env        = { CACHE = daemon.cache.address }
  depends_on = [job.migrate]
}
daemon "web" {
  command = ["/bin/web", daemon.api[0].address]
}`
	cfg := load(t, map[string]string{"main.hcl": src}, Options{})
	g := cfg.Graph
	deps := func(s string) []string { return addrStrings(g.DependenciesOf(mustAddr(t, s))) }
	rdeps := func(s string) []string { return addrStrings(g.DependentsOf(mustAddr(t, s))) }
	if got, want := deps("daemon.web"), []string{"runtime.process.default", "daemon.api[0]", "daemon.api[1]"}; !sameSet(got, want) {
		t.Errorf("deps(web) = %v, want %v", got, want)
	}
	if got, want := deps("daemon.api[1]"), []string{"runtime.process.default", "daemon.cache", "job.migrate"}; !sameSet(got, want) {
		t.Errorf("deps(api[1]) = %v, want %v", got, want)
	}
	if got, want := rdeps("job.migrate"), []string{"daemon.api[0]", "daemon.api[1]"}; !sameSet(got, want) {
		t.Errorf("dependents(migrate) = %v, want %v", got, want)
	}
	if got := rdeps("daemon.web"); len(got) != 0 {
		t.Errorf("dependents(web) = %v", got)
	}
	order := addrStrings(g.TopoOrder())
	want := []string{"runtime.process.default", "daemon.cache", "daemon.db", "job.migrate", "daemon.api[0]", "daemon.api[1]", "daemon.web"}
	if !reflect.DeepEqual(order, want) {
		t.Errorf("TopoOrder = %v\nwant %v", order, want)
	}
	for i := 0; i < 5; i++ {
		again := load(t, map[string]string{"main.hcl": src}, Options{})
		if got := addrStrings(again.Graph.TopoOrder()); !reflect.DeepEqual(got, order) {
			t.Fatalf("TopoOrder is not deterministic: %v vs %v", got, order)
		}
		if again.Graph.DOT() != g.DOT() {
			t.Fatal("DOT is not deterministic")
		}
	}
	if !strings.Contains(g.DOT(), `"daemon.web" -> "daemon.api[0]";`) {
		t.Errorf("DOT lacks an edge:\n%s", g.DOT())
	}
}

func sameSet(a, b []string) bool {
	a, b = append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(a)
	sort.Strings(b)
	return reflect.DeepEqual(a, b)
}

func TestHash(t *testing.T) {
	a := load(t, map[string]string{"main.hcl": `daemon "a" { command = ["/a"] }`}, Options{})
	a2 := load(t, map[string]string{"main.hcl": `daemon "a" { command = ["/a"] }`}, Options{})
	b := load(t, map[string]string{"main.hcl": `daemon "a" { command = ["/b"] }`}, Options{})
	c := load(t, map[string]string{"other.hcl": `daemon "a" { command = ["/a"] }`}, Options{})
	if a.Hash == "" || a.Hash != a2.Hash {
		t.Errorf("same content, hashes %q and %q", a.Hash, a2.Hash)
	}
	if a.Hash == b.Hash || a.Hash == c.Hash {
		t.Errorf("the hash does not follow content and names")
	}
}

func TestParseAddress(t *testing.T) {
	for _, s := range []string{
		"daemon.api", "daemon.api[1]", `daemon.web["eu"]`, `daemon.web["a \"b\""]`, "job.migrate",
		"module.compress", "runtime.docker.local", "daemon.api[0]",
	} {
		a, err := ParseAddress(s)
		if err != nil {
			t.Errorf("ParseAddress(%q): %v", s, err)
			continue
		}
		if a.String() != s {
			t.Errorf("ParseAddress(%q).String() = %q", s, a.String())
		}
	}
	a := mustAddr(t, `daemon.web["eu"]`)
	if a != (Address{Kind: KindDaemon, Name: "web", Key: StringKey("eu")}) || a.Block().String() != "daemon.web" {
		t.Errorf("parsed %#v", a)
	}
	for _, s := range []string{
		"", "daemon", "foo.bar", "daemon.api.x", "daemon.api[-1]", "daemon.api[1.5]", "daemon.api[true]",
		"runtime.docker", "runtime.docker.local[0].x", "daemon[0]", "daemon.api[", "var.x", "daemon.api extra",
	} {
		if a, err := ParseAddress(s); err == nil {
			t.Errorf("ParseAddress(%q) = %v, want an error", s, a)
		}
	}
}

func TestKeyOrder(t *testing.T) {
	keys := []Key{StringKey("b"), IntKey(10), NoKey, IntKey(2), StringKey("a")}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	var got []string
	for _, k := range keys {
		got = append(got, k.String())
	}
	if want := []string{"", "[2]", "[10]", `["a"]`, `["b"]`}; !reflect.DeepEqual(got, want) {
		t.Errorf("sorted keys = %q, want %q", got, want)
	}
	addrs := []Address{mustAddr(t, "runtime.docker.a"), mustAddr(t, "job.a"), mustAddr(t, "daemon.b"), mustAddr(t, "daemon.a[1]"), mustAddr(t, "daemon.a")}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i].Less(addrs[j]) })
	if got, want := addrStrings(addrs), []string{"daemon.a", "daemon.a[1]", "daemon.b", "job.a", "runtime.docker.a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("sorted addresses = %v", got)
	}
}

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{"0s": 0, "250ms": 250 * time.Millisecond, "1m30s": 90 * time.Second, "2h": 2 * time.Hour, "1.5s": 1500 * time.Millisecond}
	for s, want := range good {
		if d, err := ParseDuration(s); err != nil || d != want {
			t.Errorf("ParseDuration(%q) = %v, %v", s, d, err)
		}
	}
	for _, s := range []string{"", "5", "-1s", "+1s", "abc", " 1s", "1x", "0", "1.5"} {
		if d, err := ParseDuration(s); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", s, d)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for _, s := range []string{"SIGTERM", "term", "Term", "SIGhup", " INT "} {
		sig, err := ParseSignal(s)
		if err != nil || !strings.HasPrefix(sig.Name, "SIG") || sig.Num == 0 {
			t.Errorf("ParseSignal(%q) = %v, %v", s, sig, err)
		}
	}
	if sig, _ := ParseSignal("kill"); sig.String() != "SIGKILL" {
		t.Errorf("kill -> %s", sig)
	}
	for _, s := range []string{"", "SIG", "SIGFOO", "9", "SIGSEGV"} {
		if _, err := ParseSignal(s); err == nil {
			t.Errorf("ParseSignal(%q) succeeded", s)
		}
	}
}

func TestParseRestartPolicy(t *testing.T) {
	for _, p := range []RestartPolicy{RestartOnFailure, RestartAlways, RestartNever} {
		got, err := ParseRestartPolicy(p.String())
		if err != nil || got != p {
			t.Errorf("round trip of %s: %v, %v", p, got, err)
		}
	}
	for _, s := range []string{"", "alway", "Always", "on_failure"} {
		if _, err := ParseRestartPolicy(s); err == nil {
			t.Errorf("ParseRestartPolicy(%q) succeeded", s)
		}
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]uint64{"4096": 4096, "1B": 1, "1KB": 1000, "1KiB": 1024, "10MB": 10e6, "64MiB": 64 << 20, "2GiB": 2 << 30, "1 GB": 1e9,
		"256M": 256 << 20, "1K": 1024, "1G": 1 << 30, "1TB": 1e12, "1T": 1 << 40}
	for s, want := range good {
		if n, err := ParseSize(s); err != nil || n != want {
			t.Errorf("ParseSize(%q) = %d, %v", s, n, err)
		}
	}
	for _, s := range []string{"", "MiB", "-1", "1PB", "1m", "1.5GiB", "99999999999999999999", "9999999999999GiB"} {
		if n, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", s, n)
		}
	}
}

func TestProjectUsesVariables(t *testing.T) {
	cfg := load(t, map[string]string{"main.hcl": `
variable "env" {
  default = "staging"
}
orch {
  name      = "shop-${var.env}"
  state_dir = "${path.root}/state"
}`}, Options{})
	if cfg.Project.Name != "shop-staging" || cfg.Project.StateDir != okDir+"/state" {
		t.Errorf("project = %+v", cfg.Project)
	}
	if def := load(t, map[string]string{"main.hcl": `daemon "a" { command = ["/a"] }`}, Options{}); def.Project.Name != "ok" || def.Project.StateDir != ".orch" {
		t.Errorf("default project = %+v", def.Project)
	}
}

// intsToStrings must render numbers exactly as go-cty's own conversion.
func TestIntsToStringsMatchesConvert(t *testing.T) {
	for _, n := range []int64{0, 1, -1, 42, 8080, 1 << 40, -(1 << 62), 9223372036854775807} {
		v := cty.NumberIntVal(n)
		want, err := convertTo(v, cty.String)
		if err != nil {
			t.Fatal(err)
		}
		if got := intsToStrings(v); !got.RawEquals(want) {
			t.Errorf("%d: %#v, want %#v", n, got, want)
		}
	}
	frac := cty.NumberFloatVal(1.5)
	if got := intsToStrings(frac); !got.RawEquals(frac) {
		t.Errorf("1.5 was changed to %#v", got)
	}
	tup := cty.TupleVal([]cty.Value{cty.StringVal("a"), cty.NumberIntVal(2).Mark(sensitiveMark)})
	got := intsToStrings(tup)
	if !got.Index(cty.NumberIntVal(1)).IsMarked() || got.Index(cty.NumberIntVal(1)).Type() != cty.String {
		t.Errorf("tuple: %#v", got)
	}
}
