package systemd

import (
	sd "github.com/coreos/go-systemd/v22/dbus"

	"github.com/orch-dev/orch/spec"
)

// limits maps the daemon's resources block onto the unit's cgroup
// properties. (Until spec carries resources and notify, none.)
func limits(r *spec.Resource) []sd.Property { return nil }

// notify says whether the daemon announces its own readiness (sd_notify
// READY=1), which makes its unit Type=notify.
func notify(r *spec.Resource) bool { return false }
