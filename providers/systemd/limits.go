package systemd

import (
	"math"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/orch-dev/orch/spec"
)

// limits maps the daemon's resources block onto the unit's cgroup
// properties: memory_max to MemoryMax, cpu_max (cores) to CPUQuota (the
// CPU time per second, CPUQuotaPerSecUSec: 0.5 cores is 500ms a second,
// CPUQuota=50%), pids_max to TasksMax. A limit left out is systemd's
// default (none, for a transient service).
func limits(r *spec.Resource) []sd.Property {
	var props []sd.Property
	res := r.Resources
	if res.MemoryMax > 0 {
		props = append(props, sd.Property{Name: "MemoryMax", Value: dbus.MakeVariant(res.MemoryMax)})
	}
	if res.CPUMax > 0 {
		props = append(props, sd.Property{Name: "CPUQuotaPerSecUSec", Value: dbus.MakeVariant(uint64(math.Round(res.CPUMax * float64(time.Second/time.Microsecond))))})
	}
	if res.PidsMax > 0 {
		props = append(props, sd.Property{Name: "TasksMax", Value: dbus.MakeVariant(uint64(res.PidsMax))})
	}
	if h := r.Health; h != nil && h.Notify {
		// Any process of the unit may send READY=1 (a shell script's
		// systemd-notify is a child, not the main process).
		props = append(props, sd.Property{Name: "NotifyAccess", Value: dbus.MakeVariant("all")})
		if h.StartTimeout > 0 {
			props = append(props, sd.Property{Name: "TimeoutStartUSec", Value: dbus.MakeVariant(uint64(h.StartTimeout / time.Microsecond))})
		}
		if h.Watchdog > 0 {
			// A missed WATCHDOG=1 makes systemd abort the daemon (SIGABRT):
			// the unit fails with result "watchdog", and orch's restart
			// policy decides what follows.
			props = append(props, sd.Property{Name: "WatchdogUSec", Value: dbus.MakeVariant(uint64(h.Watchdog / time.Microsecond))})
		}
	}
	return props
}

// notify says whether the daemon announces its own readiness (sd_notify
// READY=1): its unit is Type=notify.
func notify(r *spec.Resource) bool { return r.Health != nil && r.Health.Notify }
