package process

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/orch-dev/orch/providers"
)

// Listens reports whether a process of the daemon (its cgroup's, or
// without one its main process) holds a TCP socket listening on port, on
// any address (providers.ListenerOwner): /proc/net/tcp and tcp6 give the
// listening sockets' inodes, the daemon's /proc/<pid>/fd its sockets'.
func (p *Provider) Listens(ctx context.Context, req providers.ListensRequest) (bool, error) {
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return false, &providers.Error{Op: "listens", Err: fmt.Errorf("%s: %w", req.Addr, err)}
	}
	inodes := listeningInodes(req.Port)
	if len(inodes) == 0 {
		return false, nil
	}
	pids := []int{hi.Pid}
	if hi.Cgroup != nil {
		if procs := hi.Cgroup.Procs(); len(procs) > 0 {
			pids = procs
		}
	}
	for _, pid := range pids {
		if holdsSocket(pid, inodes) {
			return true, nil
		}
	}
	return false, nil
}

// listeningInodes returns the inodes of the TCP sockets (IPv4 and IPv6)
// listening on port.
func listeningInodes(port int) map[string]bool {
	out := map[string]bool{}
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // the header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[3] != "0A" || !strings.HasSuffix(fs[1], want) {
				continue
			}
			out[fs[9]] = true
		}
	}
	return out
}

// holdsSocket reports whether pid has a descriptor on one of the socket
// inodes.
func holdsSocket(pid int, inodes map[string]bool) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		l, err := os.Readlink(dir + e.Name())
		if err != nil {
			continue
		}
		if in, ok := strings.CutPrefix(l, "socket:["); ok && inodes[strings.TrimSuffix(in, "]")] {
			return true
		}
	}
	return false
}
