package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestExampleStack runs examples/stack, a stack from Debian's packages
// (postgres made by an initdb job and checked with pg_isready, redis, a
// migration job, two instances of a web app behind orch's proxy and
// behind nginx), as its comments say a user would, on free ports:
//
//   - everything comes up in dependency order: postgres after initdb, the
//     migration once postgres is healthy, the app once the migration is
//     done and redis is healthy, nginx once both instances are healthy;
//   - requests through nginx and through orch's proxy reach both
//     instances, which count them in redis;
//   - an edit of the app's env replaces its instances one at a time while
//     a client of nginx and one of the proxy keep asking: not one request
//     fails, and the new greeting is served;
//   - an edit of nginx.conf.in writes nginx's configuration again and
//     reloads nginx (SIGHUP, the same pid) while a client keeps asking:
//     not one request fails, and nginx serves with the new configuration;
//   - app_count 2 -> 3 under a client of nginx and one of the proxy: the
//     new instance starts, nginx is reloaded with it in its upstream list
//     once it is healthy, not one request fails, and both reach all three;
//   - orch restart -cascade job.migrate runs the migration again, then
//     restarts the app's instances, then nginx;
//   - SIGTERM stops it the other way round (nginx, then the app, then
//     postgres and redis) and orch up exits 0.
func TestExampleStack(t *testing.T) {
	pgBins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	missing := []string{}
	for _, tool := range []string{"python3", "nginx", "redis-server", "redis-cli", "pg_isready", "psql"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(pgBins) == 0 {
		missing = append(missing, "/usr/lib/postgresql/*/bin/postgres")
	}
	if len(missing) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("not installed: %s (make deps installs them)", strings.Join(missing, ", "))
		}
		t.Skipf("not installed: %s (make deps installs them)", strings.Join(missing, ", "))
	}
	root := filepath.Join(t.TempDir(), "stack")
	copyExample(t, filepath.Join("..", "..", "examples", "stack"), root)
	// postgres's files: under a directory every user may create in (as
	// /tmp), since postgres runs as its own user when the test is root
	// (it refuses to run as root) and makes its data directory itself.
	parent, err := os.MkdirTemp("", "orch-stack-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o1777); err != nil {
		t.Fatal(err)
	}
	base := consecutivePorts(t, 13) // postgres, redis, -, -, proxy, nginx, -, -, -, -, app[0], app[1], app[2]
	e := engineTestIn(t, root)
	e.env = []string{fmt.Sprintf("ORCH_VAR_base_port=%d", base), "ORCH_VAR_data=" + filepath.Join(parent, "data"),
		"ORCH_VAR_pg_bin=" + filepath.Dir(pgBins[len(pgBins)-1])}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			t.Fatalf("running as root, postgres needs its user: %v", err)
		}
		e.env = append(e.env, "ORCH_VAR_pg_user=postgres")
	}
	p := e.start("up")
	failed := func() {
		t.Helper()
		for _, ev := range upEvents(p.output()) {
			if ev.Type == "failed" || ev.Type == "error" || ev.Type == "config_invalid" {
				t.Fatalf("%s %s: %s\n%s", ev.Address, ev.Type, ev.Detail, p.output())
			}
		}
	}
	e.waitFor(p, "the stack to be ready and nginx healthy", func() bool {
		ready, nginx := false, false
		for _, ev := range upEvents(p.output()) {
			e.pids.add(ev.Pid)
			ready = ready || ev.Type == "ready"
			nginx = nginx || ev.Type == "healthy" && ev.Address == "daemon.nginx"
		}
		return ready && nginx
	})
	failed()
	// at returns the position of the first event of typ for addr.
	evs := upEvents(p.output())
	at := func(typ, addr string) int {
		for i, ev := range evs {
			if ev.Type == typ && ev.Address == addr {
				return i
			}
		}
		t.Fatalf("no %s event of %s\n%s", typ, addr, p.output())
		return -1
	}
	for _, o := range [][4]string{
		{"completed", "job.initdb", "started", "daemon.postgres"},
		{"healthy", "daemon.postgres", "completed", "job.migrate"}, // a job says when it ends, not when it starts
		{"completed", "job.migrate", "started", "daemon.app[0]"},
		{"completed", "job.migrate", "started", "daemon.app[1]"},
		{"healthy", "daemon.redis", "started", "daemon.app[0]"},
		{"healthy", "daemon.app[0]", "started", "daemon.nginx"},
		{"healthy", "daemon.app[1]", "started", "daemon.nginx"},
	} {
		if at(o[0], o[1]) > at(o[2], o[3]) {
			t.Errorf("%s %s came after %s %s", o[3], o[2], o[1], o[0])
		}
	}

	nginxURL := fmt.Sprintf("http://127.0.0.1:%d/", base+5)
	proxyURL := fmt.Sprintf("http://127.0.0.1:%d/", base+4)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(url string) (string, error) {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			return "", err
		}
		req.Host = "app.localhost"
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		return string(body), err
	}
	for _, url := range []string{nginxURL, proxyURL} {
		seen := map[string]bool{}
		for i := 0; i < 20; i++ {
			body, err := get(url)
			if err != nil || !strings.HasPrefix(body, "Hello from the stack: instance on port ") || !strings.Contains(body, ", visit ") {
				t.Fatalf("GET %s: %v %q", url, err, body)
			}
			seen[strings.Fields(body)[7]] = true
		}
		if len(seen) != 2 {
			t.Errorf("20 requests through %s reached instances %v, want both", url, seen)
		}
	}

	// underLoad does act, then waits for done, while a client of each of
	// urls keeps asking; it returns how many requests each made and the
	// failures.
	underLoad := func(what string, urls []string, act func(), done func() bool) (map[string]int, []string) {
		var stop atomic.Bool
		var wg sync.WaitGroup
		var mu sync.Mutex
		counts := map[string]int{}
		var failures []string
		for _, url := range urls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					_, err := get(url)
					mu.Lock()
					counts[url]++
					if err != nil {
						failures = append(failures, fmt.Sprintf("%s: %v", url, err))
					}
					mu.Unlock()
				}
			}()
		}
		act()
		e.waitFor(p, what, done)
		stop.Store(true)
		wg.Wait()
		return counts, failures
	}
	// edit replaces old by new in the stack's file name.
	edit := func(name, old, new string) {
		t.Helper()
		path := filepath.Join(root, name)
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		edited := strings.Replace(string(src), old, new, 1)
		if edited == string(src) {
			t.Fatalf("%q is not in examples/stack/%s", old, name)
		}
		if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The rolling replace, under two clients.
	counts, failures := underLoad("both instances replaced", []string{nginxURL, proxyURL}, func() {
		edit("main.hcl", `GREETING         = "Hello from the stack"`, `GREETING         = "Hello again"`)
	}, func() bool {
		n := 0
		for _, ev := range upEvents(p.output()) {
			e.pids.add(ev.Pid)
			if ev.Type == "stopped" && strings.HasPrefix(ev.Address, "daemon.app[") && strings.Contains(ev.Detail, "replaced") {
				n++
			}
		}
		return n == 2
	})
	failed()
	t.Logf("requests during the replace: %d through nginx, %d through orch's proxy", counts[nginxURL], counts[proxyURL])
	if len(failures) > 0 {
		t.Errorf("%d requests failed during the rolling replace, the first: %s", len(failures), failures[0])
	}
	if counts[nginxURL] == 0 || counts[proxyURL] == 0 {
		t.Errorf("no request was made during the replace: %v", counts)
	}
	for _, url := range []string{nginxURL, proxyURL} {
		if body, err := get(url); err != nil || !strings.HasPrefix(body, "Hello again: ") {
			t.Errorf("GET %s after the replace: %v %q", url, err, body)
		}
	}

	// An edit of nginx.conf.in: the job that writes it runs again, and
	// nginx is reloaded (SIGHUP), not replaced: its pid stays, no
	// request through it fails, and it serves with the new configuration.
	nginxPid := 0
	for _, ev := range upEvents(p.output()) {
		if ev.Type == "started" && ev.Address == "daemon.nginx" {
			nginxPid = ev.Pid
		}
	}
	before := len(upEvents(p.output()))
	counts, failures = underLoad("nginx reloaded", []string{nginxURL}, func() {
		edit("nginx.conf.in", "proxy_pass http://app;", "proxy_pass http://app;\n            add_header X-Stack-Config reloaded always;")
	}, func() bool {
		for _, ev := range upEvents(p.output())[before:] {
			if ev.Type == "reloaded" && ev.Address == "daemon.nginx" {
				return true
			}
		}
		return false
	})
	failed()
	var wrote, reloaded int = -1, -1
	for i, ev := range upEvents(p.output())[before:] {
		switch {
		case ev.Type == "completed" && ev.Address == "job.nginx_conf":
			wrote = i
		case ev.Type == "reloaded" && ev.Address == "daemon.nginx":
			reloaded = i
			if ev.Pid != nginxPid {
				t.Errorf("nginx reloaded as pid %d, want its pid %d kept", ev.Pid, nginxPid)
			}
		case ev.Address == "daemon.nginx" && (ev.Type == "stopped" || ev.Type == "started" || ev.Type == "stopping"):
			t.Errorf("nginx %s on an edit of its configuration, want it reloaded in place\n%s", ev.Type, p.output())
		}
	}
	if wrote < 0 || wrote > reloaded {
		t.Errorf("job.nginx_conf completed at event %d, nginx reloaded at %d: want the new file written first\n%s", wrote, reloaded, p.output())
	}
	t.Logf("requests during the reload: %d through nginx", counts[nginxURL])
	if len(failures) > 0 {
		t.Errorf("%d requests failed during nginx's reload, the first: %s", len(failures), failures[0])
	}
	// nginx replaces its workers once it has read the file: a request
	// may still meet an old one for a moment.
	e.waitFor(p, "nginx serving with its new configuration", func() bool {
		resp, err := client.Get(nginxURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.Header.Get("X-Stack-Config") == "reloaded"
	})

	// app_count 2 -> 3 under a client of nginx and one of the proxy: the
	// new instance starts, and nginx, whose upstream list the job writes
	// again, is reloaded once it is healthy (not as soon as it started:
	// nginx would send requests to a port nothing listens on yet); not
	// one request fails, and both paths reach the three instances.
	before = len(upEvents(p.output()))
	counts, failures = underLoad("daemon.app[2] healthy and nginx reloaded", []string{nginxURL, proxyURL}, func() {
		edit("main.hcl", "default     = 2\n", "default     = 3\n")
	}, func() bool {
		evs := upEvents(p.output())[before:]
		for _, ev := range evs {
			e.pids.add(ev.Pid)
		}
		return countEvents(evs, "healthy", "daemon.app[2]") > 0 && countEvents(evs, "reloaded", "daemon.nginx") > 0
	})
	failed()
	evs = upEvents(p.output())[before:]
	healthy2, reloadedAt := -1, -1
	for i, ev := range evs {
		if ev.Type == "healthy" && ev.Address == "daemon.app[2]" && healthy2 < 0 {
			healthy2 = i
		}
		if ev.Type == "reloaded" && ev.Address == "daemon.nginx" && reloadedAt < 0 {
			reloadedAt = i
		}
	}
	if reloadedAt < healthy2 {
		t.Errorf("nginx reloaded (event %d) before daemon.app[2] was healthy (event %d)\n%s", reloadedAt, healthy2, p.output())
	}
	t.Logf("requests during the scale-up: %d through nginx, %d through orch's proxy", counts[nginxURL], counts[proxyURL])
	if len(failures) > 0 {
		t.Errorf("%d requests failed during the scale-up, the first: %s", len(failures), failures[0])
	}
	for _, url := range []string{nginxURL, proxyURL} {
		seen := map[string]bool{}
		e.waitFor(p, "three instances answering through "+url, func() bool {
			body, err := get(url)
			if err == nil && len(strings.Fields(body)) > 7 {
				seen[strings.Fields(body)[7]] = true
			}
			return len(seen) == 3
		})
	}

	// restartedSince: after the event numbered before, the three app
	// instances and nginx became healthy again, nginx after them.
	restartedSince := func(before int) func() bool {
		return func() bool {
			healthy := map[string]int{}
			for i, ev := range upEvents(p.output()) {
				e.pids.add(ev.Pid)
				if i >= before && ev.Type == "healthy" {
					healthy[ev.Address] = i
				}
			}
			return len(healthy) == 4 && healthy["daemon.nginx"] > healthy["daemon.app[0]"] &&
				healthy["daemon.nginx"] > healthy["daemon.app[1]"] && healthy["daemon.nginx"] > healthy["daemon.app[2]"]
		}
	}

	// The migration run again, and what depends on it restarted after.
	before = len(upEvents(p.output()))
	r := orch(t, root, e.env, "restart", "-cascade", "job.migrate", root).want(t, 0)
	if !strings.Contains(r.stdout, "job.migrate ran again [pid=") ||
		!strings.Contains(r.stdout, "then, each once what it depends on is ready again: daemon.app[0], daemon.app[1], daemon.app[2], daemon.nginx") {
		t.Fatalf("orch restart -cascade job.migrate: %q", r.stdout)
	}
	e.waitFor(p, "the app's instances and nginx restarted and healthy", restartedSince(before))
	failed()

	// The block of two instances is one cascade: its instances one at a
	// time, then nginx, once (one cascade per instance restarted nginx
	// twice).
	before = len(upEvents(p.output()))
	r = orch(t, root, e.env, "restart", "-cascade", "daemon.app", root).want(t, 0)
	if !strings.Contains(r.stdout, "daemon.app[0] restarted [pid=") ||
		!strings.Contains(r.stdout, "then, each once what it depends on is ready again: daemon.app[1], daemon.app[2], daemon.nginx") {
		t.Fatalf("orch restart -cascade daemon.app: %q", r.stdout)
	}
	e.waitFor(p, "the app's instances and nginx restarted and healthy", restartedSince(before))
	starts := map[string]int{}
	for _, ev := range upEvents(p.output())[before:] {
		if ev.Type == "started" {
			starts[ev.Address]++
		}
	}
	if starts["daemon.app[0]"] != 1 || starts["daemon.app[1]"] != 1 || starts["daemon.app[2]"] != 1 || starts["daemon.nginx"] != 1 || starts["job.migrate"] != 0 {
		t.Errorf("orch restart -cascade daemon.app started %v, want each app instance and nginx once\n%s", starts, p.output())
	}
	failed()

	sigtermExits0(t, p)
	// Stopped dependents first: each stop begins once what depends on it
	// has stopped.
	evs = upEvents(p.output())
	last := func(typ, addr string) int {
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].Type == typ && evs[i].Address == addr {
				return i
			}
		}
		t.Fatalf("no %s event of %s\n%s", typ, addr, p.output())
		return -1
	}
	for _, o := range [][2]string{
		{"daemon.nginx", "daemon.app[0]"}, {"daemon.nginx", "daemon.app[1]"}, {"daemon.nginx", "daemon.app[2]"},
		{"daemon.app[0]", "daemon.postgres"}, {"daemon.app[1]", "daemon.postgres"}, {"daemon.app[2]", "daemon.postgres"},
		{"daemon.app[0]", "daemon.redis"}, {"daemon.app[1]", "daemon.redis"}, {"daemon.app[2]", "daemon.redis"},
	} {
		if last("stopped", o[0]) > last("stopping", o[1]) {
			t.Errorf("%s was told to stop before %s had stopped\n%s", o[1], o[0], p.output())
		}
	}
}
