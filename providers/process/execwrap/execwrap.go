// Package execwrap is the process runtime's exec wrapper: what orch does,
// as `orch __exec ...`, between the fork of a daemon and its program, when
// Go's SysProcAttr cannot (a umask, resource limits, cgroup v1 joins, a
// change of user after them, and the working directory entered as that
// user). The provider renders the arguments (Spec.Args); the wrapper
// parses them (Parse) and runs (Main).
//
// It runs before the rest of orch starts: its init, when the program's
// first argument is Arg, does the work and executes the daemon, so the
// wrapper costs Go's runtime start and the standard library's inits, not
// those of every package orch links (the Docker, etcd, gRPC and protobuf
// clients: 50 ms of CPU and 77 ms of wall time per start on a machine
// where this takes 14 and 16). Go initialises packages in the order of
// their import paths, each once its imports are (the Go specification,
// "Package initialization"): this module's path, 0orch/execwrap, sorts
// before every other, so its init runs as soon as the few standard
// packages it imports have. It is a module of its own for that path
// (go.mod replaces it with this directory), and it imports nothing but
// the standard library.
package execwrap

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"syscall"
)

// Arg is the hidden first argument that makes orch the exec wrapper.
const Arg = "__exec"

// HelperEnv is set in the environment of the helpers the process
// provider starts; the wrapper removes it before it executes the daemon.
const HelperEnv = "ORCH_PROCESS_HELPER"

// Resources maps the resource limit names the configuration accepts
// (rlimits) to Linux's resource numbers.
var Resources = map[string]int{
	"cpu":     0,
	"fsize":   1,
	"data":    2,
	"stack":   3,
	"core":    4,
	"nproc":   6,
	"nofile":  7,
	"memlock": 8,
	"as":      9,
}

func init() {
	if len(os.Args) > 1 && os.Args[1] == Arg {
		os.Exit(Main(os.Args[2:])) // returns only when it failed
	}
}

// Spec is what the wrapper does before it executes the daemon.
type Spec struct {
	Umask    int // -1: leave it
	Rlimits  map[string]uint64
	Cred     *syscall.Credential
	StatusFD int               // -1: none
	Cgroups  map[string]string // v1 controller -> cgroup directory to join
	Path     string
	Argv     []string
}

// Args renders the wrapper's arguments (after Arg).
func (s Spec) Args() []string {
	var a []string
	if s.Umask >= 0 {
		a = append(a, "--umask", octal4(s.Umask))
	}
	names := make([]string, 0, len(s.Rlimits))
	for n := range s.Rlimits {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		a = append(a, "--rlimit", n+"="+strconv.FormatUint(s.Rlimits[n], 10))
	}
	if s.Cred != nil {
		c := strconv.FormatUint(uint64(s.Cred.Uid), 10) + ":" + strconv.FormatUint(uint64(s.Cred.Gid), 10)
		if len(s.Cred.Groups) > 0 {
			gs := make([]string, len(s.Cred.Groups))
			for i, g := range s.Cred.Groups {
				gs[i] = strconv.FormatUint(uint64(g), 10)
			}
			c += ":" + join(gs, ",")
		}
		a = append(a, "--cred", c)
	}
	if s.StatusFD >= 0 {
		a = append(a, "--status-fd", strconv.Itoa(s.StatusFD))
	}
	ctls := make([]string, 0, len(s.Cgroups))
	for c := range s.Cgroups {
		ctls = append(ctls, c)
	}
	slices.Sort(ctls)
	for _, c := range ctls {
		a = append(a, "--cgroup", c+"="+s.Cgroups[c])
	}
	a = append(a, "--", s.Path)
	return append(a, s.Argv...)
}

// Parse parses the wrapper's arguments (after Arg).
func Parse(args []string) (Spec, error) {
	s := Spec{Umask: -1, StatusFD: -1, Rlimits: map[string]uint64{}}
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			args = args[1:]
			break
		}
		if len(args) < 2 {
			return s, errors.New(a + " needs a value")
		}
		v := args[1]
		args = args[2:]
		switch a {
		case "--umask":
			m, err := strconv.ParseUint(v, 8, 32)
			if err != nil || m > 0o777 {
				return s, errors.New("bad --umask " + strconv.Quote(v))
			}
			s.Umask = int(m)
		case "--rlimit":
			n, val, ok := cut(v, "=")
			if _, known := Resources[n]; !ok || !known {
				return s, errors.New("bad --rlimit " + strconv.Quote(v))
			}
			u, err := strconv.ParseUint(val, 10, 64)
			if err != nil {
				return s, errors.New("bad --rlimit " + strconv.Quote(v))
			}
			s.Rlimits[n] = u
		case "--cred":
			parts := split(v, ":")
			if len(parts) < 2 || len(parts) > 3 {
				return s, errors.New("bad --cred " + strconv.Quote(v))
			}
			uid, err1 := strconv.ParseUint(parts[0], 10, 32)
			gid, err2 := strconv.ParseUint(parts[1], 10, 32)
			if err1 != nil || err2 != nil {
				return s, errors.New("bad --cred " + strconv.Quote(v))
			}
			c := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
			if len(parts) == 3 && parts[2] != "" {
				for _, g := range split(parts[2], ",") {
					u, err := strconv.ParseUint(g, 10, 32)
					if err != nil {
						return s, errors.New("bad --cred " + strconv.Quote(v))
					}
					c.Groups = append(c.Groups, uint32(u))
				}
			}
			s.Cred = c
		case "--cgroup":
			c, dir, ok := cut(v, "=")
			if !ok || c == "" || !hasPrefix(dir, "/") {
				return s, errors.New("bad --cgroup " + strconv.Quote(v))
			}
			if s.Cgroups == nil {
				s.Cgroups = map[string]string{}
			}
			s.Cgroups[c] = dir
		case "--status-fd":
			fd, err := strconv.Atoi(v)
			if err != nil || fd < 0 {
				return s, errors.New("bad --status-fd " + strconv.Quote(v))
			}
			s.StatusFD = fd
		default:
			return s, errors.New("unknown option " + strconv.Quote(a))
		}
	}
	if len(args) < 2 {
		return s, errors.New("usage: " + Arg + " [--umask OOOO] [--rlimit NAME=N]... [--cred UID:GID[:G,...]] [--status-fd FD] [--cgroup CONTROLLER=DIR]... -- PATH ARGV0 [ARG...]")
	}
	s.Path, s.Argv = args[0], args[1:]
	return s, nil
}

// Main is the exec wrapper, run as `orch __exec ARGS` (args excludes
// Arg):
//
//	__exec [--umask OOOO] [--rlimit NAME=N]... [--cred UID:GID[:G,G...]]
//	       [--status-fd FD] [--cgroup CONTROLLER=DIR]... -- PATH ARGV0 [ARG...]
//
// It joins the v1 cgroups, sets the umask and the resource limits (soft
// and hard to N), then the groups, group id and user id, enters the
// working directory again as that user, and executes PATH with argv ARGV0
// ARG... in the same process (same pid, same start time), with its
// environment minus HelperEnv. Go's SysProcAttr can set neither a umask
// nor rlimits, and changing orch's own umask around a fork races with
// every other goroutine, hence this wrapper. On failure it writes the
// reason to status FD (close-on-exec, so a successful exec closes it
// silently) and to stderr, and returns 127. It returns only on failure.
func Main(args []string) int {
	s, err := Parse(args)
	if err == nil {
		err = s.apply()
	}
	if err == nil {
		env := os.Environ()
		kept := env[:0]
		for _, kv := range env {
			if !hasPrefix(kv, HelperEnv+"=") {
				kept = append(kept, kv)
			}
		}
		err = syscall.Exec(s.Path, s.Argv, kept)
		err = wrap("exec "+s.Path, err)
	}
	msg := "orch " + Arg + ": " + err.Error()
	if s.StatusFD >= 0 {
		syscall.Write(s.StatusFD, []byte(msg))
	}
	os.Stderr.WriteString(msg + "\n")
	return 127
}

func (s Spec) apply() error {
	if s.StatusFD >= 0 {
		// Closed by a successful exec: the provider reads EOF and knows
		// the daemon runs.
		syscall.CloseOnExec(s.StatusFD)
	}
	// First, while still orch's user: the cgroup files are orch's.
	for _, d := range s.Cgroups {
		if err := joinCgroup(d); err != nil {
			return wrap(`cgroup: write "0"`, err)
		}
	}
	if s.Umask >= 0 {
		syscall.Umask(s.Umask)
	}
	for n, v := range s.Rlimits {
		lim := syscall.Rlimit{Cur: v, Max: v}
		// syscall.Setrlimit so that Go does not restore its saved
		// RLIMIT_NOFILE on exec.
		if err := syscall.Setrlimit(Resources[n], &lim); err != nil {
			return wrap("setrlimit "+n+"="+strconv.FormatUint(v, 10), err)
		}
	}
	if c := s.Cred; c != nil {
		// The working directory was entered as orch's user (the wrapper's
		// own); it is entered again as the daemon's, as a start without
		// the wrapper does (Go changes the user before the directory), so
		// that a directory closed to the daemon's user fails both alike.
		wd, err := os.Getwd()
		if err != nil {
			return wrap("working directory", err)
		}
		groups := make([]int, len(c.Groups))
		for i, g := range c.Groups {
			groups[i] = int(g)
		}
		if err := syscall.Setgroups(groups); err != nil {
			return wrap("setgroups", err)
		}
		if err := syscall.Setgid(int(c.Gid)); err != nil {
			return wrap("setgid "+strconv.FormatUint(uint64(c.Gid), 10), err)
		}
		if err := syscall.Setuid(int(c.Uid)); err != nil {
			return wrap("setuid "+strconv.FormatUint(uint64(c.Uid), 10), err)
		}
		if err := syscall.Chdir(wd); err != nil {
			return wrap("chdir "+wd, err)
		}
	}
	return nil
}

// joinCgroup moves this process into the v1 cgroup directory d.
func joinCgroup(d string) error {
	f, err := os.OpenFile(d+"/cgroup.procs", os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte("0"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// The helpers below stand for fmt and strings, which this package does not
// import: they import unicode (and fmt reflect), which sort late and would
// be initialised before this package, and with them every package that
// sorts before them.

// wrap is err after what, as fmt.Errorf("%s: %w") would make it.
func wrap(what string, err error) error { return &wrapped{what, err} }

type wrapped struct {
	what string
	err  error
}

func (w *wrapped) Error() string { return w.what + ": " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

// octal4 is m as four octal digits ("0077").
func octal4(m int) string {
	o := strconv.FormatInt(int64(m), 8)
	for len(o) < 4 {
		o = "0" + o
	}
	return o
}

func cut(s, sep string) (before, after string, found bool) {
	for i := 0; i+len(sep) <= len(s); i++ {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

func split(s, sep string) []string {
	var out []string
	for {
		b, a, ok := cut(s, sep)
		out = append(out, b)
		if !ok {
			return out
		}
		s = a
	}
}

func join(parts []string, sep string) string {
	out := ""
	for i, p := range parts {
		if i > 0 {
			out += sep
		}
		out += p
	}
	return out
}

func hasPrefix(s, prefix string) bool { return len(s) >= len(prefix) && s[:len(prefix)] == prefix }
