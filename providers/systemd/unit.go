package systemd

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// unit is what orch reads of one unit.
type unit struct {
	Name        string
	Loaded      bool // LoadState is "loaded": the unit exists
	ActiveState string
	SubState    string
	// StartQueued: a start job waits in systemd's queue (the Unit's Job
	// property); the unit may still be inactive right after
	// StartTransientUnit returns.
	StartQueued bool
	Result      string // the service's: success, exit-code, signal, timeout, oom-kill, ...
	Type        string // the service's Type: exec, notify
	Invocation  string
	MainPID     int
	ExecCode    int32 // ExecMainCode: CLD_EXITED, CLD_KILLED, CLD_DUMPED; 0 while it runs or never ran
	ExecStatus  int32 // ExecMainStatus: the exit code or the signal number
	ExecStart   time.Time
	KillSignal  int32
	StopTimeout time.Duration
	Marks       marks
}

// The si_code values of ExecMainCode.
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// read loads what orch needs of unit name: its state from the Unit
// interface and, for a unit that exists, its main process and ownership
// marks from the Service interface.
func (m manager) read(ctx context.Context, name string) (unit, error) {
	u := unit{Name: name}
	props, err := m.GetUnitPropertiesContext(ctx, name)
	if err != nil {
		return u, err
	}
	u.Loaded = str(props["LoadState"]) == "loaded"
	u.ActiveState = str(props["ActiveState"])
	u.SubState = str(props["SubState"])
	if j, ok := props["Job"].([]interface{}); ok && len(j) == 2 {
		id, _ := j[0].(uint32)
		u.StartQueued = id != 0 && u.ActiveState == "inactive"
	}
	if b, ok := props["InvocationID"].([]byte); ok && len(b) > 0 {
		u.Invocation = hex.EncodeToString(b)
	}
	if !u.Loaded {
		return u, nil
	}
	sp, err := m.GetUnitTypePropertiesContext(ctx, name, "Service")
	if err != nil {
		var de dbus.Error
		if errors.As(err, &de) && strings.Contains(de.Name, "UnknownInterface") {
			return u, nil // not a service: not orch's
		}
		return u, err
	}
	u.Result = str(sp["Result"])
	u.Type = str(sp["Type"])
	if v, ok := sp["MainPID"].(uint32); ok {
		u.MainPID = int(v)
	}
	u.ExecCode, _ = sp["ExecMainCode"].(int32)
	u.ExecStatus, _ = sp["ExecMainStatus"].(int32)
	if v, ok := sp["ExecMainStartTimestamp"].(uint64); ok && v > 0 {
		u.ExecStart = time.UnixMicro(int64(v))
	}
	u.KillSignal, _ = sp["KillSignal"].(int32)
	if v, ok := sp["TimeoutStopUSec"].(uint64); ok {
		u.StopTimeout = time.Duration(v) * time.Microsecond
	}
	if f, ok := sp["LogExtraFields"].([][]byte); ok {
		u.Marks = parseMarks(f)
	}
	return u, nil
}

func str(v any) string { s, _ := v.(string); return s }

// ours says whether u is orch's unit of project (any project when "").
func (u unit) ours(project string) bool {
	return u.Loaded && u.Marks.owned && (project == "" || u.Marks.Project == project)
}

// running says whether u's main process runs (or is being started or
// stopped). A unit that stays active after its main process exited
// (RemainAfterExit, which orch sets) is not running.
func (u unit) running() bool {
	switch u.ActiveState {
	case "active", "reloading", "refreshing":
		return u.SubState != "exited"
	case "activating", "deactivating":
		return true
	case "inactive":
		return u.StartQueued // being started: its job has not run yet
	}
	return false
}

// observed turns u into an Observed; inv, when set, is the invocation of
// the instance asked about: a unit started again since is another instance.
func (u unit) observed(inv string) providers.Observed {
	obs := providers.Observed{ID: u.Name, State: providers.StateUnknown, StartedAt: u.ExecStart}
	switch {
	case !u.Loaded || !u.Marks.owned:
		obs.State = providers.StateMissing
		return obs
	case inv != "" && u.Invocation != "" && inv != u.Invocation:
		obs.State = providers.StateMissing
		return obs
	case u.running():
		obs.State = providers.StateRunning
		obs.Pid = u.MainPID
		return obs
	}
	switch u.ExecCode {
	case cldExited:
		obs.State = providers.StateExited
		obs.ExitCode = int(u.ExecStatus)
	case cldKilled, cldDumped:
		obs.State = providers.StateExited
		obs.Signal = unix.SignalName(syscall.Signal(u.ExecStatus))
		if obs.Signal == "" {
			obs.Signal = fmt.Sprintf("signal %d", u.ExecStatus)
		}
		obs.ExitCode = 128 + int(u.ExecStatus)
	default:
		// Stopped before its main process ran, or it never exec'ed.
		obs.State = providers.StateExited
		obs.ExitCode = 1
	}
	switch u.Result {
	case "oom-kill":
		obs.Error = "out of memory"
	case "timeout":
		obs.Error = "timed out; killed"
	case "watchdog":
		obs.Error = "missed its watchdog (WATCHDOG=1)"
	case "exit-code", "signal", "core-dump", "success", "":
	default:
		obs.Error = "systemd: " + u.Result
	}
	return obs
}

// rlimitProps names the unit properties of each rlimits entry.
var rlimitProps = map[string]string{
	"as": "LimitAS", "core": "LimitCORE", "cpu": "LimitCPU", "data": "LimitDATA", "fsize": "LimitFSIZE",
	"memlock": "LimitMEMLOCK", "nofile": "LimitNOFILE", "nproc": "LimitNPROC", "stack": "LimitSTACK",
}

// properties are the unit properties of r's transient service.
func properties(r *spec.Resource, m marks, project string) ([]sd.Property, error) {
	if len(r.Command) == 0 {
		return nil, &attrError{"command", errors.New("no command")}
	}
	cmd := append([]string(nil), r.Command...)
	if !filepath.IsAbs(cmd[0]) {
		// systemd wants an absolute path; find it as a shell would, in
		// orch's PATH (systemd-run does the same).
		p, err := exec.LookPath(cmd[0])
		if err != nil {
			return nil, &attrError{"command", fmt.Errorf("%s: not found in PATH; give an absolute path", cmd[0])}
		}
		if !filepath.IsAbs(p) {
			p, _ = filepath.Abs(p)
		}
		cmd[0] = p
	}
	stop := r.Stop.Signal
	if stop.Num == 0 {
		stop = spec.Signal{Name: "SIGTERM", Num: syscall.SIGTERM}
	}
	timeout := r.Stop.Timeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	typ := "exec" // the start fails when the command cannot be executed
	if notify(r) {
		typ = "notify"
	}
	props := []sd.Property{
		sd.PropDescription("orch " + project + " " + r.Addr.String()),
		// uncleanIsFailure false: a non-zero exit ends the service; orch's
		// restart policy, not systemd's, decides what follows.
		{Name: "ExecStart", Value: dbus.MakeVariant([]execStart{{Path: cmd[0], Args: cmd, UncleanIsFailure: false}})},
		sd.PropType(typ),
		// Keeps the unit, and its main process's exit status, after a
		// clean exit, so that Observe can say how it ended; Delete unloads it.
		sd.PropRemainAfterExit(true),
		{Name: "Restart", Value: dbus.MakeVariant("no")},
		{Name: "KillMode", Value: dbus.MakeVariant("control-group")},
		{Name: "KillSignal", Value: dbus.MakeVariant(int32(stop.Num))},
		{Name: "TimeoutStopUSec", Value: dbus.MakeVariant(uint64(timeout / time.Microsecond))},
		{Name: "SendSIGKILL", Value: dbus.MakeVariant(true)},
		{Name: "LogExtraFields", Value: dbus.MakeVariant(m.fields())},
	}
	if len(r.Env) > 0 {
		env := make([]string, 0, len(r.Env))
		for k, v := range r.Env {
			env = append(env, k+"="+v)
		}
		sort.Strings(env)
		props = append(props, sd.Property{Name: "Environment", Value: dbus.MakeVariant(env)})
	}
	if r.Dir != "" {
		props = append(props, sd.Property{Name: "WorkingDirectory", Value: dbus.MakeVariant(r.Dir)})
	}
	if r.User != "" {
		props = append(props, sd.Property{Name: "User", Value: dbus.MakeVariant(r.User)})
	}
	if r.Group != "" {
		props = append(props, sd.Property{Name: "Group", Value: dbus.MakeVariant(r.Group)})
	}
	if r.Umask != 0 {
		props = append(props, sd.Property{Name: "UMask", Value: dbus.MakeVariant(uint32(r.Umask))})
	}
	names := make([]string, 0, len(r.Rlimits))
	for k := range r.Rlimits {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		p, ok := rlimitProps[k]
		if !ok {
			return nil, &attrError{"rlimits", fmt.Errorf("rlimits.%s cannot be set on a systemd unit", k)}
		}
		props = append(props, sd.Property{Name: p, Value: dbus.MakeVariant(r.Rlimits[k])},
			sd.Property{Name: p + "Soft", Value: dbus.MakeVariant(r.Rlimits[k])})
	}
	props = append(props, limits(r)...)
	return props, nil
}

// execStart is the D-Bus shape of one ExecStart entry, (sasb).
type execStart struct {
	Path             string
	Args             []string
	UncleanIsFailure bool
}

// attrError is a failure that concerns one attribute of the daemon.
type attrError struct {
	attr string
	err  error
}

func (e *attrError) Error() string { return e.err.Error() }

// DefaultStopTimeout is used when a daemon declares no stop timeout.
const DefaultStopTimeout = 10 * time.Second
