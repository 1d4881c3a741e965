package systemd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"

	"github.com/orch-dev/orch/providers"
)

// Logs reads the daemon's lines from the journal: what the unit's
// processes wrote to stdout and stderr (and logged to the journal
// themselves), across every instance of its unit, without systemd's own
// lines about the unit. It runs journalctl (-o json, which keeps
// non-UTF-8 lines intact) with the unit's name and orch's marks as field
// matches, from the start of the journal or its last req.Tail lines; with
// req.Follow it keeps reading until ctx is done.
//
// journalctl rather than a journal library: go-systemd's sdjournal loads
// libsystemd with dlopen, which needs cgo, and orch is built static; the
// journal's file format is systemd's to change, and journalctl is on every
// host that has a systemd journal.
func (p *Provider) Logs(ctx context.Context, req providers.LogsRequest) (providers.LogsResponse, error) {
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return providers.LogsResponse{}, userErr("logs", req.Addr, "", "%v", err)
	}
	bin, err := exec.LookPath(p.opts.Journalctl)
	if err != nil {
		return providers.LogsResponse{}, userErr("logs", req.Addr, "", "%s: reading the journal needs journalctl: %v", runtimeName(req.Runtime), err)
	}
	args := []string{"--no-pager", "--quiet", "-o", "json", "--output-fields=MESSAGE"}
	// A user manager's unit is _SYSTEMD_USER_UNIT (its _SYSTEMD_UNIT is
	// user@UID.service), and its lines are in the user's journal, or in
	// the system's for a system user (root): journalctl reads every file
	// it may, and the match picks this user's unit.
	// journald does not attach a user unit's LogExtraFields (it reads
	// only the system manager's), so there the unit and the uid select.
	match := []string{"_SYSTEMD_UNIT=" + hi.Unit, FieldManagedBy + "=" + ManagedBy}
	if hi.Scope == ScopeUser || hi.Scope == "" && scopeOf(req.Runtime) == ScopeUser {
		match = []string{"_SYSTEMD_USER_UNIT=" + hi.Unit, "_UID=" + strconv.Itoa(os.Getuid())}
	}
	switch {
	case req.Tail > 0:
		args = append(args, "-n", strconv.Itoa(req.Tail))
	case req.Tail < 0:
		args = append(args, "-n", "0")
	}
	if req.Follow {
		args = append(args, "--follow")
	}
	args = append(args, match...)
	ctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return providers.LogsResponse{}, userErr("logs", req.Addr, "", "%v", err)
	}
	var stderr limited
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		return providers.LogsResponse{}, userErr("logs", req.Addr, "", "running journalctl: %v", err)
	}
	pr, pw := io.Pipe()
	go func() {
		err := copyMessages(pw, out)
		if werr := cmd.Wait(); err == nil && werr != nil && ctx.Err() == nil {
			err = fmt.Errorf("journalctl: %v: %s", werr, stderr.String())
		}
		cancel()
		pw.CloseWithError(err)
	}()
	return providers.LogsResponse{Log: &journalLog{PipeReader: pr, cancel: cancel}}, nil
}

// copyMessages writes the MESSAGE of each journal entry in r (journalctl
// -o json: one object a line) to w as one line. journalctl gives a
// message that is not valid UTF-8 as an array of bytes.
func copyMessages(w io.Writer, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		var e struct {
			Message json.RawMessage `json:"MESSAGE"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || len(e.Message) == 0 {
			continue
		}
		var line []byte
		var s string
		var bs []byte
		switch {
		case json.Unmarshal(e.Message, &s) == nil:
			line = []byte(s)
		case json.Unmarshal(e.Message, &bs) == nil:
			line = bs
		default:
			var ints []int
			if json.Unmarshal(e.Message, &ints) != nil {
				continue
			}
			line = make([]byte, len(ints))
			for i, b := range ints {
				line[i] = byte(b)
			}
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.ErrClosedPipe) {
		return err
	}
	return nil
}

// journalLog ends journalctl when the reader is closed.
type journalLog struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (j *journalLog) Close() error {
	j.cancel()
	return j.PipeReader.Close()
}

// limited keeps the first 4 KiB written to it (journalctl's complaints).
type limited struct{ b []byte }

func (l *limited) Write(p []byte) (int, error) {
	if n := 4096 - len(l.b); n > 0 {
		l.b = append(l.b, p[:min(n, len(p))]...)
	}
	return len(p), nil
}

func (l *limited) String() string { return string(l.b) }
