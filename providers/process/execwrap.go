package process

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers/cgroup"
)

// ExecArg is the hidden first argument that makes orch run ExecMain.
const ExecArg = "__exec"

// LogdArg is the hidden first argument that makes orch run LogdMain.
const LogdArg = "__logd"

// HelperEnv is set in the environment of the helpers the provider starts
// (ORCH_PROCESS_HELPER=exec or logd). The exec wrapper removes it before it
// executes the daemon. The provider refuses to start helpers when it finds
// the variable in its own environment: that means <self> did not dispatch
// the helper argument and is running its normal code (a test binary without
// the TestMain hook, say), which must not recurse.
const HelperEnv = "ORCH_PROCESS_HELPER"

// HelperMain runs the helper named by args[0] (ExecArg or LogdArg) with the
// rest of args and returns its exit code and true; it returns false when
// args[0] names no helper. cmd/orch calls it first thing:
//
//	if code, ok := process.HelperMain(os.Args[1:]); ok {
//		os.Exit(code)
//	}
func HelperMain(args []string) (int, bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case ExecArg:
		return ExecMain(args[1:]), true
	case LogdArg:
		return LogdMain(args[1:]), true
	}
	return 0, false
}

// rlimitResources maps the names spec.RlimitNames accepts to resources.
var rlimitResources = map[string]int{
	"as":      unix.RLIMIT_AS,
	"core":    unix.RLIMIT_CORE,
	"cpu":     unix.RLIMIT_CPU,
	"data":    unix.RLIMIT_DATA,
	"fsize":   unix.RLIMIT_FSIZE,
	"memlock": unix.RLIMIT_MEMLOCK,
	"nofile":  unix.RLIMIT_NOFILE,
	"nproc":   unix.RLIMIT_NPROC,
	"stack":   unix.RLIMIT_STACK,
}

// execSpec is what the exec wrapper does before it executes the daemon.
type execSpec struct {
	umask    int // -1: leave it
	rlimits  map[string]uint64
	cred     *syscall.Credential
	statusFD int               // -1: none
	cgroups  map[string]string // v1 controller -> cgroup directory to join
	path     string
	argv     []string
}

// args renders the wrapper's arguments (after ExecArg).
func (s execSpec) args() []string {
	var a []string
	if s.umask >= 0 {
		a = append(a, "--umask", fmt.Sprintf("%04o", s.umask))
	}
	names := make([]string, 0, len(s.rlimits))
	for n := range s.rlimits {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a = append(a, "--rlimit", n+"="+strconv.FormatUint(s.rlimits[n], 10))
	}
	if s.cred != nil {
		c := fmt.Sprintf("%d:%d", s.cred.Uid, s.cred.Gid)
		if len(s.cred.Groups) > 0 {
			gs := make([]string, len(s.cred.Groups))
			for i, g := range s.cred.Groups {
				gs[i] = strconv.FormatUint(uint64(g), 10)
			}
			c += ":" + strings.Join(gs, ",")
		}
		a = append(a, "--cred", c)
	}
	if s.statusFD >= 0 {
		a = append(a, "--status-fd", strconv.Itoa(s.statusFD))
	}
	ctls := make([]string, 0, len(s.cgroups))
	for c := range s.cgroups {
		ctls = append(ctls, c)
	}
	sort.Strings(ctls)
	for _, c := range ctls {
		a = append(a, "--cgroup", c+"="+s.cgroups[c])
	}
	a = append(a, "--", s.path)
	return append(a, s.argv...)
}

func parseExecArgs(args []string) (execSpec, error) {
	s := execSpec{umask: -1, statusFD: -1, rlimits: map[string]uint64{}}
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			args = args[1:]
			break
		}
		if len(args) < 2 {
			return s, fmt.Errorf("%s needs a value", a)
		}
		v := args[1]
		args = args[2:]
		switch a {
		case "--umask":
			m, err := strconv.ParseUint(v, 8, 32)
			if err != nil || m > 0o777 {
				return s, fmt.Errorf("bad --umask %q", v)
			}
			s.umask = int(m)
		case "--rlimit":
			n, val, ok := strings.Cut(v, "=")
			if _, known := rlimitResources[n]; !ok || !known {
				return s, fmt.Errorf("bad --rlimit %q", v)
			}
			u, err := strconv.ParseUint(val, 10, 64)
			if err != nil {
				return s, fmt.Errorf("bad --rlimit %q", v)
			}
			s.rlimits[n] = u
		case "--cred":
			parts := strings.Split(v, ":")
			if len(parts) < 2 || len(parts) > 3 {
				return s, fmt.Errorf("bad --cred %q", v)
			}
			uid, err1 := strconv.ParseUint(parts[0], 10, 32)
			gid, err2 := strconv.ParseUint(parts[1], 10, 32)
			if err1 != nil || err2 != nil {
				return s, fmt.Errorf("bad --cred %q", v)
			}
			c := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
			if len(parts) == 3 && parts[2] != "" {
				for _, g := range strings.Split(parts[2], ",") {
					u, err := strconv.ParseUint(g, 10, 32)
					if err != nil {
						return s, fmt.Errorf("bad --cred %q", v)
					}
					c.Groups = append(c.Groups, uint32(u))
				}
			}
			s.cred = c
		case "--cgroup":
			c, dir, ok := strings.Cut(v, "=")
			if !ok || c == "" || !strings.HasPrefix(dir, "/") {
				return s, fmt.Errorf("bad --cgroup %q", v)
			}
			if s.cgroups == nil {
				s.cgroups = map[string]string{}
			}
			s.cgroups[c] = dir
		case "--status-fd":
			fd, err := strconv.Atoi(v)
			if err != nil || fd < 0 {
				return s, fmt.Errorf("bad --status-fd %q", v)
			}
			s.statusFD = fd
		default:
			return s, fmt.Errorf("unknown option %q", a)
		}
	}
	if len(args) < 2 {
		return s, fmt.Errorf("usage: %s [--umask OOOO] [--rlimit NAME=N]... [--cred UID:GID[:G,...]] [--status-fd FD] [--cgroup CONTROLLER=DIR]... -- PATH ARGV0 [ARG...]", ExecArg)
	}
	s.path, s.argv = args[0], args[1:]
	return s, nil
}

// ExecMain is the exec wrapper, run as `orch __exec ARGS` (args excludes
// ExecArg):
//
//	__exec [--umask OOOO] [--rlimit NAME=N]... [--cred UID:GID[:G,G...]]
//	       [--status-fd FD] -- PATH ARGV0 [ARG...]
//
// It sets the umask, the resource limits (soft and hard to N), then the
// groups, group id and user id, and executes PATH with argv ARGV0 ARG...
// in the same process (same pid, same start time), with its environment
// minus HelperEnv. Go's SysProcAttr can set neither a umask nor rlimits,
// and changing orch's own umask around a fork races with every other
// goroutine, hence this wrapper. On failure it writes the reason to
// status FD (close-on-exec, so a successful exec closes it silently) and to
// stderr, and returns 127. It returns only on failure.
func ExecMain(args []string) int {
	s, err := parseExecArgs(args)
	if err == nil {
		err = s.apply()
	}
	if err == nil {
		env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
			return strings.HasPrefix(kv, HelperEnv+"=")
		})
		err = syscall.Exec(s.path, s.argv, env)
		err = fmt.Errorf("exec %s: %w", s.path, err)
	}
	msg := "orch " + ExecArg + ": " + err.Error()
	if s.statusFD >= 0 {
		unix.Write(s.statusFD, []byte(msg))
	}
	fmt.Fprintln(os.Stderr, msg)
	return 127
}

func (s execSpec) apply() error {
	if s.statusFD >= 0 {
		// Closed by a successful exec: the provider reads EOF and knows
		// the daemon runs.
		unix.CloseOnExec(s.statusFD)
	}
	// First, while still orch's user: the cgroup files are orch's.
	if err := cgroup.Join(s.cgroups); err != nil {
		return err
	}
	if s.umask >= 0 {
		syscall.Umask(s.umask)
	}
	for n, v := range s.rlimits {
		lim := syscall.Rlimit{Cur: v, Max: v}
		// syscall.Setrlimit (not unix.Setrlimit) so that Go does not
		// restore its saved RLIMIT_NOFILE on exec.
		if err := syscall.Setrlimit(rlimitResources[n], &lim); err != nil {
			return fmt.Errorf("setrlimit %s=%d: %w", n, v, err)
		}
	}
	if c := s.cred; c != nil {
		// The working directory was entered as orch's user (the wrapper's
		// own); it is entered again as the daemon's, as a start without
		// the wrapper does (Go changes the user before the directory), so
		// that a directory closed to the daemon's user fails both alike.
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("working directory: %w", err)
		}
		groups := make([]int, len(c.Groups))
		for i, g := range c.Groups {
			groups[i] = int(g)
		}
		if err := syscall.Setgroups(groups); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(int(c.Gid)); err != nil {
			return fmt.Errorf("setgid %d: %w", c.Gid, err)
		}
		if err := syscall.Setuid(int(c.Uid)); err != nil {
			return fmt.Errorf("setuid %d: %w", c.Uid, err)
		}
		if err := syscall.Chdir(wd); err != nil {
			return fmt.Errorf("chdir %s: %w", wd, err)
		}
	}
	return nil
}
