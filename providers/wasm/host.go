package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/providers/module"
	"github.com/orch-dev/orch/spec"
	"github.com/tetratelabs/wazero"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// CacheDirName is the directory of the compilation cache inside orch's
// state directory.
const CacheDirName = "wasm-cache"

// Defaults of spec.ModuleLimits, for a Resource built by hand.
const (
	DefaultMemoryBytes = 64 << 20
	DefaultCallTimeout = 5 * time.Second
)

// KV is one module's namespace of small persistent state (module.KV). The
// engine backs it with the state store.
type KV = module.KV

// Level is the severity of a log line, as the guest passes it to orch.log.
type Level = module.Level

// Levels of orch.log.
const (
	LevelDebug = module.LevelDebug
	LevelInfo  = module.LevelInfo
	LevelWarn  = module.LevelWarn
	LevelError = module.LevelError
)

// LogRecord is one line a module logged (orch.log), or wrote on its stdout
// (LevelInfo) or stderr (LevelError).
type LogRecord struct {
	Addr    spec.Address
	Level   Level
	Message string
}

// StateChange is a module's transition, reported to Options.OnState.
type StateChange struct {
	Addr spec.Address
	From State
	To   State
	// Err is why the module failed (To == StateFailed), else nil.
	Err error
}

// Options configure a Host. Every field may be left zero.
type Options struct {
	// StateDir is orch's state directory: the compilation cache lives in
	// StateDir/wasm-cache. Empty: compile in memory only.
	StateDir string
	// Bus is the event bus modules publish on and subscribe to; nil: a
	// private one (Host.Bus).
	Bus *bus.Bus
	// KV returns the namespace of a module (called once per Load); nil:
	// kv_* host functions fail.
	KV func(addr spec.Address) KV
	// Log receives what modules log; nil: discarded. Called from any
	// goroutine, it must not block for long.
	Log func(LogRecord)
	// OnState receives every transition of every module, from the
	// module's Run goroutine (or Load's, for loaded). It must not block.
	OnState func(StateChange)
	// QueueLimit bounds the events waiting for one module; events over it
	// are dropped and counted (Stats.Dropped). Default 65536.
	QueueLimit int
	// Now is the clock of the now host function; default time.Now.
	Now func() time.Time
	// NoLifecycleEvents: transitions are not published on the bus (the
	// module provider publishes them).
	NoLifecycleEvents bool
}

// Host compiles and loads modules. It is safe for concurrent use; Close it
// after every module is done.
//
// Modules with the same memory cap share one wazero Runtime (WASI and the
// "orch" host module are instantiated in it once), and a .wasm file is
// compiled (decoded and validated) once per cap: loading it again, to
// restart it, only instantiates it.
type Host struct {
	opts  Options
	cache wazero.CompilationCache
	pool  memoryPool // memories of stopped modules, for the next ones

	mu       sync.Mutex
	closed   bool
	runtimes map[uint32]wazero.Runtime // by memory cap, in pages
	compiled map[compiledKey]*compiled
	last     map[spec.Address]compiledKey // what each address loaded last
	seq      uint64                       // makes instance names unique
}

type compiledKey struct {
	hash  string
	pages uint32
}

// compiled is a compiled module and the number of modules that use it.
// It stays while it is the last one its address loaded, so that a restart
// does not compile again.
type compiled struct {
	c    wazero.CompiledModule
	refs int
	// ready is the memory size, in bytes, of each address's last instance
	// when it became running: the capacity its next instance starts with
	// (linearMemory).
	ready map[spec.Address]uint64
}

// NewHost returns a Host; it creates the compilation cache directory.
func NewHost(opts Options) (*Host, error) {
	if opts.Bus == nil {
		opts.Bus = bus.NewBus()
	}
	if opts.QueueLimit <= 0 {
		opts.QueueLimit = 1 << 16
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Host{opts: opts, runtimes: map[uint32]wazero.Runtime{}, compiled: map[compiledKey]*compiled{},
		last: map[spec.Address]compiledKey{}}
	if opts.StateDir != "" {
		dir := filepath.Join(opts.StateDir, CacheDirName)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("wasm: compilation cache: %w", err)
		}
		c, err := wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			return nil, fmt.Errorf("wasm: compilation cache: %w", err)
		}
		h.cache = c
	} else {
		h.cache = wazero.NewCompilationCache()
	}
	return h, nil
}

// Bus returns the host's event bus.
func (h *Host) Bus() *bus.Bus { return h.opts.Bus }

// Close closes every module still running (without their stop hook) and
// releases the compiled code. Call it after every Run returned.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	rts := h.runtimes
	h.runtimes, h.compiled = map[uint32]wazero.Runtime{}, map[compiledKey]*compiled{}
	h.mu.Unlock()
	var errs []error
	for _, rt := range rts {
		errs = append(errs, rt.Close(ctx))
	}
	errs = append(errs, h.cache.Close(ctx))
	h.pool.close()
	return errors.Join(errs...)
}

// compile returns the module compiled for the cap of pages, from memory,
// the cache on disk or the compiler, with a reference taken.
func (h *Host) compile(ctx context.Context, addr spec.Address, hash string, bin []byte, pages uint32) (wazero.Runtime, *compiled, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, nil, errors.New("the host is closed")
	}
	rt := h.runtimes[pages]
	if rt == nil {
		rt = wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
			WithCompilationCache(h.cache).
			WithMemoryLimitPages(pages).
			WithCloseOnContextDone(true))
		if err := instantiateHost(ctx, rt); err != nil {
			rt.Close(ctx)
			return nil, nil, err
		}
		h.runtimes[pages] = rt
	}
	key := compiledKey{hash, pages}
	if prev, ok := h.last[addr]; ok && prev != key {
		if c := h.compiled[prev]; c != nil && c.refs == 0 {
			delete(h.compiled, prev)
			c.c.Close(ctx)
		}
	}
	h.last[addr] = key
	c := h.compiled[key]
	if c == nil && bin == nil {
		return nil, nil, errNeedBytes
	}
	if c == nil {
		cm, err := rt.CompileModule(ctx, mergeDataSegments(bin))
		if err != nil {
			return nil, nil, err
		}
		c = &compiled{c: cm}
		h.compiled[key] = c
	}
	c.refs++
	return rt, c, nil
}

// memoryHint returns the memory size of addr's last instance of c when it
// became running (0: none).
func (h *Host) memoryHint(c *compiled, addr spec.Address) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return c.ready[addr]
}

// setMemoryHint records the memory size of addr's instance of c that
// became running.
func (h *Host) setMemoryHint(c *compiled, addr spec.Address, size uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.ready == nil {
		c.ready = map[spec.Address]uint64{}
	}
	c.ready[addr] = size
}

// release drops a reference taken by compile.
func (h *Host) release(c *compiled) {
	h.mu.Lock()
	c.refs--
	h.mu.Unlock()
}

func (h *Host) instanceName(addr spec.Address) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	return fmt.Sprintf("%s#%d", addr, h.seq)
}

// LoadRequest names the module to load.
type LoadRequest struct {
	// Resource is the module instance: Addr, Source (a .wasm file),
	// SHA256, Config, Grants and Limits are read.
	Resource *spec.Resource
	// KV, Bus and Log, when set, are the module's instead of the host's
	// Options.KV, Options.Bus and Options.Log.
	KV  KV
	Bus *bus.Bus
	Log func(LogRecord)
}

// Load reads, verifies and compiles the module of req (a warm compilation
// cache makes this cheap) and returns it loaded, not running: call Run.
// An error means the module could not be loaded (missing file, hash
// mismatch, invalid WebAssembly, a memory minimum over the cap); it is
// reported as a failed transition too.
func (h *Host) Load(ctx context.Context, req LoadRequest) (*Module, error) {
	r := req.Resource
	m, err := h.load(ctx, r)
	if err == nil {
		if req.KV != nil {
			m.kv = req.KV
		}
		if req.Bus != nil {
			m.bus = req.Bus
		}
		if req.Log != nil {
			m.logf = req.Log
		}
	}
	if err != nil {
		err = fmt.Errorf("%s: load %s: %w", r.Addr, r.Source, err)
		h.report(StateChange{Addr: r.Addr, From: StateLoaded, To: StateFailed, Err: err})
		return nil, err
	}
	h.report(StateChange{Addr: r.Addr, To: StateLoaded})
	return m, nil
}

func (h *Host) report(c StateChange) {
	if h.opts.OnState != nil {
		h.opts.OnState(c)
	}
	if !h.opts.NoLifecycleEvents {
		h.opts.Bus.Publish(bus.LifecycleEvent(c.Addr, c.To.String(), h.opts.Now(), c.Err))
	}
}

func (h *Host) load(ctx context.Context, r *spec.Resource) (*Module, error) {
	config := []byte("null")
	if r.Config != cty.NilVal && !r.Config.IsNull() {
		var err error
		if config, err = ctyjson.Marshal(r.Config, r.Config.Type()); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	lim := r.Limits
	if lim.MemoryBytes == 0 {
		lim.MemoryBytes = DefaultMemoryBytes
	}
	if lim.CallTimeout <= 0 {
		lim.CallTimeout = DefaultCallTimeout
	}
	pages := lim.MemoryBytes / 65536
	if pages < 1 {
		pages = 1
	}
	if pages > 65536 {
		pages = 65536
	}
	// A file seen before, unchanged (same inode, size, mtime and ctime),
	// whose module is compiled already, is neither read nor hashed again
	// (spec.FileSHA256 remembers it): a restart only instantiates.
	hash, err := spec.FileSHA256(r.Source)
	if err != nil {
		return nil, err
	}
	if r.SHA256 != "" && r.SHA256 != hash {
		return nil, fmt.Errorf("its sha256 is %s, the configuration pins %s", hash, r.SHA256)
	}
	rt, c, err := h.compile(ctx, r.Addr, hash, nil, uint32(pages))
	if errors.Is(err, errNeedBytes) {
		var bin []byte
		if bin, err = os.ReadFile(r.Source); err == nil {
			// What is compiled is what was read: its own hash, should the
			// file have changed since it was hashed.
			sum := sha256.Sum256(bin)
			hash = hex.EncodeToString(sum[:])
			if r.SHA256 != "" && r.SHA256 != hash {
				return nil, fmt.Errorf("its sha256 is %s, the configuration pins %s", hash, r.SHA256)
			}
			rt, c, err = h.compile(ctx, r.Addr, hash, bin, uint32(pages))
		}
	}
	if err != nil {
		return nil, err
	}
	m := &Module{
		h: h, addr: r.Addr, hash: hash, config: config, limits: lim, grants: r.Grants,
		rt: rt, compiled: c, wake: make(chan struct{}, 1),
	}
	if h.opts.KV != nil {
		m.kv = h.opts.KV(r.Addr)
	}
	m.bus, m.logf = h.opts.Bus, h.opts.Log
	m.state.Store(int32(StateLoaded))
	return m, nil
}

// errNeedBytes: compile has no compiled module for a hash known from a
// file's identity, and needs the file's bytes.
var errNeedBytes = errors.New("wasm: the module's bytes are needed")
