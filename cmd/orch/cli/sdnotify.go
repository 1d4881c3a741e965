package cli

import (
	"os"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/orch-dev/orch/executor/engine"
)

// systemdNotify tells systemd how orch up or orch agent is doing when it
// runs as a Type=notify service (NOTIFY_SOCKET set; docs/orch.service is
// an example unit): READY=1 once the first apply is done and orch
// supervises, STATUS= with the engine's own words, STOPPING=1 when it
// stops everything. Without NOTIFY_SOCKET it returns out unchanged. The
// sd_notify client is go-systemd's.
func systemdNotify(out func(engine.Event)) func(engine.Event) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return out
	}
	return func(ev engine.Event) {
		out(ev)
		switch ev.Type {
		case engine.EventReady:
			daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS="+ev.Detail)
		case engine.EventShutdown:
			daemon.SdNotify(false, daemon.SdNotifyStopping+"\nSTATUS="+ev.Detail)
		}
	}
}
