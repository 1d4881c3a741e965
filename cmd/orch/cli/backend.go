package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/spec"
)

// envBackend is the environment variable of the backend setting (flag
// -backend, settings file key backend), which overrides the
// configuration's backend block: "file" (the state file, whatever the
// configuration declares) or
// etcd://HOST:PORT[,HOST:PORT...][/PREFIX][?lock_ttl=10s&ca=F&cert=F&key=F]
// (etcds:// for TLS endpoints).
const envBackend = "ORCH_BACKEND"

// backendFor returns where the state of cfg lives: the backend setting
// (-backend, ORCH_BACKEND, the settings file) when set, else the
// configuration's orch { backend } block, else nil, the state file.
func (a *App) backendFor(cfg *spec.Config) (*state.BackendConfig, error) {
	if v := a.settings.Backend; v != "" {
		be, err := parseBackend(v, cfg.Project.Name)
		if err != nil {
			// LoadSettings checked it: this is not expected.
			return nil, fmt.Errorf("invalid backend in %s: %w", a.settings.Source("backend"), err)
		}
		return be, nil
	}
	b := cfg.Project.Backend
	if b == nil {
		return nil, nil
	}
	out := &state.BackendConfig{Kind: b.Kind, Endpoints: b.Endpoints, Prefix: b.Prefix, LockTTL: b.LockTTL}
	if b.TLS != nil {
		out.CA, out.Cert, out.Key = b.TLS.CA, b.TLS.Cert, b.TLS.Key
	}
	return out, nil
}

// parseBackend reads the backend setting; the prefix defaults to
// /orch/<project>. Its errors quote the value; the caller names where it
// was written (LoadSettings: the flag, the variable or the file).
func parseBackend(v, project string) (*state.BackendConfig, error) {
	if v == "file" {
		return nil, nil
	}
	bad := func(why string) error {
		return fmt.Errorf("%q: %s; it is file, or etcd://HOST:PORT[,HOST:PORT...][/PREFIX][?lock_ttl=10s&ca=FILE&cert=FILE&key=FILE] (etcds:// for TLS)", v, why)
	}
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok || (scheme != "etcd" && scheme != "etcds") {
		return nil, bad("unknown backend")
	}
	rest, query, _ := strings.Cut(rest, "?")
	hosts, prefix, _ := strings.Cut(rest, "/")
	cfg := &state.BackendConfig{Kind: "etcd", Prefix: "/" + prefix}
	if prefix == "" {
		cfg.Prefix = "/orch/" + project
	}
	if strings.HasSuffix(cfg.Prefix, "/") || strings.Contains(cfg.Prefix, "//") {
		return nil, bad("the prefix must not end with / or hold //")
	}
	for _, h := range strings.Split(hosts, ",") {
		if h == "" {
			return nil, bad("an endpoint is empty")
		}
		if scheme == "etcds" {
			h = "https://" + h
		}
		cfg.Endpoints = append(cfg.Endpoints, h)
	}
	if query != "" {
		for _, kv := range strings.Split(query, "&") {
			k, val, _ := strings.Cut(kv, "=")
			switch k {
			case "lock_ttl":
				d, err := time.ParseDuration(val)
				if err != nil || d < time.Second || d%time.Second != 0 {
					return nil, bad("lock_ttl is a whole number of seconds, 1s or more")
				}
				cfg.LockTTL = d
			case "ca":
				cfg.CA = val
			case "cert":
				cfg.Cert = val
			case "key":
				cfg.Key = val
			default:
				return nil, bad(fmt.Sprintf("unknown parameter %q", k))
			}
		}
	}
	return cfg, nil
}

// clusterPlan prints the placement of a project on several hosts (orch
// plan there); nil in an orch built without etcd (backend_cluster.go sets
// it). done is false for a project on one host, which plans as ever.
var clusterPlan func(a *App, cfg *spec.Config, be *state.BackendConfig, asJSON, detailed bool) (done bool, err error)

// loadForCluster loads the configuration of dir, and returns it with its
// etcd backend when it has one; else it leaves the load for the command's
// own (a.loaded), so that a project on one host loads it once as before.
func (a *App) loadForCluster(dir string, vf *varFlags) (*spec.Config, *state.BackendConfig) {
	if clusterPlan == nil {
		return nil, nil
	}
	res := a.loadConfig(dir, vf)
	if !res.diags.HasErrors() && res.cfg != nil {
		if be, err := a.backendFor(res.cfg); err == nil && be != nil && be.Kind == "etcd" {
			a.loaded = &pendingLoad{dir: dir, vf: vf, checkPrograms: a.checkPrograms, res: res}
			return res.cfg, be
		}
	}
	a.loaded = &pendingLoad{dir: dir, vf: vf, checkPrograms: a.checkPrograms, res: res}
	return nil, nil
}

// placementPlan is orch plan of a project on several hosts: where each
// instance runs and would run; done is false on one host.
func (a *App) placementPlan(dir string, vf *varFlags, asJSON, detailed bool) (bool, error) {
	cfg, be := a.loadForCluster(dir, vf)
	if cfg == nil {
		return false, nil
	}
	return clusterPlan(a, cfg, be, asJSON, detailed)
}

// refuseOnSeveralHosts refuses orch apply and destroy in a project on
// several hosts: the project's own prefix holds no instance there (each
// node's state does), so an apply here would start everything on this
// host beside what the agents run.
func (a *App) refuseOnSeveralHosts(dir string, vf *varFlags) error {
	cfg, be := a.loadForCluster(dir, vf)
	if cfg == nil {
		return nil
	}
	if _, multi, err := clusterStatus(a, cfg, be); err != nil || !multi {
		return err
	}
	return &exitError{code: ExitError, msg: fmt.Sprintf("%s runs on several hosts (orch agent -node): the agents apply every edit of the configuration themselves, each its own part; orch plan shows where each instance runs", dir)}
}
