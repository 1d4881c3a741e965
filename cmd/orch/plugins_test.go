package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// filesPlugin returns the example provider plugin, built once per test
// binary (examplePlugins).
func filesPlugin(t *testing.T) string {
	t.Helper()
	return filepath.Join(examplePlugins(t), "orch-provider-files")
}

// providerExample lays out examples/plugins/provider/main.hcl (or src) in
// a fresh directory, with the plugin at ../bin as the example expects,
// and returns the configuration directory.
func providerExample(t *testing.T, src string) string {
	t.Helper()
	top := t.TempDir()
	dir := filepath.Join(top, "provider")
	for _, d := range []string{dir, filepath.Join(top, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if src == "" {
		b, err := os.ReadFile("../../examples/plugins/provider/main.hcl")
		if err != nil {
			t.Fatal(err)
		}
		src = string(b)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filesPlugin(t), filepath.Join(top, "bin", "orch-provider-files")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pluginProcs counts the processes running the plugin executable at path.
func pluginProcs(t *testing.T, path string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && exe == path {
			n++
		}
	}
	return n
}

func fileInode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// The example provider plugin's configuration, run by orch itself: each
// command launches the plugin (validated by its schema), and kills it when
// it exits; a later orch observes the files again and creates none twice;
// an edit of content is an update in place, of filename a replacement.
func TestProviderPluginExample(t *testing.T) {
	dir := providerExample(t, "")
	bin := filepath.Join(filepath.Dir(dir), "bin", "orch-provider-files")
	out := filepath.Join(dir, "out")
	orch(t, dir, nil, "validate").want(t, 0)
	r := orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	if !strings.Contains(r.stdout, "Apply complete! Resources: 2 added") {
		t.Fatalf("apply:\n%s", r.stdout)
	}
	if b, err := os.ReadFile(filepath.Join(out, "daemon.greeting")); err != nil || string(b) != "hello from orch\n" {
		t.Fatalf("greeting: %q, %v", b, err)
	}
	motd := filepath.Join(out, "motd.txt")
	if st, err := os.Stat(motd); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("motd: %v, %v", st, err)
	}
	ino := fileInode(t, motd)
	if n := pluginProcs(t, bin); n != 0 {
		t.Fatalf("%d plugin processes outlive orch", n)
	}

	// A new orch: the plugin runs again, observes, and nothing changes.
	orch(t, dir, nil, "plan", "-detailed-exitcode").want(t, 0)
	s := status(t, dir)
	if s["daemon.greeting"].State != "running" || s["daemon.motd"].State != "running" {
		t.Fatalf("status %+v", s)
	}

	// content changes in place; filename forces a replacement.
	src, _ := os.ReadFile(filepath.Join(dir, "main.hcl"))
	edited := strings.Replace(string(src), "the files runtime keeps this file as declared", "edited", 1)
	os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(edited), 0o644)
	r = orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	if !strings.Contains(r.stdout, "1 to change") {
		t.Fatalf("apply of an edit:\n%s", r.stdout)
	}
	if b, _ := os.ReadFile(motd); string(b) != "edited\n" || fileInode(t, motd) != ino {
		t.Fatalf("motd after update: %q (inode %d, was %d)", b, fileInode(t, motd), ino)
	}
	edited = strings.Replace(edited, `filename = "motd.txt"`, `filename = "motd"`, 1)
	os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(edited), 0o644)
	r = orch(t, dir, nil, "plan").want(t, 0)
	if !strings.Contains(r.stdout, "must be replaced") && !strings.Contains(r.stdout, "-/+") {
		t.Fatalf("plan of a filename change:\n%s", r.stdout)
	}
	orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	if _, err := os.Stat(motd); !os.IsNotExist(err) {
		t.Fatalf("the old file stays: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "motd")); err != nil {
		t.Fatal(err)
	}

	orch(t, dir, nil, "destroy", "-auto-approve").want(t, 0)
	if left, _ := filepath.Glob(filepath.Join(out, "*")); len(left) != 0 {
		t.Fatalf("destroy left %v", left)
	}
	if n := pluginProcs(t, bin); n != 0 {
		t.Fatalf("%d plugin processes outlive orch", n)
	}
}

// Bad plugin configurations: one clear error each, at the block.
func TestProviderPluginErrors(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string
	}{
		{"unknown attribute", `runtime "files" "local" {
  plugin = "../bin/orch-provider-files"
  root   = "/tmp/x"
}
daemon "a" {
  runtime = runtime.files.local
  content = "x"
  colour  = "red"
}
`, []string{"on main.hcl line 8", "Unsupported argument", `"colour"`}},
		{"wrong checksum", `runtime "files" "local" {
  plugin = "../bin/orch-provider-files"
  sha256 = "` + strings.Repeat("0", 64) + `"
  root   = "/tmp/x"
}
`, []string{"on main.hcl line 1", "Provider plugin failed", "runtime.files.local", strings.Repeat("0", 64), "the file's is"}},
		{"two plugins for a kind", `runtime "files" "a" {
  plugin = "../bin/orch-provider-files"
  root   = "/tmp/x"
}
runtime "files" "b" {
  plugin = "./orch-provider-files-2"
  root   = "/tmp/y"
}
`, []string{"on main.hcl line 5", "Two plugins for one runtime kind", "runtime.files.b"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := providerExample(t, c.src)
			os.Link(filesPlugin(t), filepath.Join(dir, "orch-provider-files-2"))
			r := orch(t, dir, nil, "validate").want(t, 1)
			for _, w := range c.want {
				if !strings.Contains(r.stderr+r.stdout, w) {
					t.Fatalf("validate does not say %q:\n%s%s", w, r.stdout, r.stderr)
				}
			}
		})
	}
}

// orch up with a provider plugin: the engine watches through the plugin
// (a removed file is started again by its restart policy); after orch up
// is killed, the plugin exits with it, and a new orch up relaunches it,
// observes the file again and creates nothing twice; Ctrl-C stops it all.
func TestProviderPluginUp(t *testing.T) {
	bin := filesPlugin(t)
	e := newEngineTest(t, `runtime "files" "local" {
  plugin = "`+bin+`"
  root   = "${path.root}/out"
}

daemon "a" {
  runtime = runtime.files.local
  content = "a"
  restart {
    backoff = "50ms"
  }
}
`)
	p := e.start("up")
	fileRunning(e, p)
	path := filepath.Join(e.dir, "out", "daemon.a")
	ino := fileInode(t, path)
	os.Remove(path)
	e.waitFor(p, "the file started again", func() bool {
		_, err := os.Stat(path)
		return err == nil && strings.Count(p.output(), `"type":"started"`) == 2
	})
	fileRunning(e, p)
	ino = fileInode(t, path)
	if n := pluginProcs(t, bin); n != 1 {
		t.Fatalf("%d plugin processes, want 1", n)
	}

	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	e.waitFor(nil, "the plugin to exit with orch", func() bool { return pluginProcs(t, bin) == 0 })

	p2 := e.start("up")
	fileRunning(e, p2)
	if got := fileInode(t, path); got != ino || strings.Contains(p2.output(), `"type":"started"`) {
		t.Fatalf("the file was created again after the restart (inode %d, was %d)\n%s", got, ino, p2.output())
	}
	p2.cmd.Process.Signal(syscall.SIGTERM)
	<-p2.exited
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("orch up stopped, the file stays: %v\n%s", err, p2.output())
	}
	e.waitFor(nil, "the plugin to exit", func() bool { return pluginProcs(t, bin) == 0 })
}

// fileRunning waits until daemon.a runs, supervised (a file has no pid).
func fileRunning(e *engineTest, p *engineProc) {
	e.t.Helper()
	e.waitFor(p, "daemon.a running", func() bool {
		s := e.status()["daemon.a"]
		return s.State == "running" && s.Supervised
	})
}
