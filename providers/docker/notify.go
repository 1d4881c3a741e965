package docker

import (
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"sync"

	"github.com/orch-dev/orch/providers/notify"
	"github.com/orch-dev/orch/spec"
)

// held are the notify sockets bound for containers started by this orch
// process, by path: held for as long as it lives, so that what the
// container says is heard (the engine's monitor shares them).
var (
	heldMu sync.Mutex
	held   = map[string]*notify.Socket{}
)

// withNotify gives a container declared with health { notify = true } its
// daemon's notify socket: the socket's directory (below the state
// directory, on this host: the Engine must be local) is mounted at
// notify.ContainerDir, and NOTIFY_SOCKET (and WATCHDOG_USEC) point there.
// The directory, not the socket, is mounted, so that an orch started
// later binds the socket again at the same path and the container still
// reaches it.
func withNotify(cs *containerSpec, r *spec.Resource, stateDir string) error {
	if r.Health == nil || !r.Health.Notify {
		return nil
	}
	if stateDir == "" {
		return fmt.Errorf("health.notify: no state directory for the notify socket")
	}
	p, err := notify.Path(stateDir, r.Addr)
	if err != nil {
		return fmt.Errorf("health.notify: %w", err)
	}
	heldMu.Lock()
	sock := held[p]
	if sock == nil {
		if sock, err = notify.Listen(p); err != nil {
			heldMu.Unlock()
			return fmt.Errorf("health.notify: %w", err)
		}
		held[p] = sock
	}
	heldMu.Unlock()
	sock.Reset()
	cs.Host.Binds = append(cs.Host.Binds, filepath.Dir(p)+":"+notify.ContainerDir)
	env := notify.Env(path.Join(notify.ContainerDir, notify.SocketName), r.Health.Watchdog)
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cs.Config.Env = append(cs.Config.Env[:len(cs.Config.Env):len(cs.Config.Env)], k+"="+env[k])
	}
	return nil
}

// limitsOf maps the resources block onto the container's limits: the same
// names as for native daemons and systemd. A limit given both ways (the
// runtime attributes memory or cpus, and resources) must agree.
func limitsOf(r *spec.Resource, cs *containerSpec) error {
	rs := r.Resources
	res := &cs.Host.Resources
	if rs.MemoryMax > 0 {
		if rs.MemoryMax < 6<<20 {
			return fmt.Errorf("resources.memory_max: %d bytes is below the Engine's minimum of 6MiB", rs.MemoryMax)
		}
		if res.Memory != 0 && res.Memory != int64(rs.MemoryMax) {
			return fmt.Errorf("memory and resources.memory_max disagree: give one")
		}
		res.Memory = int64(rs.MemoryMax)
		res.MemorySwap = int64(rs.MemoryMax) // no swap: over the limit is an OOM kill, as for native daemons
	}
	if rs.CPUMax > 0 {
		n := int64(rs.CPUMax * 1e9)
		if res.NanoCPUs != 0 && res.NanoCPUs != n {
			return fmt.Errorf("cpus and resources.cpu_max disagree: give one")
		}
		res.NanoCPUs = n
	}
	if rs.PidsMax > 0 {
		n := rs.PidsMax
		res.PidsLimit = &n
	}
	return nil
}
