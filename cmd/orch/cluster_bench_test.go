package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

const failoverConfig = `orch {
  name = "multi"
}

daemon "web" {
  count   = 3
  command = ["/bin/sh", "-c", "while :; do sleep 1; done", "TOKEN-web-${count.index}"]
  placement {
    spread = true
  }
}
`

// BenchmarkClusterFailover: three orch agent -node processes against a
// 3-member etcd, lease (lock_ttl) 3 s. Each round stops (SIGSTOP) the
// agent that runs the most web instances, and times until every one of
// them runs, supervised, on another node; then SIGCONT, and waits until
// one process runs per instance. Reports the median and the worst of 5
// rounds, in seconds.
//
//	go test -run '^$' -bench ClusterFailover -benchtime 1x ./cmd/orch
func BenchmarkClusterFailover(b *testing.B) {
	c := newClusterTest(b, failoverConfig)
	c.startAll("n1", "n2", "n3")
	addrs := []string{"daemon.web[0]", "daemon.web[1]", "daemon.web[2]"}
	tokens := []string{"web-0", "web-1", "web-2"}
	c.waitFor("every instance running", func() bool {
		_, ok := c.placedAndRunning(addrs...)
		return ok && c.exactlyOne(tokens...)
	})
	for b.Loop() {
		var times []time.Duration
		for round := 0; round < 5; round++ {
			before, _ := c.placedAndRunning(addrs...)
			per := map[string][]string{}
			for addr, n := range before {
				per[n] = append(per[n], addr)
			}
			victim := ""
			for n, as := range per {
				if victim == "" || len(as) > len(per[victim]) || len(as) == len(per[victim]) && n < victim {
					victim = n
				}
			}
			moved := per[victim]
			cut := time.Now()
			c.nodes[victim].cmd.Process.Signal(syscall.SIGSTOP)
			c.waitFor(victim+"'s instances running elsewhere", func() bool {
				got, ok := c.placedAndRunning(addrs...)
				if !ok {
					return false
				}
				for _, a := range moved {
					if got[a] == victim {
						return false
					}
				}
				return true
			})
			times = append(times, time.Since(cut))
			c.nodes[victim].cmd.Process.Signal(syscall.SIGCONT)
			c.waitFor("one process per instance, "+victim+" back", func() bool {
				return c.exactlyOne(tokens...) && c.liveNodes()[victim]
			})
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		b.ReportMetric(times[len(times)/2].Seconds(), "failover-s")
		b.ReportMetric(times[len(times)-1].Seconds(), "worst-s")
		b.ReportMetric(clusterTTL.Seconds(), "lease-s")
	}
}

// BenchmarkClusterApply1000: three agents; the configuration is edited to
// declare 1,000 sleep daemons (spread); times until each runs, supervised
// by the agent of its node, then the edit back to none until every one
// stopped. The agents apply edits themselves (orch apply plans one node's
// state only).
//
//	go test -run '^$' -bench ClusterApply1000 -benchtime 1x ./cmd/orch
func BenchmarkClusterApply1000(b *testing.B) {
	const n = 1000
	cfg := fmt.Sprintf("orch {\n  name = \"multi\"\n}\n\ndaemon \"w\" {\n  count   = %d\n  command = [\"/bin/sleep\", \"100000\"]\n  placement {\n    spread = true\n  }\n}\n", n)
	c := newClusterTest(b, cfg)
	nodes := []string{"n1", "n2", "n3"}
	empty := "orch {\n  name = \"multi\"\n}\n"
	pids := map[int]bool{}
	running := func() (int, map[string]int) {
		total, per := 0, map[string]int{}
		for _, node := range nodes {
			for _, s := range c.status(node) {
				if s.State == "running" && s.Supervised {
					total++
					per[node]++
					pids[s.Pid] = true
				}
			}
		}
		return total, per
	}
	anyAlive := func() bool {
		for pid := range pids {
			if alive(pid) {
				return true
			}
		}
		return false
	}
	for b.Loop() {
		clear(pids)
		c.startAll(nodes...) // writes the configuration: the timer starts here
		start := time.Now()
		var per map[string]int
		c.waitForLong("1,000 daemons running", func() bool {
			var total int
			total, per = running()
			return total == n
		})
		if len(pids) != n {
			b.Fatalf("%d distinct pids for %d daemons", len(pids), n)
		}
		up := time.Since(start)
		if err := os.WriteFile(filepath.Join(c.dir, "main.hcl"), []byte(empty), 0o644); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		c.waitForLong("every daemon stopped", func() bool {
			total, _ := running()
			return total == 0 && !anyAlive()
		})
		down := time.Since(start)
		b.ReportMetric(up.Seconds(), "apply-s")
		b.ReportMetric(down.Seconds(), "remove-s")
		var counts []string
		for _, node := range nodes {
			counts = append(counts, fmt.Sprintf("%s=%d", node, per[node]))
		}
		b.Logf("1,000 daemons on 3 nodes: %s; up in %s, removed in %s", strings.Join(counts, " "), up.Round(time.Millisecond), down.Round(time.Millisecond))
		b.StopTimer()
		for _, node := range nodes {
			c.nodes[node].cmd.Process.Signal(syscall.SIGTERM)
			<-c.nodes[node].exited
		}
		// The next round starts the agents on the empty project again.
		b.StartTimer()
	}
}
