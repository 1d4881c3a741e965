package main

import (
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/state/etcdstate/etcdtest"
)

// BenchmarkNoopPlanEtcdVsFile: orch plan with nothing to change, for
// 1,000 running daemons (testdata/scale/gen-orch.sh), with the state in
// the file and then, after orch state migrate -to etcd, in a 3-member
// etcd cluster. One iteration; it reports the median wall time of 5 plans
// on each and their ratio.
//
//	go test -run '^$' -bench NoopPlanEtcdVsFile -benchtime 1x ./cmd/orch
func BenchmarkNoopPlanEtcdVsFile(b *testing.B) {
	c := etcdtest.Start(b, 3)
	dir := b.TempDir()
	gen(b, "gen-orch.sh", 1000, dir)
	stateDir := filepath.Join(dir, ".orch")
	b.Cleanup(func() {
		runScale(b, scaleEnv(b), dir, orchBin, "destroy", "-auto-approve")
		stopScale(stateDir)
	})
	env := scaleEnv(b)
	runScale(b, env, dir, orchBin, "apply", "-auto-approve")
	median := func(env []string) time.Duration {
		var ds []time.Duration
		for range 5 {
			r := runScale(b, env, dir, orchBin, "plan", "-no-color")
			if !strings.Contains(r.stdout, "No changes") {
				b.Fatalf("plan is not a no-op:\n%s", tail(r.stdout, 2000))
			}
			ds = append(ds, r.wall)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	for b.Loop() {
		file := median(env)
		envEtcd := append(append([]string{}, env...), etcdEnv(c, "/orch/scale"))
		runScale(b, envEtcd, dir, orchBin, "state", "migrate", "-to", "etcd")
		etcd := median(envEtcd)
		runScale(b, envEtcd, dir, orchBin, "state", "migrate", "-to", "file")
		b.ReportMetric(float64(file.Microseconds())/1000, "file-ms")
		b.ReportMetric(float64(etcd.Microseconds())/1000, "etcd-ms")
		b.ReportMetric(float64(etcd)/float64(file), "etcd/file")
	}
}
