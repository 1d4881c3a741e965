package planner

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/hashicorp/hcl/v2"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
	"github.com/zclconf/go-cty/cty"
	"golang.org/x/tools/txtar"
)

var update = flag.Bool("update", false, "rewrite the expected plans of testdata/plans")

var testSchemas = map[string]spec.RuntimeSchema{
	"process": {Kind: "process", CommandRequired: true},
	"docker": {
		Kind: "docker",
		Daemon: []spec.AttrSchema{
			{Name: "image", Type: cty.String, Required: true, ForcesReplacement: true},
			{Name: "memory", Type: cty.String},
			{Name: "token", Type: cty.String, Sensitive: true},
		},
	},
}

const testDir = "/project"

func load(t testing.TB, src string, vars []string) *spec.Config {
	t.Helper()
	fsys := fstest.MapFS{"main.hcl": {Data: []byte(src)}, "mod.wasm": {Data: []byte("\x00asm")}}
	cfg, diags := spec.LoadFS(fsys, testDir, spec.Options{Schemas: testSchemas, Vars: vars})
	if diags.HasErrors() {
		t.Fatalf("config does not load: %s", diags.Error())
	}
	return cfg
}

// storedFrom applies cfg on paper: every instance becomes a stored record
// with a fake handle, as if an apply had succeeded.
func storedFrom(cfg *spec.Config) map[spec.Address]*Stored {
	out := map[spec.Address]*Stored{}
	for i, r := range cfg.Resources {
		var schema *spec.RuntimeSchema
		if rt := cfg.Runtime(r.Runtime); rt != nil {
			s := testSchemas[rt.Kind]
			schema = &s
		}
		snap := SnapshotOf(r, cfg.Graph.DependenciesOf(r.Addr), schema)
		// round trip through the stored form, as the executor does
		snap, err := DecodeSnapshot(snap.Encode())
		if err != nil {
			panic(err)
		}
		out[r.Addr] = &Stored{Addr: r.Addr, Snapshot: snap, ConfigHash: snap.Hash(),
			Handle: providers.Handle(fmt.Sprintf(`{"pid":%d}`, 1000+i)), Status: StatusRunning}
	}
	return out
}

type goldenCase struct {
	in      Input
	archive *txtar.Archive
}

func parseCase(t *testing.T, path string) goldenCase {
	ar, err := txtar.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	for _, f := range ar.Files {
		sections[f.Name] = string(f.Data)
	}
	var vars []string
	for _, l := range strings.Split(strings.TrimSpace(sections["vars"]), "\n") {
		if l != "" {
			vars = append(vars, l)
		}
	}
	in := Input{Schemas: testSchemas, Stored: map[spec.Address]*Stored{}, Observed: map[spec.Address]providers.Observed{},
		Adoptable: map[spec.Address]providers.Adoptable{}}
	in.Config = load(t, sections["config"], vars)
	if a, ok := sections["applied"]; ok {
		in.Stored = storedFrom(load(t, a, vars))
	}
	for addr, st := range in.Stored {
		in.Observed[addr] = providers.Observed{State: providers.StateRunning, Pid: pidOf(st.Handle)}
	}
	for _, line := range strings.Split(sections["observed"], "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		addr, err := spec.ParseAddress(f[0])
		if err != nil {
			t.Fatal(err)
		}
		o := providers.Observed{}
		switch f[1] {
		case "running":
			o.State, o.Pid = providers.StateRunning, 4242
		case "exited":
			o.State = providers.StateExited
			if len(f) > 2 {
				o.ExitCode, _ = strconv.Atoi(f[2])
			}
		case "killed":
			o.State, o.Signal = providers.StateExited, f[2]
		case "missing":
			o.State = providers.StateMissing
		case "unknown":
			o.State = providers.StateUnknown
		case "status":
			// "addr status failed": the stored status
			in.Stored[addr].Status = ParseStatus(f[2])
			continue
		default:
			t.Fatalf("unknown observed state %q", f[1])
		}
		in.Observed[addr] = o
	}
	for _, line := range strings.Split(sections["adoptable"], "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		addr, _ := spec.ParseAddress(f[0])
		ad := providers.Adoptable{Addr: addr, Handle: providers.Handle(`{"pid":777}`),
			Observed: providers.Observed{State: providers.StateRunning, Pid: 777}}
		if f[1] == "same" {
			r := in.Config.Resource(addr)
			s := testSchemas["process"]
			ad.ConfigHash = SnapshotOf(r, in.Config.Graph.DependenciesOf(addr), &s).Hash()
		} else {
			ad.ConfigHash = "0000"
		}
		in.Adoptable[addr] = ad
	}
	in.Destroy = strings.Contains(sections["options"], "destroy")
	return goldenCase{in: in, archive: ar}
}

func pidOf(h providers.Handle) int {
	var pid int
	fmt.Sscanf(string(h), `{"pid":%d}`, &pid)
	return pid
}

func renderDiags(d hcl.Diagnostics) string {
	var b strings.Builder
	for _, x := range d {
		fmt.Fprintf(&b, "%s: %s", x.Subject, x.Summary)
		b.WriteString("\n")
	}
	return b.String()
}

func TestGoldenPlans(t *testing.T) {
	files, _ := filepath.Glob("testdata/plans/*.txtar")
	if len(files) < 30 {
		t.Fatalf("want at least 30 golden plans, have %d", len(files))
	}
	sort.Strings(files)
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			gc := parseCase(t, path)
			p, diags := Make(gc.in)
			got := map[string]string{"plan": Render(p, RenderOptions{})}
			if len(diags) > 0 {
				got["diags"] = renderDiags(diags)
			}
			// Determinism: the same input renders the same plan.
			p2, _ := Make(gc.in)
			if Render(p2, RenderOptions{}) != got["plan"] || p2.Fingerprint != p.Fingerprint {
				t.Fatal("planning the same input twice gave different plans")
			}
			if *update {
				var files []txtar.File
				for _, f := range gc.archive.Files {
					if f.Name != "plan" && f.Name != "diags" {
						files = append(files, f)
					}
				}
				files = append(files, txtar.File{Name: "plan", Data: []byte(got["plan"])})
				if got["diags"] != "" {
					files = append(files, txtar.File{Name: "diags", Data: []byte(got["diags"])})
				}
				gc.archive.Files = files
				if err := os.WriteFile(path, txtar.Format(gc.archive), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			for _, f := range gc.archive.Files {
				if f.Name == "plan" || f.Name == "diags" {
					if want := string(f.Data); got[f.Name] != want {
						t.Errorf("%s differs (run go test ./planner -update and review the diff)\n--- got\n%s\n--- want\n%s", f.Name, got[f.Name], want)
					}
					delete(got, f.Name)
				}
			}
			if got["diags"] != "" {
				t.Errorf("unexpected diagnostics:\n%s", got["diags"])
			}
		})
	}
}

// TestSecretsNeverStored: what the executor writes to state holds no
// sensitive value, yet a change of the secret is still a change.
func TestSecretsNeverStored(t *testing.T) {
	src := `variable "pass" {
  type      = string
  sensitive = true
}
daemon "db" {
  command = ["/bin/db", "--password", var.pass]
  env     = { PASSWORD = var.pass, USER = "app" }
}
`
	cfgA := load(t, src, []string{"pass=hunter2-secret"})
	cfgB := load(t, src, []string{"pass=other-secret"})
	r := cfgA.Resources[0]
	a := SnapshotOf(r, nil, nil)
	b := SnapshotOf(cfgB.Resources[0], nil, nil)
	enc := string(a.Encode())
	if strings.Contains(enc, "hunter2") {
		t.Fatalf("the stored snapshot holds the secret: %s", enc)
	}
	if !strings.Contains(enc, `"app"`) {
		t.Fatalf("non-sensitive values must stay readable: %s", enc)
	}
	if a.Hash() == b.Hash() {
		t.Fatal("changing a secret does not change the config hash")
	}
	p, _ := Make(Input{Config: cfgB, Schemas: testSchemas, Stored: map[spec.Address]*Stored{r.Addr: {Addr: r.Addr, Snapshot: a, ConfigHash: a.Hash()}},
		Observed: map[spec.Address]providers.Observed{r.Addr: {State: providers.StateRunning}}})
	out := Render(p, RenderOptions{})
	if strings.Contains(out, "secret") || !strings.Contains(out, "must be replaced") {
		t.Fatalf("plan:\n%s", out)
	}
	js, _ := json.Marshal(ToJSON(p))
	if strings.Contains(string(js), "secret") {
		t.Fatalf("json plan holds the secret: %s", js)
	}
}
