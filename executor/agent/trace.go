package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/orch-dev/orch/executor/procstat"
)

// TraceRequest is the body of POST /v1/trace/{addr}.
type TraceRequest struct {
	// Filters are strace's -e expressions, passed as they are
	// (trace=openat, signal=none, ...).
	Filters []string `json:"filters,omitempty"`
	// EBPF asks bpftrace for a count of the system calls by name instead,
	// printed when the trace ends after For.
	EBPF bool `json:"ebpf,omitempty"`
	// For ends the trace after this long (the tracer is interrupted, and
	// bpftrace prints its counts); 0: when the client goes.
	For time.Duration `json:"for,omitempty"`
}

// pidPrefix is how strace -f starts a line of a process other than the
// only one it traces.
var pidPrefix = regexp.MustCompile(`^\[pid\s+(\d+)\] `)

// trace attaches strace -f to the whole process group of a running
// daemon (for a container, its init's group, by host pids) and streams
// its output as text/plain, one line per system call, each starting with
// "[pid N] ". When the client goes, strace is interrupted, which detaches
// it from every process: the daemon runs on, untouched.
func (s *Server) trace(w http.ResponseWriter, r *http.Request) {
	a, ok := pathAddr(w, r)
	if !ok {
		return
	}
	var req TraceRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil && err != io.EOF {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	tool := "strace"
	if req.EBPF {
		tool = "bpftrace"
	}
	path, err := exec.LookPath(tool)
	if err != nil {
		writeError(w, http.StatusNotImplemented, fmt.Errorf("cannot trace %s: %s is not installed where the agent runs (on Debian: apt-get install %s)", a, tool, tool))
		return
	}
	obs, err := s.Engine.Observe(r.Context(), a)
	if err != nil {
		engineErr(w, err)
		return
	}
	if obs.Pid <= 0 {
		writeError(w, http.StatusConflict, fmt.Errorf("cannot trace %s: it has no process on this host (pid unknown)", a))
		return
	}
	pids := procstat.Members(obs.Pid)
	var args []string
	if req.EBPF {
		var conds []string
		for _, p := range pids {
			conds = append(conds, "pid == "+strconv.Itoa(p))
		}
		// One probe per system call (tracepoint:syscalls:sys_enter_*),
		// counted by its name: the processes of the daemon's group now.
		prog := fmt.Sprintf("tracepoint:syscalls:sys_enter_* /%s/ { @[probe] = count(); }", strings.Join(conds, " || "))
		args = []string{"-e", prog}
	} else {
		args = []string{"-f", "-qq"}
		for _, f := range req.Filters {
			args = append(args, "-e", f)
		}
		for _, p := range pids {
			args = append(args, "-p", strconv.Itoa(p))
		}
	}
	cmd := exec.Command(path, args...)
	// Its own process group: a Ctrl-C at the agent's terminal (orch up)
	// is not strace's, and stopping it is this handler's business.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StderrPipe()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if req.EBPF {
		cmd.Stdout = cmd.Stderr
	}
	if err := cmd.Start(); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("cannot trace %s: %w", a, err))
		return
	}
	waited := make(chan error, 1)
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		waited <- cmd.Wait()
	}()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	// How the tracer ended, when it failed on its own (it could not
	// attach, a kernel without tracepoints): the client's error.
	w.Header().Set("Trailer", traceErrorTrailer)
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	fmt.Fprintf(w, "# tracing %s: %s started on %d process(es): %s\n", a, tool, len(pids), strings.Trim(fmt.Sprint(pids), "[]"))
	if fl != nil {
		fl.Flush()
	}
	main := strconv.Itoa(obs.Pid)
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			// SIGINT: strace detaches from every tracee and exits;
			// bpftrace prints its maps and exits.
			cmd.Process.Signal(syscall.SIGINT)
		}
	}
	// How long the tracer has to end after SIGINT before SIGKILL: strace
	// detaches at once; bpftrace first finishes attaching its 360-odd
	// probes (17 s on a quiet 2-core VM, longer loaded), then detaches
	// them and prints its counts. Killed in between (after 10 s, as
	// before), it printed nothing, and a -for 2s trace came out empty.
	grace := 10 * time.Second
	if req.EBPF {
		grace = 3 * time.Minute
	}
	var done <-chan struct{} = r.Context().Done()
	var kill <-chan time.Time
	var until, compiled <-chan time.Time
	startFor := func() {
		if req.For > 0 {
			until = time.After(req.For)
		}
	}
	if req.EBPF {
		// -for counts from "Attaching N probes...": bpftrace compiles its
		// program first (seconds on a loaded machine), and a SIGINT
		// before that line ends it at once with no count at all
		// (TestTraceEBPF under make test-busy). After it, bpftrace
		// finishes attaching, counts, and prints.
		compiled = time.After(attachLimit)
	} else {
		startFor()
	}
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				err := <-waited
				if !stopped && err != nil {
					var ee *exec.ExitError
					if errors.As(err, &ee) {
						fmt.Fprintf(w, "# %s ended: %v\n", tool, err)
						w.Header().Set(traceErrorTrailer, fmt.Sprintf("%s ended: %v", tool, err))
					}
				}
				return
			}
			if req.EBPF {
				if compiled != nil && strings.HasPrefix(l, "Attaching ") {
					compiled = nil
					startFor()
				}
				// @[tracepoint:syscalls:sys_enter_openat]: 12 -> openat: 12
				if m := syscallCount.FindStringSubmatch(l); m != nil {
					l = m[1] + ": " + m[2]
				}
			} else if !pidPrefix.MatchString(l) {
				l = "[pid " + main + "] " + l
			}
			if _, err := io.WriteString(w, l+"\n"); err != nil {
				stop()
				continue
			}
			if fl != nil {
				fl.Flush()
			}
		case <-until:
			until = nil
			stop()
			kill = time.After(grace)
		case <-done:
			done = nil
			stop()
			kill = time.After(grace)
		case <-compiled:
			compiled = nil
			msg := fmt.Sprintf("bpftrace did not compile its probes within %s", attachLimit)
			fmt.Fprintf(w, "# %s\n", msg)
			w.Header().Set(traceErrorTrailer, msg)
			stop()
			kill = time.After(grace)
		case <-kill:
			// strace detaches on SIGINT; should it hang, SIGKILL ends it
			// and the kernel detaches its tracees (they are not killed).
			cmd.Process.Kill()
		}
	}
}

// Trace streams the trace of addr (POST /v1/trace) to out until ctx is
// done or the daemon ends; the agent then detaches.
func (c *Client) Trace(ctx context.Context, addr string, req TraceRequest, out io.Writer) error {
	resp, err := c.do(ctx, http.MethodPost, addrPath("/trace/", addr), req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(out, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		if msg := resp.Trailer.Get(traceErrorTrailer); msg != "" {
			return fmt.Errorf("cannot trace %s: %s", addr, msg)
		}
	}
	return err
}

// attachLimit bounds the wait for bpftrace's "Attaching N probes..." line.
const attachLimit = 2 * time.Minute

// traceErrorTrailer is the HTTP trailer of POST /v1/trace that says how
// the tracer failed.
const traceErrorTrailer = "Orch-Trace-Error"

// syscallCount is a line of bpftrace's map of counts by probe.
var syscallCount = regexp.MustCompile(`^@\[tracepoint:syscalls:sys_enter_(\w+)\]: (\d+)$`)
