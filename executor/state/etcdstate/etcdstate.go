// Package etcdstate keeps an orch state in etcd: the records, the module
// KV, the lineage and the serial under one key prefix, and a writer lock
// that fences every write.
//
// # Keys
//
//	<prefix>/meta/format       "1"
//	<prefix>/meta/lineage      32 hex digits
//	<prefix>/meta/serial       decimal ASCII
//	<prefix>/meta/moved        the file the state went to (orch state migrate -to file); no other key then
//	<prefix>/instances/<addr>  the JSON record (executor/state record.go), byte for byte as in the bbolt file
//	<prefix>/kv/<ns>/<key>     module KV; ns path-escaped (url.PathEscape), so a "/" in it cannot collide
//	<prefix>/lock              the writer's identity (state.LockInfo, JSON), bound to its lease
//
// # The lock, and fencing
//
// A writer grants a lease (Options: BackendConfig.LockTTL, default 10s)
// and creates the lock key bound to it, in a transaction that succeeds
// only when the key does not exist (CreateRevision == 0). The client keeps
// the lease alive while the writer runs; a writer that dies, or is cut off
// or paused for longer than the TTL, loses the lease, and etcd deletes
// the key: a dead holder's lock lapses by itself, nothing to force.
//
// The lock alone does not keep a paused writer from writing after it
// wakes up (it does not know it lost the lock). So every write is one etcd
// transaction that compares, at the moment etcd applies it:
//
//   - the lock key's CreateRevision with the one this writer created: a
//     lapsed lock (key gone) or a lock taken since by another writer (a
//     new key, a new revision) fails the comparison;
//   - the ModRevision of the serial and of every key written with the
//     revision the transaction read at: nothing was changed under it.
//
// A failed comparison commits nothing; the error wraps state.ErrLockLost
// when the lock is no longer this writer's.
package etcdstate

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/orch-dev/orch/executor/state"
)

// Kind is the backend's name in configuration: orch { backend "etcd" }.
const Kind = "etcd"

// DefaultLockTTL is the lease of the lock when the configuration gives
// none: how long a dead or cut-off writer keeps the state locked.
const DefaultLockTTL = 10 * time.Second

// RequestTimeout bounds each request to etcd. Without a quorum etcd
// answers no request; the operation then fails, and changes nothing,
// after this long.
var RequestTimeout = 5 * time.Second

// lockPoll is the least time between two attempts of a writer waiting
// for the lock.
const lockPoll = 25 * time.Millisecond

// maxTxnOps is how many operations one etcd transaction carries at most
// (etcd's --max-txn-ops defaults to 128), and maxTxnBytes how many bytes
// of values (its request limit is 1.5 MiB). A bigger write (loading a
// whole state) is committed in several transactions, each fenced.
const (
	maxTxnOps   = 128
	maxTxnBytes = 1 << 20
)

// Register makes the etcd backend available to state.Open under Kind.
func Register() { state.RegisterBackend(Kind, Open) }

// Backend is a state kept in etcd. It implements state.Backend.
type Backend struct {
	cli     *clientv3.Client
	cfg     state.BackendConfig
	p       string // the prefix, with a trailing "/"
	lockKey string

	// The writer's lock: its lease and the revision at which its key was
	// created. Zero for a reader.
	lease   clientv3.LeaseID
	lockRev int64
	stopKA  context.CancelFunc
	kaDone  chan struct{}
	lostCh  chan struct{} // closed when the lease is found lapsed

	mu      sync.Mutex
	lineage string
}

// Open connects to the etcd of cfg and opens the state under its prefix:
// for writing (taking the lock as opts say, and creating an empty state
// when there is none) or for reading.
func Open(cfg state.BackendConfig, opts state.Options, readOnly bool) (state.Backend, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("state: the etcd backend needs at least one endpoint")
	}
	if cfg.Prefix == "" || !strings.HasPrefix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("state: the etcd prefix %q must start with /", cfg.Prefix)
	}
	cfg.Prefix = strings.TrimSuffix(cfg.Prefix, "/")
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = DefaultLockTTL
	}
	cli, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	b := &Backend{cli: cli, cfg: cfg, p: cfg.Prefix + "/", lockKey: cfg.Prefix + "/lock"}
	if readOnly {
		err = b.openReader()
	} else {
		err = b.openWriter(opts)
	}
	if err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// NewClient connects to the etcd cfg names (its endpoints and TLS
// files), as the backend does; executor/cluster uses it for the nodes,
// the leader election and the assignments of a multi-node project.
func NewClient(cfg state.BackendConfig) (*clientv3.Client, error) {
	var tlsCfg *tls.Config
	if cfg.CA != "" || cfg.Cert != "" {
		info := transport.TLSInfo{CertFile: cfg.Cert, KeyFile: cfg.Key, TrustedCAFile: cfg.CA}
		var err error
		if tlsCfg, err = info.ClientConfig(); err != nil {
			return nil, fmt.Errorf("state: etcd TLS: %w", err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: RequestTimeout,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(),
		// Detect a dead connection (a member killed, a partition)
		// quickly, and move to another endpoint.
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("state: etcd %v: %w", cfg.Endpoints, err)
	}
	return cli, nil
}

func (b *Backend) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), RequestTimeout)
}

// Where names the state for messages.
func (b *Backend) Where() string {
	return fmt.Sprintf("etcd %s prefix %s", strings.Join(b.cfg.Endpoints, ","), b.cfg.Prefix)
}

// Lineage is the state's lineage.
func (b *Backend) Lineage() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lineage
}

// Err is the error of a failed request to the etcd of cfg, as the
// backend words it: it names the state, and says what a timeout most
// likely means (no quorum).
func Err(cfg state.BackendConfig, what string, err error) error {
	return (&Backend{cfg: cfg}).etcdErr(what, err)
}

// etcdErr is the error of a failed request: it names the state, and says
// what a timeout most likely means.
func (b *Backend) etcdErr(what string, err error) error {
	// The client returns the deadline as a gRPC status, not always
	// wrapping context.DeadlineExceeded.
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "deadline exceeded") {
		return fmt.Errorf("state: %s: %s: no answer within %s (is a majority of the etcd members up and reachable?): %w", b.Where(), what, RequestTimeout, err)
	}
	return fmt.Errorf("state: %s: %s: %w", b.Where(), what, err)
}

// meta is what <prefix>/meta/ holds, read at one revision.
type meta struct {
	rev     int64 // the revision of the read
	exists  bool
	format  int
	lineage string
	serial  uint64
	serRev  int64 // ModRevision of the serial
	moved   string
}

func (b *Backend) readMeta(ctx context.Context) (meta, error) {
	resp, err := b.cli.Get(ctx, b.p+"meta/", clientv3.WithPrefix())
	if err != nil {
		return meta{}, b.etcdErr("read", err)
	}
	return b.parseMeta(resp.Header.Revision, resp.Kvs)
}

func (b *Backend) parseMeta(rev int64, kvs []*mvccpb.KeyValue) (meta, error) {
	m := meta{rev: rev}
	for _, kv := range kvs {
		switch strings.TrimPrefix(string(kv.Key), b.p+"meta/") {
		case "format":
			m.exists = true
			f, err := strconv.Atoi(string(kv.Value))
			if err != nil || f < 1 {
				return m, fmt.Errorf("state: %s: invalid format %q", b.Where(), kv.Value)
			}
			m.format = f
		case "lineage":
			m.lineage = string(kv.Value)
		case "serial":
			s, err := strconv.ParseUint(string(kv.Value), 10, 64)
			if err != nil {
				return m, fmt.Errorf("state: %s: invalid serial %q", b.Where(), kv.Value)
			}
			m.serial, m.serRev = s, kv.ModRevision
		case "moved":
			m.moved = string(kv.Value)
		}
	}
	if m.format > state.FormatVersion {
		return m, fmt.Errorf("%w: %s has state format %d, and this orch reads format %d or older; use a newer orch",
			state.ErrUnsupportedFormat, b.Where(), m.format, state.FormatVersion)
	}
	return m, nil
}

func (b *Backend) openReader() error {
	ctx, cancel := b.ctx()
	defer cancel()
	m, err := b.readMeta(ctx)
	if err != nil {
		return err
	}
	if m.moved != "" {
		return &state.MovedError{Where: b.Where(), To: m.moved}
	}
	if !m.exists {
		return fmt.Errorf("state: no state in %s: %w", b.Where(), fs.ErrNotExist)
	}
	b.lineage = m.lineage
	return nil
}

func (b *Backend) openWriter(opts state.Options) error {
	if err := b.lock(opts); err != nil {
		return err
	}
	ctx, cancel := b.ctx()
	defer cancel()
	m, err := b.readMeta(ctx)
	if err != nil {
		return err
	}
	switch {
	case m.moved != "" && !opts.Import:
		return &state.MovedError{Where: b.Where(), To: m.moved}
	case m.exists && opts.Import && m.moved == "":
		n, err := b.cli.Get(ctx, b.p+"instances/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return b.etcdErr("read", err)
		}
		if n.Count > 0 || m.serial > 0 {
			return fmt.Errorf("state: %s already holds a state (serial %d, %d records): orch will not merge two states; remove it (etcdctl del --prefix %s/) if it is not needed",
				b.Where(), m.serial, n.Count, b.cfg.Prefix)
		}
		b.lineage = m.lineage
		return nil
	case m.exists && m.moved == "":
		b.lineage = m.lineage
		return nil
	}
	// A new state: meta keys, in one fenced transaction. An import
	// replaces the lineage with the migrated state's.
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return err
	}
	lineage := hex.EncodeToString(raw[:])
	resp, err := b.cli.Txn(ctx).If(b.fence()).Then(
		clientv3.OpDelete(b.p+"meta/moved"),
		clientv3.OpPut(b.p+"meta/format", strconv.Itoa(state.FormatVersion)),
		clientv3.OpPut(b.p+"meta/lineage", lineage),
		clientv3.OpPut(b.p+"meta/serial", "0"),
	).Commit()
	if err != nil {
		return b.etcdErr("create the state", err)
	}
	if !resp.Succeeded {
		return b.lost()
	}
	b.lineage = lineage
	return nil
}

// fence is the comparison every write makes: the lock key is still the
// one this writer created.
func (b *Backend) fence() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(b.lockKey), "=", b.lockRev)
}

// lock takes the writer lock: a lease, and the lock key bound to it when
// no one holds it, waiting up to opts.LockTimeout.
func (b *Backend) lock(opts state.Options) error {
	host, _ := os.Hostname()
	info, _ := json.Marshal(state.LockInfo{Pid: os.Getpid(), Operation: opts.Operation,
		Since: time.Now().UTC().Truncate(time.Second), Host: host})
	ttl := int64((b.cfg.LockTTL + time.Second - 1) / time.Second)
	// The lease is granted afresh for an attempt once half its TTL has
	// gone by: nothing keeps it alive while this writer waits for
	// another's lock, and a put bound to a lapsed lease fails.
	var granted time.Time
	grant := func() error {
		ctx, cancel := b.ctx()
		g, err := b.cli.Grant(ctx, ttl)
		cancel()
		if err != nil {
			return b.etcdErr("grant the lock's lease", err)
		}
		b.lease, granted = g.ID, time.Now()
		return nil
	}
	deadline := time.Now().Add(opts.LockTimeout)
	for {
		if time.Since(granted) > time.Duration(ttl)*time.Second/2 {
			if err := grant(); err != nil {
				return err
			}
		}
		ctx, cancel := b.ctx()
		resp, err := b.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(b.lockKey), "=", 0)).
			Then(clientv3.OpPut(b.lockKey, string(info), clientv3.WithLease(b.lease))).
			Else(clientv3.OpGet(b.lockKey)).
			Commit()
		cancel()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			granted = time.Time{} // it lapsed on the way: another one
			continue
		}
		if err != nil {
			return b.etcdErr("take the lock", err)
		}
		if resp.Succeeded {
			b.lockRev = resp.Header.Revision
			break
		}
		left := time.Until(deadline)
		if left <= 0 {
			le := &state.LockedError{Path: "etcd key " + b.lockKey + " at " + strings.Join(b.cfg.Endpoints, ",")}
			if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
				json.Unmarshal(r.Kvs[0].Value, &le.LockInfo)
			}
			return le
		}
		// Wait for the holder's key to go (released, or lapsed) rather
		// than retry the transaction: each attempt is a raft proposal.
		// The watch starts after the revision the attempt saw, so no
		// deletion is missed; it is cut every second all the same, and
		// by the deadline.
		wctx, wcancel := context.WithTimeout(clientv3.WithRequireLeader(context.Background()), min(left, time.Second))
		for wr := range b.cli.Watch(wctx, b.lockKey, clientv3.WithRev(resp.Header.Revision+1)) {
			gone := false
			for _, ev := range wr.Events {
				gone = gone || ev.Type == clientv3.EventTypeDelete
			}
			if gone || wr.Err() != nil {
				break
			}
		}
		wcancel()
		time.Sleep(lockPoll) // not a busy loop when the watch fails at once
	}
	// Keep the lease alive while this process runs. The client renews it
	// every TTL/3; when this process is paused or cut off past the TTL,
	// etcd revokes it and deletes the lock key, and the fence refuses
	// every write made after.
	kctx, stop := context.WithCancel(context.Background())
	ch, err := b.cli.KeepAlive(kctx, b.lease)
	if err != nil {
		stop()
		return b.etcdErr("keep the lock's lease alive", err)
	}
	b.stopKA = stop
	b.kaDone = make(chan struct{})
	b.lostCh = make(chan struct{})
	go func() {
		defer close(b.kaDone)
		for range ch {
		}
		// The client closes the channel when the lease is gone (it
		// lapsed, or was revoked) or when Close stops it.
		if kctx.Err() == nil {
			close(b.lostCh)
		}
	}()
	return nil
}

// Lost is closed when the writer's lease is found lapsed: the lock is no
// longer this writer's, and every write will be refused. A long-running
// writer (orch up, the agent) should stop what it is doing. Nil for a
// reader.
func (b *Backend) Lost() <-chan struct{} { return b.lostCh }

// CheckLock returns nil when the lock key is still this writer's, and
// the error of lost otherwise.
func (b *Backend) CheckLock() error {
	ctx, cancel := b.ctx()
	defer cancel()
	resp, err := b.cli.Get(ctx, b.lockKey)
	if err != nil {
		return b.etcdErr("read the lock", err)
	}
	if len(resp.Kvs) == 1 && resp.Kvs[0].CreateRevision == b.lockRev {
		return nil
	}
	return b.lost()
}

// lost is the error of a write whose fence failed: the lock is no longer
// this writer's (or, if it still is, a key was changed under the
// transaction, which only a process writing without the lock can do).
func (b *Backend) lost() error {
	ctx, cancel := b.ctx()
	defer cancel()
	resp, err := b.cli.Get(ctx, b.lockKey)
	if err != nil {
		return fmt.Errorf("%w: %s: the write was refused, and reading the lock failed: %v; nothing of it was committed", state.ErrLockLost, b.Where(), err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != b.lockRev {
		holder := "no one holds it now"
		if len(resp.Kvs) > 0 {
			var li state.LockInfo
			json.Unmarshal(resp.Kvs[0].Value, &li)
			holder = fmt.Sprintf("pid %d on host %s holds it now (%s since %s)", li.Pid, li.Host, li.Operation, li.Since.Format(time.RFC3339))
		}
		return fmt.Errorf("%w: %s: this orch's lease lapsed (it was paused or cut off from etcd for more than %s) and %s; nothing was written",
			state.ErrLockLost, b.Where(), b.cfg.LockTTL, holder)
	}
	return fmt.Errorf("state: %s: a key was changed under this write by a process that does not hold the lock; the write was refused and nothing of it was committed", b.Where())
}

// Close releases the lock (revoking the lease deletes the lock key) and
// the connection.
func (b *Backend) Close() error {
	var err error
	if b.stopKA != nil {
		b.stopKA()
		<-b.kaDone
		b.stopKA = nil
	}
	if b.lease != 0 {
		ctx, cancel := b.ctx()
		_, err = b.cli.Revoke(ctx, b.lease)
		cancel()
		b.lease = 0
		if err != nil && !strings.Contains(err.Error(), "requested lease not found") {
			err = b.etcdErr("release the lock", err)
		} else {
			err = nil
		}
	}
	if cerr := b.cli.Close(); err == nil && cerr != nil && !errors.Is(cerr, context.Canceled) {
		err = cerr
	}
	return err
}

// View runs fn on the state as of one revision.
func (b *Backend) View(fn func(state.BackendTx) error) error {
	ctx, cancel := b.ctx()
	defer cancel()
	m, err := b.readMeta(ctx)
	if err != nil {
		return err
	}
	if err := b.check(m); err != nil {
		return err
	}
	return fn(&tx{b: b, ctx: ctx, m: m})
}

func (b *Backend) check(m meta) error {
	if m.moved != "" {
		return &state.MovedError{Where: b.Where(), To: m.moved}
	}
	if !m.exists {
		return fmt.Errorf("state: %s holds no state any more (its keys were deleted)", b.Where())
	}
	return nil
}

// Update runs fn on the state as of one revision and commits its writes
// in a fenced transaction.
func (b *Backend) Update(fn func(state.BackendTx) (bool, error)) error {
	if b.lockRev == 0 {
		return state.ErrReadOnly
	}
	ctx, cancel := b.ctx()
	defer cancel()
	m, err := b.readMeta(ctx)
	if err != nil {
		return err
	}
	if err := b.check(m); err != nil {
		return err
	}
	t := &tx{b: b, ctx: ctx, m: m, writable: true, writes: map[string]*write{}}
	changed, err := fn(t)
	if err != nil {
		return err
	}
	if !changed && len(t.writes) == 0 && !t.reset {
		return nil
	}
	if err := t.commit(changed); err != nil {
		return err
	}
	if t.reset {
		b.mu.Lock()
		b.lineage = t.m.lineage
		b.mu.Unlock()
	}
	return nil
}

// MoveOut deletes the state, leaving the marker <prefix>/meta/moved = to,
// in one fenced transaction.
func (b *Backend) MoveOut(to string) error {
	ctx, cancel := b.ctx()
	defer cancel()
	resp, err := b.cli.Txn(ctx).If(b.fence()).Then(
		clientv3.OpDelete(b.p+"instances/", clientv3.WithPrefix()),
		clientv3.OpDelete(b.p+"kv/", clientv3.WithPrefix()),
		clientv3.OpDelete(b.p+"meta/format"),
		clientv3.OpDelete(b.p+"meta/lineage"),
		clientv3.OpDelete(b.p+"meta/serial"),
		clientv3.OpPut(b.p+"meta/moved", to),
	).Commit()
	if err != nil {
		return b.etcdErr("move the state out", err)
	}
	if !resp.Succeeded {
		return b.lost()
	}
	return nil
}

// write is one buffered write of a transaction: a put, or a delete when
// del.
type write struct {
	value []byte
	del   bool
}

// tx is a state.BackendTx: reads at the revision m.rev (plus its own
// writes), writes buffered until commit.
type tx struct {
	b        *Backend
	ctx      context.Context
	m        meta
	writable bool
	writes   map[string]*write // full key -> write
	reset    bool              // Reset was called (the lineage changes)
}

func (t *tx) Serial() uint64  { return t.m.serial }
func (t *tx) Lineage() string { return t.m.lineage }

func (t *tx) get(key string) ([]byte, error) {
	if w, ok := t.writes[key]; ok {
		if w.del {
			return nil, nil
		}
		return w.value, nil
	}
	resp, err := t.b.cli.Get(t.ctx, key, clientv3.WithRev(t.m.rev))
	if err != nil {
		return nil, t.b.etcdErr("read "+key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	v := resp.Kvs[0].Value
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// scan calls fn for every key under prefix, in key order, with the
// transaction's own writes applied.
func (t *tx) scan(prefix string, fn func(key string, value []byte) error) error {
	type entry struct {
		k string
		v []byte
	}
	resp, err := t.b.cli.Get(t.ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(t.m.rev))
	if err != nil {
		return t.b.etcdErr("read "+prefix, err)
	}
	entries := make([]entry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		entries = append(entries, entry{string(kv.Key), kv.Value})
	}
	if len(t.writes) > 0 {
		m := make(map[string][]byte, len(entries))
		for _, e := range entries {
			m[e.k] = e.v
		}
		for k, w := range t.writes {
			if !strings.HasPrefix(k, prefix) {
				continue
			}
			if w.del {
				delete(m, k)
			} else {
				m[k] = w.value
			}
		}
		entries = entries[:0]
		for k, v := range m {
			entries = append(entries, entry{k, v})
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].k < entries[j].k })
	}
	for _, e := range entries {
		v := e.v
		if v == nil {
			v = []byte{}
		}
		if err := fn(e.k, v); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) put(key string, value []byte) error {
	if !t.writable {
		return state.ErrReadOnly
	}
	t.writes[key] = &write{value: append([]byte{}, value...)}
	return nil
}

func (t *tx) del(key string) error {
	if !t.writable {
		return state.ErrReadOnly
	}
	t.writes[key] = &write{del: true}
	return nil
}

func (t *tx) recordKey(key []byte) string { return t.b.p + "instances/" + string(key) }

func (t *tx) Record(key []byte) ([]byte, error) { return t.get(t.recordKey(key)) }

func (t *tx) Records(fn func(key, value []byte) error) error {
	p := t.b.p + "instances/"
	return t.scan(p, func(k string, v []byte) error { return fn([]byte(k[len(p):]), v) })
}

func (t *tx) PutRecord(key, value []byte) error { return t.put(t.recordKey(key), value) }
func (t *tx) DeleteRecord(key []byte) error     { return t.del(t.recordKey(key)) }

func (t *tx) nsPrefix(ns string) string { return t.b.p + "kv/" + url.PathEscape(ns) + "/" }

func (t *tx) KVGet(ns, key string) ([]byte, error) { return t.get(t.nsPrefix(ns) + key) }

func (t *tx) KVList(ns, prefix string, fn func(key string, value []byte) error) error {
	p := t.nsPrefix(ns)
	return t.scan(p+prefix, func(k string, v []byte) error { return fn(k[len(p):], v) })
}

func (t *tx) KVPut(ns, key string, value []byte) error { return t.put(t.nsPrefix(ns)+key, value) }
func (t *tx) KVDelete(ns, key string) error            { return t.del(t.nsPrefix(ns) + key) }

func (t *tx) KVDrop(ns string) error {
	var keys []string
	err := t.scan(t.nsPrefix(ns), func(k string, _ []byte) error {
		keys = append(keys, k)
		return nil
	})
	for _, k := range keys {
		t.del(k)
	}
	return err
}

func (t *tx) KVNamespaces() ([]string, error) {
	p := t.b.p + "kv/"
	seen := map[string]bool{}
	var out []string
	err := t.scan(p, func(k string, _ []byte) error {
		esc, _, _ := strings.Cut(k[len(p):], "/")
		ns, err := url.PathUnescape(esc)
		if err != nil {
			return fmt.Errorf("state: %s: KV key %q: %w", t.b.Where(), k, err)
		}
		if !seen[ns] {
			seen[ns] = true
			out = append(out, ns)
		}
		return nil
	})
	return out, err
}

func (t *tx) Reset(lineage string, serial uint64) error {
	if !t.writable {
		return state.ErrReadOnly
	}
	// Delete every key there is (etcd refuses a put of a key a range
	// deletion of the same transaction covers, so the deletions are
	// per key); the puts that follow replace some of them.
	clear(t.writes)
	for _, p := range []string{t.b.p + "instances/", t.b.p + "kv/"} {
		resp, err := t.b.cli.Get(t.ctx, p, clientv3.WithPrefix(), clientv3.WithRev(t.m.rev), clientv3.WithKeysOnly())
		if err != nil {
			return t.b.etcdErr("read "+p, err)
		}
		for _, kv := range resp.Kvs {
			t.writes[string(kv.Key)] = &write{del: true}
		}
	}
	t.reset = true
	t.m.lineage, t.m.serial = lineage, serial
	return nil
}

// commit writes the transaction's writes (and, when changed, the next
// serial) in fenced etcd transactions: one, unless there are more
// operations or bytes than one etcd transaction takes; then each chunk
// is fenced by itself and the serial moves with the last one.
func (t *tx) commit(changed bool) error {
	keys := make([]string, 0, len(t.writes))
	for k := range t.writes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ops []clientv3.Op
	var last []clientv3.Op
	if t.reset {
		last = append(last, clientv3.OpPut(t.b.p+"meta/lineage", t.m.lineage))
	}
	serial := t.m.serial
	if changed {
		serial++
	}
	if changed || t.reset {
		last = append(last, clientv3.OpPut(t.b.p+"meta/serial", strconv.FormatUint(serial, 10)))
	}
	// Fences: the lock, and nothing changed since the revision read: the
	// serial (every change of a record moves it) and each key written.
	base := []clientv3.Cmp{t.b.fence(),
		clientv3.Compare(clientv3.ModRevision(t.b.p+"meta/serial"), "=", t.m.serRev)}
	var cmps []clientv3.Cmp
	size := 0
	flush := func(final bool) error {
		if len(ops) == 0 && !final {
			return nil
		}
		if final {
			ops = append(ops, last...)
		}
		resp, err := t.b.cli.Txn(t.ctx).If(append(append([]clientv3.Cmp{}, base...), cmps...)...).Then(ops...).Commit()
		if err != nil {
			return t.b.etcdErr("write", err)
		}
		if !resp.Succeeded {
			return t.b.lost()
		}
		ops, cmps, size = ops[:0], cmps[:0], 0
		return nil
	}
	for _, k := range keys {
		w := t.writes[k]
		if len(ops)+len(cmps)+len(base)+len(last)+2 > maxTxnOps || size+len(k)+len(w.value) > maxTxnBytes {
			if err := flush(false); err != nil {
				return err
			}
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "<", t.m.rev+1))
		if w.del {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, string(w.value)))
		}
		size += len(k) + len(w.value)
	}
	return flush(true)
}
