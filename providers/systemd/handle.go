package systemd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// HandleInfo is what a systemd handle holds, encoded as JSON: the unit's
// name, the invocation id systemd gave the start that orch made (a unit of
// the same name started again by somebody else is another instance), and
// the scope of the manager it runs in. orch treats handles as opaque bytes;
// HandleInfo is exported so that tools and tests can read one.
type HandleInfo struct {
	Unit       string `json:"unit"`
	Invocation string `json:"invocation,omitempty"`
	Scope      string `json:"scope,omitempty"`
}

// ParseHandle decodes a handle produced by this provider.
func ParseHandle(h providers.Handle) (HandleInfo, error) {
	var hi HandleInfo
	if err := json.Unmarshal(h, &hi); err != nil {
		return hi, fmt.Errorf("not a systemd handle: %w", err)
	}
	if hi.Unit == "" {
		return hi, fmt.Errorf("not a systemd handle: no unit name")
	}
	return hi, nil
}

// Encode renders hi as a handle.
func (hi HandleInfo) Encode() providers.Handle {
	b, err := json.Marshal(hi)
	if err != nil {
		panic(err) // three strings always encode
	}
	return b
}

// UnitName is the name of the transient service unit of addr in project:
// "orch-<project>-<kind>-<name>[.<index>].service" ("orch-shop-daemon-api.0.service"
// for daemon.api[0]) when the name holds only letters, digits, "_" and
// "-" and the key, if any, is a count index. Any other address (a name
// with dots, a for_each key) is cleaned (each run of other characters
// becomes a dash) and given 8 hex digits of its hash, so that distinct
// addresses never share a unit: daemon.a-b is orch-p-daemon-a-b.service,
// daemon.a.b orch-p-daemon-a-b-<hash>.service.
func UnitName(project string, addr spec.Address) string {
	return unitPrefix(project) + unitPart(addr) + ".service"
}

func unitPart(addr spec.Address) string {
	plain := addr.Name != "" && addr.Key.Type != spec.StringKeyType
	for i := 0; plain && i < len(addr.Name); i++ {
		c := addr.Name[i]
		plain = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	if plain {
		out := addr.Kind.String() + "-" + addr.Name
		if addr.Key.Type == spec.IntKeyType {
			out += "." + strconv.Itoa(addr.Key.Int)
		}
		if len(out) <= 100 {
			return out
		}
	}
	sum := sha256.Sum256([]byte(addr.String()))
	out := clean(addr.String())
	if len(out) > 90 {
		out = out[:90]
	}
	return out + "-" + hex.EncodeToString(sum[:4])
}

// unitPrefix is what every unit name of project starts with.
func unitPrefix(project string) string {
	return "orch-" + clean(project) + "-"
}

// clean keeps letters, digits and underscores, and turns every run of
// anything else into one dash; leading and trailing dashes go. A result
// longer than a unit name allows is cut and given a hash of the whole.
func clean(s string) string {
	var b strings.Builder
	dash := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteByte(c)
			continue
		}
		dash = true
	}
	out := b.String()
	if len(out) > 100 {
		sum := sha256.Sum256([]byte(s))
		out = out[:90] + "-" + hex.EncodeToString(sum[:4])
	}
	return out
}

// The ownership marks orch puts on each unit it creates, as journal
// fields (the unit's LogExtraFields): systemd keeps them with the
// transient unit across daemon-reload and daemon-reexec, they can be read
// back over D-Bus, and every line the daemon logs carries them, which is
// how orch logs finds a daemon's lines. A unit without FieldManagedBy =
// ManagedBy is not orch's, and orch never stops, signals or removes it.
const (
	FieldManagedBy  = "ORCH_MANAGED_BY"
	FieldProject    = "ORCH_PROJECT"
	FieldAddress    = "ORCH_ADDRESS"
	FieldRuntime    = "ORCH_RUNTIME"
	FieldConfigHash = "ORCH_CONFIG_HASH"
	ManagedBy       = "orch"
)

// marks are the ownership fields of one unit.
type marks struct {
	Project, Address, Runtime, ConfigHash string
	owned                                 bool
}

func (m marks) fields() [][]byte {
	return [][]byte{
		[]byte(FieldManagedBy + "=" + ManagedBy),
		[]byte(FieldProject + "=" + m.Project),
		[]byte(FieldAddress + "=" + m.Address),
		[]byte(FieldRuntime + "=" + m.Runtime),
		[]byte(FieldConfigHash + "=" + m.ConfigHash),
	}
}

// parseMarks reads the ownership fields from a unit's LogExtraFields.
func parseMarks(fields [][]byte) marks {
	var m marks
	for _, f := range fields {
		k, v, ok := strings.Cut(string(f), "=")
		if !ok {
			continue
		}
		switch k {
		case FieldManagedBy:
			m.owned = v == ManagedBy
		case FieldProject:
			m.Project = v
		case FieldAddress:
			m.Address = v
		case FieldRuntime:
			m.Runtime = v
		case FieldConfigHash:
			m.ConfigHash = v
		}
	}
	return m
}
