// Package state is orch's embedded state store: what the executor has
// applied, one record per resource instance, kept in a single bbolt file
// (by default <config dir>/.orch/state.db) next to a lock file
// (state.db.lock).
//
// # What it is for
//
// The executor records every step it commits (an instance started, its
// provider handle, its status, the configuration it was started with) so
// that after a crash, a SIGKILL or a reboot orch finds again what it owns,
// adopts what still runs and starts nothing twice. The planner reads the
// same records as the "observed" side of a diff. WebAssembly and plugin
// modules keep small private state in a key-value namespace of their own
// (see KV).
//
// # Writers, readers and the lock
//
// One writer at a time per state file. Open takes an exclusive flock(2) on
// the lock file and writes the holder's identity into it as JSON
// ({"pid","operation","since","host"}). A second writer, in another process
// or in the same one, fails at once with a *LockedError ("state locked by
// pid N since T ...") or, with Options.LockTimeout, polls until the holder
// releases it. The kernel drops a flock when its holder dies, so a lock is
// never stale and never needs to be forced. The lock file is never removed:
// removing it while held would let a second writer lock a new inode.
//
// The writer keeps the lock for its whole life (an `orch up` may run for
// days) but keeps the bbolt file open only for the duration of each
// transaction. Readers (OpenReadOnly: `orch status`)
// take no orch lock; each read opens the file with a shared bbolt lock,
// reads one consistent snapshot and closes it again. So a reader coexists
// with a long-running writer: it waits at most for the one transaction in
// flight (a few milliseconds) and sees every committed step. A command that
// must exclude writers (`orch plan` by default, like Terraform) uses Open
// with its own operation name and gets the LockedError instead.
//
// # Integrity and ownership
//
// Open and OpenReadOnly check the file before using it (integrity.go):
// the meta pages read with pread (an empty, zero, truncated or non-bbolt
// file is named as such), then a read-only open with the free list loaded
// and a walk of every key and value. Every transaction runs under guard,
// which turns a panic inside bbolt or a fault on the mapped file into a
// *DamagedError (errors.Is ErrDamaged) naming the file and what to do.
// Check adds bbolt's Tx.Check and a decode of every record (orch state
// check). A damaged or empty file is never replaced: a new state file is
// built aside and linked into place. Recover sets a damaged file aside
// under the lock; Backup, Snapshot, ReadSnapshot and Replace serve orch
// state rm, pull and push.
//
// The state directory, the file and the lock file must belong to orch's
// user (or root) and not be writable by others (providers/owned); what
// the store creates is 0700 (directory) and 0600 (files).
//
// # On-disk format (file format 2)
//
// A bbolt file with four top-level buckets:
//
//	meta        "format"  -> "2" (decimal ASCII; FileFormat)
//	            "lineage" -> 32 lowercase hex digits, random, set once at creation
//	            "serial"  -> decimal ASCII, +1 per committed write transaction
//	                         that changed an instance record
//	instances   addr.String() -> JSON record (see Instance; field names in
//	            record.go are the format: addr, runtime, config (the caller's
//	            JSON, compacted), config_apart, config_hash, handle (base64),
//	            status, last_error, created_at, updated_at (RFC 3339, UTC))
//	configs     addr.String() -> the configuration of a record that says
//	            config_apart: compact JSON whose SHA-256 is its config_hash
//	kv          one nested bucket per namespace: key -> value bytes
//
// Put keeps a configuration apart when its SHA-256 is the config hash,
// and leaves one kept apart under the same hash unread and unwritten: a
// status change rewrites a record of a few hundred bytes. File format 1
// had no configs bucket; a writer adds it when it opens such a file, and
// its records move their configurations apart as they are rewritten.
// Snapshots and the other backends keep configurations in their records
// (FormatVersion 1).
//
// A store whose format is newer than this package reads is refused with
// ErrUnsupportedFormat; it is never read or rewritten by an older orch.
// Adding an optional JSON field does not change the format; anything an
// older reader would misread does.
//
// # What it must never do
//
//   - Lose or corrupt a committed step: every write is one bbolt transaction,
//     fsynced before the call returns; a crash leaves the last committed
//     state.
//   - Let two writers in: no write without the lock, no lock that survives
//     its holder, no lock fd inherited by a child process (all files are
//     opened close-on-exec, since the process provider forks daemons).
//   - Hold the whole state in memory, or hold the database file open
//     between transactions.
//   - Interpret handles or configuration: both are opaque bytes from the
//     caller. The caller must not pass sensitive values in Config (store a
//     hash instead); the store writes whatever it is given.
//   - Import the planner or any provider implementation; it depends only on
//     spec (addresses), providers (the Handle type) and providers/owned.
//   - Panic on a damaged file, or replace one (even an empty one) with a
//     new state.
package state
