package process

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/cgroup"
	"github.com/orch-dev/orch/spec"
	"github.com/orch-dev/orch/spec/jsonscan"
)

// HandleInfo is what a process handle holds, encoded as JSON. orch treats
// handles as opaque bytes; HandleInfo is exported so that tools (orch
// status, tests) can show or build one.
type HandleInfo struct {
	Pid int `json:"pid"`
	// StartTicks is field 22 of /proc/<pid>/stat: when the process started,
	// in clock ticks after boot. A pid with another start time is another
	// process.
	StartTicks uint64 `json:"start_ticks"`
	// Pgid is the process group (and session) the daemon leads; signals go
	// to the whole group.
	Pgid int `json:"pgid"`
	// Log is the path of the daemon's current log file.
	Log string `json:"log,omitempty"`
	// BootID is the kernel's boot id when the process was started; start
	// ticks only mean something within one boot.
	BootID string `json:"boot_id,omitempty"`
	// Cgroup is the daemon's own cgroup, when the host gave it one: stop
	// kills what is left in it, pause freezes it. nil: the daemon is held
	// by its process group only.
	Cgroup *cgroup.Group `json:"cgroup,omitempty"`
	// ID is the start's ID in the log registry: Delete marks that line
	// gone without reading the registry. Empty in a handle of an older
	// orch (Delete then finds the line by pid and start time).
	ID string `json:"id,omitempty"`
}

// ParseHandle decodes a handle produced by this provider.
func ParseHandle(h providers.Handle) (HandleInfo, error) {
	hi, ok := parseHandleFast(h)
	if !ok {
		hi = HandleInfo{}
		if err := json.Unmarshal(h, &hi); err != nil {
			return hi, fmt.Errorf("not a process handle: %w", err)
		}
	}
	if hi.Pid <= 0 {
		return hi, fmt.Errorf("not a process handle: no pid")
	}
	if hi.Pgid <= 0 {
		hi.Pgid = hi.Pid
	}
	// A daemon is never pid 1 (init, or orch itself in a container) and
	// leads its own group: a handle naming 1 is refused, as the group
	// signal of -1 reaches every process the caller may signal.
	if hi.Pid == 1 || hi.Pgid == 1 {
		return hi, fmt.Errorf("not a process handle: pid 1 is never a daemon")
	}
	return hi, nil
}

// Encode renders hi as a handle.
func (hi HandleInfo) Encode() providers.Handle {
	b, err := json.Marshal(hi)
	if err != nil {
		panic(err) // a struct of ints and strings always encodes
	}
	return b
}

// LogPath is where the process runtime writes the output of addr's
// daemon (or module, job) started with state directory stateDir; the
// files it rotates to are LogPath.1, LogPath.2, ...
func LogPath(stateDir string, addr spec.Address) string {
	return filepath.Join(stateDir, "logs", FileName(addr)+logSuffix)
}

// FileName turns an address into a name that is safe as a file name and
// unique per address: letters, digits, '.', '-', '_', '[' and ']' are kept,
// every other byte is written %XX. Names longer than 200 bytes are cut and
// suffixed with a hash of the whole address. daemon.api[1] stays
// "daemon.api[1]"; daemon.api["eu west"] becomes "daemon.api[%22eu%20west%22]".
func FileName(addr spec.Address) string {
	s := addr.String()
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '-', c == '_', c == '[', c == ']':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	name := b.String()
	if len(name) > 200 {
		sum := sha256.Sum256([]byte(s))
		name = name[:180] + "~" + hex.EncodeToString(sum[:8])
	}
	return name
}

// parseHandleFast decodes the handles Encode writes (json.Marshal of a
// HandleInfo: its keys, unsigned integers, strings of printable ASCII
// without escapes, a cgroup with a path only) as json.Unmarshal would,
// without its reflection: a refresh of 10,000 daemons parsed each handle
// twice through encoding/json, a tenth of a no-op plan's CPU (issue 19).
// Anything else reports false, and ParseHandle takes encoding/json's way.
func parseHandleFast(b []byte) (HandleInfo, bool) {
	r := hreader{jsonscan.Reader{B: b}}
	hi, ok := r.handle()
	return hi, ok && r.End()
}

// hreader reads the JSON of handles and registry lines (parseHandleFast,
// parseRegLine).
type hreader struct{ jsonscan.Reader }

// handle reads a handle's object (see parseHandleFast).
func (r *hreader) handle() (HandleInfo, bool) {
	var hi HandleInfo
	if !r.Byte('{') {
		return hi, false
	}
	if r.Byte('}') {
		return hi, true
	}
	for {
		key, ok := r.PlainStr()
		if !ok || !r.Byte(':') {
			return hi, false
		}
		switch key {
		case "pid":
			n, ok := r.Uint()
			if !ok {
				return hi, false
			}
			hi.Pid = int(n)
		case "start_ticks":
			n, ok := r.Uint()
			if !ok {
				return hi, false
			}
			hi.StartTicks = n
		case "pgid":
			n, ok := r.Uint()
			if !ok {
				return hi, false
			}
			hi.Pgid = int(n)
		case "log":
			if hi.Log, ok = r.PlainStr(); !ok {
				return hi, false
			}
		case "boot_id":
			if hi.BootID, ok = r.PlainStr(); !ok {
				return hi, false
			}
		case "id":
			if hi.ID, ok = r.PlainStr(); !ok {
				return hi, false
			}
		case "cgroup":
			if r.Lit("null") {
				hi.Cgroup = nil
				break
			}
			if hi.Cgroup, ok = r.cgroup(); !ok {
				return hi, false
			}
		default:
			return hi, false
		}
		if r.Byte(',') {
			continue
		}
		return hi, r.Byte('}')
	}
}

// cgroup reads a cgroup.Group with a path only: {"path":"..."}.
func (r *hreader) cgroup() (*cgroup.Group, bool) {
	if !r.Byte('{') {
		return nil, false
	}
	k, ok := r.PlainStr()
	if !ok || k != "path" || !r.Byte(':') {
		return nil, false
	}
	path, ok := r.PlainStr()
	if !ok || !r.Byte('}') {
		return nil, false
	}
	return &cgroup.Group{Path: path}, true
}
