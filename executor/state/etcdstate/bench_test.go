package etcdstate_test

import (
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/executor/state/etcdstate"
)

// reportQuantiles reports the median and the 99th percentile of ds.
func reportQuantiles(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkLockAcquire takes and releases the etcd lock (grant a lease,
// create the lock key, start keeping the lease alive; revoke on close),
// on a 3-member cluster: each op is one Open and one Close of a writer.
func BenchmarkLockAcquire(b *testing.B) {
	c := shared(b)
	cfg := cfgOf(c, "/orch/bench-lock", 0)
	var ds []time.Duration
	for b.Loop() {
		start := time.Now()
		be, err := etcdstate.Open(cfg, state.Options{Operation: "bench"}, false)
		ds = append(ds, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		be.Close()
	}
	reportQuantiles(b, ds)
}

// BenchmarkFencedPut writes one record per op, as the executor does for
// each step: read the meta (revision, serial), read the old record
// (created_at), and one transaction fenced on the lock and the revisions.
func BenchmarkFencedPut(b *testing.B) {
	c := shared(b)
	st, err := state.OpenBackend(filepath.Join(b.TempDir(), "state.db"), cfgOf(c, "/orch/bench-put", 0), state.Options{Operation: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var ds []time.Duration
	i := 0
	for b.Loop() {
		start := time.Now()
		if err := st.Put(inst("bench", i%1000)); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
		i++
	}
	reportQuantiles(b, ds)
}

// BenchmarkList1000 lists 1,000 records (what every plan, apply and
// status reads), on etcd and on the bbolt file.
func BenchmarkList1000(b *testing.B) {
	c := shared(b)
	fill := func(st *state.Store) {
		err := st.Update(func(tx *state.Tx) error {
			for i := range 1000 {
				if err := tx.Put(inst("list", i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, kind := range []string{"etcd", "file"} {
		b.Run(kind, func(b *testing.B) {
			var st *state.Store
			var err error
			path := filepath.Join(b.TempDir(), "state.db")
			if kind == "etcd" {
				st, err = state.OpenBackend(path, cfgOf(c, fmt.Sprintf("/orch/bench-list-%d", time.Now().UnixNano()), 0), state.Options{Operation: "bench"})
			} else {
				st, err = state.Open(path, state.Options{Operation: "bench"})
			}
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			fill(st)
			var ds []time.Duration
			for b.Loop() {
				start := time.Now()
				l, err := st.List()
				if err != nil || len(l) != 1000 {
					b.Fatal(len(l), err)
				}
				ds = append(ds, time.Since(start))
			}
			reportQuantiles(b, ds)
		})
	}
}
