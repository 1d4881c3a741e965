package spec

import (
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Config is a fully loaded, evaluated and validated configuration directory.
// It is immutable once Load returns; share it freely between goroutines.
type Config struct {
	// Dir is the absolute path of the configuration directory (path.root).
	Dir string
	// Files holds every parsed file by name, for rendering diagnostics with
	// source snippets (hcl.NewDiagnosticTextWriter).
	Files map[string]*hcl.File
	// Hash is a SHA-256 of the names and bytes of every configuration file
	// read, in order, and of the content hashes of module binaries: two
	// loads with the same Hash read the same text and the same modules.
	Hash string
	// Reads lists the files of the directory that the configuration's
	// functions read (file(), templatefile(), ...), relative to Dir; their
	// content is part of Hash.
	Reads []string

	Project   Project
	Variables map[string]*Variable
	// Runtimes holds every runtime, declared or implicit, sorted by address.
	Runtimes []*Runtime
	// Resources holds every daemon, job and module instance after count and
	// for_each expansion, sorted by address.
	Resources []*Resource
	// Graph is the dependency graph between resource instances and runtimes.
	Graph *Graph

	byAddr map[Address]*Resource // index of Resources, built by Load
	// redactor removes the values of sensitive variables, and of what
	// derives from them, from text (Redactor, redact.go)
	redactor *Redactor
}

// Resource returns the instance at addr, or nil. It is O(1) on a Config
// returned by Load; on a Config built by hand it scans Resources.
func (c *Config) Resource(addr Address) *Resource {
	if c.byAddr != nil {
		return c.byAddr[addr]
	}
	for _, r := range c.Resources {
		if r.Addr == addr {
			return r
		}
	}
	return nil
}

// Runtime returns the runtime at addr (runtime.<kind>.<name>), or nil.
func (c *Config) Runtime(addr Address) *Runtime {
	for _, r := range c.Runtimes {
		if r.Addr == addr {
			return r
		}
	}
	return nil
}

// Project is the `orch {}` block: settings of the project as a whole.
type Project struct {
	// Name identifies the project (ownership labels, agent socket);
	// default: the base name of the directory.
	Name string
	// StateDir is where orch keeps its state, logs and lock, relative to
	// Dir unless absolute; default ".orch".
	StateDir string
	// DNS, Proxy and HTTP are the agent's listeners (orch { dns {}, proxy
	// {}, http {} }); each is nil, and off, unless declared.
	DNS   *DNSListener
	Proxy *ProxyListener
	HTTP  *HTTPListener
	// Backend is where state and locks live (orch { backend "etcd" {} });
	// nil: the embedded bbolt file under StateDir.
	Backend   *Backend
	DeclRange hcl.Range
}

// DNSListener is orch { dns { listen, zone } }: the agent answers A, AAAA
// and SRV queries for the ready instances of services in Zone.
type DNSListener struct {
	Listen    string // host:port, UDP and TCP
	Zone      string // default DefaultDNSZone; always ends with "."
	DeclRange hcl.Range
}

// ProxyListener is orch { proxy { listen, tls {} } }: the agent's HTTP
// reverse proxy to the routes of services.
type ProxyListener struct {
	Listen    string
	TLS       *TLSFiles // nil: plain HTTP
	DeclRange hcl.Range
}

// HTTPListener is orch { http { listen, token } }: the agent's web page,
// /metrics and API over TCP.
type HTTPListener struct {
	Listen string
	// Token, when set, is required (Authorization: Bearer) by every request
	// that changes something; "" refuses those requests over TCP.
	Token     string
	DeclRange hcl.Range
}

// TLSFiles names PEM files, absolute; "" when not given.
type TLSFiles struct {
	CA, Cert, Key string
}

// Backend is orch { backend "etcd" { ... } }.
type Backend struct {
	Kind      string // "etcd"
	Endpoints []string
	Prefix    string        // default "/orch/<project name>"
	LockTTL   time.Duration // lease of the lock; default DefaultLockTTL
	TLS       *TLSFiles
	DeclRange hcl.Range
}

// Variable is an input variable with its resolved value.
type Variable struct {
	Name        string
	Description string
	Type        cty.Type
	Default     cty.Value // cty.NilVal when none
	Sensitive   bool
	Nullable    bool
	Value       cty.Value // the resolved value, converted to Type
	// Source says where Value came from: "default", "-var", "-var-file FILE",
	// "ORCH_VAR_<name>".
	Source    string
	DeclRange hcl.Range
}

// Runtime is a backend instance: runtime "<kind>" "<name>" {}.
type Runtime struct {
	Addr Address // runtime.<kind>.<name>
	Kind string
	Name string
	// Plugin is the path of a third-party provider binary, when the kind is
	// served by one; empty for built-in kinds.
	Plugin string
	// SHA256 pins Plugin's content when set.
	SHA256 string
	// Attrs holds the kind-specific attributes, converted to their schema
	// types, defaults filled in.
	Attrs map[string]cty.Value
	// Implicit is true for the built-in runtime.process.default that daemons
	// use when they name none and no process runtime is declared.
	Implicit  bool
	DeclRange hcl.Range
}

// Resource is one instance of a daemon, job or module block.
type Resource struct {
	Addr Address
	// DeclRange is the range of the block header (`daemon "api"`), for
	// diagnostics that concern the instance as a whole.
	DeclRange hcl.Range
	// Ranges says where each attribute or block ("command", "health") was
	// written, so that later phases can point at it.
	Ranges Ranges

	// Runtime is the address of the runtime this instance runs on; for a
	// module, ModuleRuntime.
	Runtime Address

	// Process settings (daemons and jobs).
	Command []string
	Env     map[string]string
	Dir     string // working directory; absolute; default: the config directory
	User    string
	Group   string
	Umask   os.FileMode // default 0022
	Rlimits map[string]uint64
	// Attrs holds runtime-specific attributes (image, ports, ...) declared by
	// the runtime's schema, converted, defaults filled in.
	Attrs map[string]cty.Value

	Reload *Reload // nil: every forcing change replaces the daemon
	Health *Health // nil when none declared
	// Service publishes a daemon in DNS, mDNS and on the proxy; nil when
	// none declared.
	Service *Service
	// Resources caps what a daemon or job may use; zero: no limits.
	Resources Resources
	// Placement says on which nodes an instance may run; nil when none.
	Placement *Placement
	Restart   Restart
	Stop      Stop
	Log       Log
	Lifecycle Lifecycle

	// DependsOn lists the block addresses this block depends on, from
	// references and depends_on, sorted and without duplicates.
	DependsOn []Address
	// RestartWith lists dependencies whose restart or replacement also
	// restarts this instance (on_dependency_restart = "restart" per edge).
	RestartWith []Address

	// Module settings.
	Source string // absolute path of a .wasm file or a plugin executable
	SHA256 string
	// SourceHash is the SHA-256 of Source's content (hex), read at load: a
	// changed binary is a changed module.
	SourceHash string
	Config     cty.Value // the module's configuration, any type; cty.NilVal when none
	Grants     *Grants
	Limits     ModuleLimits

	// Sensitive lists the attribute paths whose values derive from a
	// sensitive variable, such as "env.DB_PASSWORD" or "command"; they must
	// never be printed.
	Sensitive map[string]bool
}

// Ranges says where each attribute or block of an instance was written:
// a short slice in the order of the names, which a daemon's two or three
// entries fill in a fifth of the memory of a map (about 700 bytes each at
// 10,000 daemons, issue 19).
type Ranges []NamedRange

// NamedRange is where the attribute or block Name was written.
type NamedRange struct {
	Name  string
	Range hcl.Range
}

// Get returns where name was written, and whether it was.
func (rs Ranges) Get(name string) (hcl.Range, bool) {
	i, ok := slices.BinarySearchFunc(rs, name, byName)
	if !ok {
		return hcl.Range{}, false
	}
	return rs[i].Range, true
}

func byName(e NamedRange, name string) int { return strings.Compare(e.Name, name) }

// At returns where name was written; the zero Range when it was not.
func (rs Ranges) At(name string) hcl.Range {
	r, _ := rs.Get(name)
	return r
}

// Set records that name was written at r.
func (rs *Ranges) Set(name string, r hcl.Range) {
	i, ok := slices.BinarySearchFunc(*rs, name, byName)
	if ok {
		(*rs)[i].Range = r
		return
	}
	*rs = slices.Insert(*rs, i, NamedRange{name, r})
}

// Reload says which changes of a daemon are applied by a signal to its
// main process instead of a replacement (Nomad's change_mode = "signal").
type Reload struct {
	Signal Signal   // default SIGHUP
	Attrs  []string // attributes (env, command, ...) whose change it applies
	// Inputs are the other entries of on, evaluated (file("nginx.conf"):
	// the file's content): when one changes, the daemon is reloaded.
	Inputs []string
}

// Health is a daemon's health check.
type Health struct {
	Kind        HealthKind
	Exec        []string
	HTTP        string
	TCP         string
	Interval    time.Duration // default 10s
	Timeout     time.Duration // default 5s
	Retries     int           // failures in a row before unhealthy; default 3
	StartPeriod time.Duration // failures ignored during it; default 0s
	// StartTimeout bounds the time from start to the first passing probe:
	// until then failures do not make the daemon unhealthy (it is
	// starting, not failing); past it without a pass, it is unhealthy.
	// Default DefaultStartTimeout.
	StartTimeout time.Duration
	// Notify is true when readiness is the daemon's own sd_notify READY=1
	// (Kind is HealthNotify).
	Notify bool
	// Watchdog, with Notify, is the longest time between two WATCHDOG=1
	// before the daemon is unhealthy; 0: none.
	Watchdog time.Duration
}

// Service is a daemon's service block.
type Service struct {
	Name string // default: the daemon block's name; a DNS label
	Host string // the address the instance listens on; default "127.0.0.1"
	Port int    // required, 1 to 65535
	// Route is where the proxy sends requests for the service; nil: not on
	// the proxy.
	Route *Route
	// MDNS is the DNS-SD service type announced, such as "_http._tcp"; ""
	// announces nothing.
	MDNS string
	// Drain is the longest wait for in-flight proxied requests before the
	// instance gets its stop signal; default DefaultDrain.
	Drain time.Duration
}

// Route is a service's route on the proxy: route = "api.localhost/v1".
type Route struct {
	Host string // "" matches any host
	Path string // path prefix; default "/"
}

// String renders the route as written: host and path.
func (r Route) String() string { return r.Host + r.Path }

// Resources is the resources block of a daemon or job.
type Resources struct {
	MemoryMax uint64  // bytes; 0: no limit
	CPUMax    float64 // cores; 0: no limit
	PidsMax   int64   // 0: no limit
}

// IsZero reports whether no limit is set.
func (r Resources) IsZero() bool { return r == Resources{} }

// Placement is the placement block: which nodes may run an instance.
type Placement struct {
	Node   string            // "" : any node
	Labels map[string]string // every one must match the node's labels
	Spread bool              // spread the instances of a block over nodes; default false
}

// Restart is a daemon's restart policy.
type Restart struct {
	Policy     RestartPolicy // default on-failure (never, for jobs)
	Backoff    time.Duration // first delay; default 200ms
	MaxBackoff time.Duration // cap of the exponential backoff; default 30s
	// MaxRestarts within Window mark the instance failed (a crash loop);
	// default 5 within 60s. 0 disables the limit.
	MaxRestarts int
	Window      time.Duration
}

// Stop says how a daemon is stopped.
type Stop struct {
	Signal  Signal        // default SIGTERM
	Timeout time.Duration // then SIGKILL to the process group; default 10s
}

// Log configures a daemon's log files.
type Log struct {
	MaxSize  int64 // bytes before rotation; default 10 MiB
	MaxFiles int   // rotated files kept; default 3
}

// Lifecycle mirrors Terraform's lifecycle block.
type Lifecycle struct {
	CreateBeforeDestroy bool
	PreventDestroy      bool
	IgnoreChanges       []string // attribute names
	// MaxParallel bounds how many instances of one block (count,
	// for_each) are replaced at once; 0: not set (1 under
	// create_before_destroy, else all at once).
	MaxParallel int
}

// ReplaceParallel is how many instances of the block of r are replaced
// at once: 0 for no bound.
func (lc Lifecycle) ReplaceParallel() int {
	if lc.MaxParallel > 0 {
		return lc.MaxParallel
	}
	if lc.CreateBeforeDestroy {
		return 1
	}
	return 0
}

// Grants opens parts of the host to a WebAssembly module.
type Grants struct {
	// Dirs maps a guest path to a host directory (absolute).
	Dirs map[string]string
	// Writable lists guest paths of Dirs that are mounted read-write.
	Writable []string
	// Env lists the host environment variables passed to the guest.
	Env []string
}

// ModuleLimits bounds what a module may use.
type ModuleLimits struct {
	MemoryBytes uint64        // default 64 MiB
	CallTimeout time.Duration // time budget of one hook call; default 5s
}
