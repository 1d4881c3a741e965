// Package systemdtest gives tests a real systemd as PID 1 to run against:
// a Debian root file system built with debootstrap (systemd, dbus), kept
// in a cache keyed by what it is built from, imported into the local
// Docker Engine as an image (nothing is pulled), and booted as a
// container whose init is systemd. A test then runs itself inside it
// (RunSelf): the test binary and orch's binary are bind-mounted at
// /orch, and inside, the test talks to that systemd's system bus and
// reads its journal as orch would on a host.
//
// Without Docker, root or debootstrap a test is skipped, or fails when CI
// is set: CI must run it.
package systemdtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvInside is set to "1" in the environment of a test binary run inside
// the machine.
const EnvInside = "ORCH_SYSTEMD_INSIDE"

// Inside reports whether this process is a test run inside the machine.
func Inside() bool { return os.Getenv(EnvInside) == "1" }

// The root file system's recipe. Changing any of it changes the cache key
// (and so the image): the rest of the recipe is in build.
const (
	Suite    = "bookworm"
	Variant  = "minbase"
	Packages = "systemd,systemd-sysv,dbus,libpam-systemd,dbus-user-session"
	Mirror   = "http://deb.debian.org/debian"
	recipe   = "4" // bump when build changes what it makes
)

// Key identifies the image by its inputs.
func Key() string {
	sum := sha256.Sum256([]byte(strings.Join([]string{Suite, Variant, Packages, Mirror, recipe, runtime.GOARCH}, "\x00")))
	return hex.EncodeToString(sum[:])[:16]
}

// Tag is the image's name in the local Engine.
func Tag() string { return "orch-systemd-test:" + Key() }

// CacheDir is where the root file system's tarball is kept between runs:
// $ORCH_TEST_CACHE, else $XDG_CACHE_HOME/orch-test, else
// /var/cache/orch-test.
func CacheDir() string {
	if d := os.Getenv("ORCH_TEST_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "orch-test")
	}
	return "/var/cache/orch-test"
}

// unavailable skips tb, or fails it under CI.
func unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		tb.Fatalf("the systemd tests need a systemd machine, and CI must run them: %s", msg)
	}
	tb.Skipf("%s; set CI=1 to make this a failure", msg)
}

func docker(ctx context.Context, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("docker %s: %v: %s", strings.Join(args[:min(2, len(args))], " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

var image struct {
	sync.Mutex
	done bool
}

// Image makes sure the image Tag exists in the local Engine, building it
// when needed: from the cached tarball when there is one, else with
// debootstrap (about a minute on a fresh machine), and reports how long
// that took. Several test processes may ask at once: a lock file in
// CacheDir makes one build and the others wait.
func Image(tb testing.TB) string {
	tb.Helper()
	image.Lock()
	defer image.Unlock()
	if image.done {
		return Tag()
	}
	ctx := context.Background()
	if _, err := exec.LookPath("docker"); err != nil {
		unavailable(tb, "no docker command")
	}
	if _, err := docker(ctx, "version", "--format", "{{.Server.Version}}"); err != nil {
		unavailable(tb, "no Docker Engine: %v", err)
	}
	if _, err := docker(ctx, "image", "inspect", Tag()); err == nil {
		image.done = true
		return Tag()
	}
	dir := CacheDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		unavailable(tb, "cannot make the cache directory: %v", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, Key()+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		unavailable(tb, "cannot lock the cache: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		tb.Fatalf("locking %s: %v", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := docker(ctx, "image", "inspect", Tag()); err == nil { // built meanwhile
		image.done = true
		return Tag()
	}
	tarball := filepath.Join(dir, Key()+".tar")
	start := time.Now()
	if _, err := os.Stat(tarball); err != nil {
		if err := build(tb, dir, tarball); err != nil {
			tb.Fatalf("building the systemd root file system: %v", err)
		}
		tb.Logf("systemdtest: built the root file system in %s (debootstrap %s %s, %s)", time.Since(start).Round(time.Second), Suite, Variant, Packages)
	}
	t0 := time.Now()
	if _, err := docker(ctx, "import", "--change", `CMD ["/sbin/init"]`, tarball, Tag()); err != nil {
		tb.Fatalf("importing %s: %v", tarball, err)
	}
	tb.Logf("systemdtest: imported %s as %s in %s", tarball, Tag(), time.Since(t0).Round(100*time.Millisecond))
	image.done = true
	return Tag()
}

// build runs debootstrap into a directory under dir, prepares the tree to
// boot in a container, and packs it into tarball.
func build(tb testing.TB, dir, tarball string) error {
	if os.Geteuid() != 0 {
		unavailable(tb, "building the systemd image needs root (debootstrap), and %s has no cached image", dir)
	}
	bin, err := exec.LookPath("debootstrap")
	if err != nil {
		unavailable(tb, "no debootstrap (make deps installs it)")
	}
	root, err := os.MkdirTemp(dir, Key()+".rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	var log bytes.Buffer
	cmd := exec.Command(bin, "--variant="+Variant, "--include="+Packages, Suite, root, Mirror)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debootstrap: %v\n%s", err, tail(log.String(), 3000))
	}
	// Boot faster and quieter in a container: nothing to set up on the
	// console, no getty; machine-id made at boot.
	for _, u := range []string{"getty.target", "console-getty.service", "systemd-firstboot.service"} {
		_ = os.Symlink("/dev/null", filepath.Join(root, "etc/systemd/system", u))
	}
	_ = os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444)
	_ = os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("orch-systemd-test\n"), 0o644)
	// apt's caches are not needed to run.
	_ = os.RemoveAll(filepath.Join(root, "var/cache/apt/archives"))
	_ = os.RemoveAll(filepath.Join(root, "var/lib/apt/lists"))
	tmp := tarball + ".tmp"
	tar := exec.Command("tar", "--numeric-owner", "--xattrs", "-C", root, "-cf", tmp, ".")
	if out, err := tar.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tar: %v: %s", err, out)
	}
	return os.Rename(tmp, tarball)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Machine is one booted container with systemd as PID 1.
type Machine struct {
	ID string
	// Dir is the host directory mounted at /orch inside (read-only).
	Dir string
}

// Boot starts a machine from Image, waits until its systemd has finished
// booting, and stops and removes it when tb ends. The container needs the
// privileges of systemd as init: --privileged where the Engine grants it,
// else every capability the Engine may give; on a cgroup v1 host the
// host's cgroup tree is mounted writable (systemd makes its units' cgroups
// below the container's own).
func Boot(tb testing.TB) *Machine {
	tb.Helper()
	tag := Image(tb)
	dir := tb.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	name := "orch-systemd-test-" + hex.EncodeToString(rnd[:])
	removeOrphans()
	base := []string{"run", "-d", "--name", name, "--label", "org.orch.test=systemd", "--label", "org.orch.test.pid=" + strconv.Itoa(os.Getpid()),
		"--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp:exec",
		"--stop-signal", "SIGRTMIN+3", "-v", dir + ":/orch:ro", "-e", "container=docker"}
	var st syscall.Statfs_t
	if syscall.Statfs("/sys/fs/cgroup", &st) == nil && st.Type != 0x63677270 { // not cgroup2: v1 or hybrid
		base = append(base, "-v", "/sys/fs/cgroup:/sys/fs/cgroup")
	} else {
		base = append(base, "--cgroupns=private")
	}
	ctx := context.Background()
	var errs []string
	var id string
	for _, priv := range [][]string{
		{"--privileged"},
		// An Engine that lacks a capability itself (CAP_SYS_RESOURCE in
		// some sandboxes) cannot grant --privileged.
		{"--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
			"--device-cgroup-rule", "a *:* rwm"},
	} {
		args := append(append(append([]string{}, base...), priv...), tag, "/sbin/init")
		out, err := docker(ctx, args...)
		if err == nil {
			id = strings.TrimSpace(string(out))
			break
		}
		errs = append(errs, err.Error())
		docker(ctx, "rm", "-f", name)
	}
	if id == "" {
		tb.Fatalf("cannot start a container with systemd as init: %s", strings.Join(errs, "; "))
	}
	m := &Machine{ID: id, Dir: dir}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		docker(ctx, "stop", "-t", "20", id)
		docker(ctx, "rm", "-f", "-v", id)
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, _ := docker(ctx, "exec", id, "systemctl", "is-system-running")
		s := strings.TrimSpace(string(out))
		if s == "running" || s == "degraded" {
			break
		}
		if time.Now().After(deadline) {
			logs, _ := exec.Command("docker", "logs", "--tail", "40", id).CombinedOutput()
			tb.Fatalf("systemd in %s did not finish booting (state %q):\n%s", name, s, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return m
}

// removeOrphans removes the machines of test processes that are gone
// (killed before their cleanup ran).
func removeOrphans() {
	out, err := docker(context.Background(), "ps", "-a", "--filter", "label=org.orch.test=systemd", "--format", `{{.ID}} {{.Label "org.orch.test.pid"}}`)
	if err != nil {
		return
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		if pid, err := strconv.Atoi(f[1]); err == nil && pid > 0 && syscall.Kill(pid, 0) == syscall.ESRCH {
			docker(context.Background(), "rm", "-f", "-v", f[0])
		}
	}
}

// Exec runs a command in the machine and returns its combined output.
func (m *Machine) Exec(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"exec", m.ID}, args...)...)
	return cmd.CombinedOutput()
}

// Put copies the host file src into the machine's /orch as name.
func (m *Machine) Put(tb testing.TB, src, name string) {
	tb.Helper()
	in, err := os.Open(src)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(filepath.Join(m.Dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
}

// ModuleRoot is the directory of orch's go.mod.
func ModuleRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..", "..")
}

// BuildOrch builds orch's binary into the machine's /orch/orch: as go
// builds it by default when that runs in the machine (the same C library;
// and the build cache is shared with the other tests), else static.
func (m *Machine) BuildOrch(tb testing.TB) {
	tb.Helper()
	out := filepath.Join(m.Dir, "orch")
	for _, env := range [][]string{nil, {"CGO_ENABLED=0"}} {
		cmd := exec.Command("go", "build", "-o", out, "./cmd/orch")
		cmd.Dir = ModuleRoot()
		cmd.Env = append(os.Environ(), env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("building orch: %v\n%s", err, b)
		}
		if _, err := m.Exec(context.Background(), "/orch/orch", "version"); err == nil {
			return
		}
	}
	tb.Fatal("orch's binary does not run in the systemd machine")
}

// RunSelf runs this test binary inside the machine with args (such as
// -test.run=^TestSystemd$), its output passed on to this process's, and
// fails tb when it fails. The binary as built by go test is used when it
// runs there (the same C library); else pkg is built again, static.
func (m *Machine) RunSelf(tb testing.TB, pkg string, args ...string) string {
	tb.Helper()
	m.Put(tb, os.Args[0], "test.bin")
	ctx := context.Background()
	if out, err := m.Exec(ctx, "/orch/test.bin", "-test.list=^$"); err != nil {
		tb.Logf("the test binary does not run in the machine (%v: %s); building it static", err, bytes.TrimSpace(out))
		cmd := exec.Command("go", "test", "-c", "-o", filepath.Join(m.Dir, "test.bin"), pkg)
		cmd.Dir = ModuleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("building %s: %v\n%s", pkg, err, out)
		}
	}
	env := []string{"-e", EnvInside + "=1", "-e", "CI=" + os.Getenv("CI"), "-e", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"-e", "HOME=/root", "-e", "GOTRACEBACK=all", "-w", "/tmp"}
	cmd := exec.Command("docker", append(append(append([]string{"exec"}, env...), m.ID, "/orch/test.bin"), args...)...)
	var buf bytes.Buffer
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			buf.WriteString(line + "\n")
			fmt.Fprintln(os.Stdout, "    [in systemd] "+line)
		}
	}()
	err := cmd.Run()
	pw.Close()
	<-done
	if err != nil {
		var fails []string
		for _, l := range strings.Split(buf.String(), "\n") {
			if strings.Contains(l, "--- FAIL") {
				fails = append(fails, strings.TrimSpace(l))
			}
		}
		tb.Fatalf("the tests inside the systemd machine failed (%v): %s", err, strings.Join(fails, "; "))
	}
	return buf.String()
}
