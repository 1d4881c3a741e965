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
// without one its process group's) holds a TCP socket listening on port, on
// any address (providers.ListenerOwner): /proc/net/tcp and tcp6 give the
// listening sockets' inodes, the daemon's /proc/<pid>/fd its sockets'.
func (p *Provider) Listens(ctx context.Context, req providers.ListensRequest) (bool, error) {
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return false, &providers.Error{Op: "listens", Err: fmt.Errorf("%s: %w", req.Addr, err)}
	}
	inodes := listeningInodes(req.Port, req.UDP)
	if len(inodes) == 0 {
		return false, nil
	}
	var pids []int
	if hi.Cgroup != nil {
		pids = hi.Cgroup.Procs()
	}
	if len(pids) == 0 {
		// No cgroup: the members of its process group (a server that a
		// shell started without exec holds the socket, not the shell).
		pids = groupMembers(hi.Pgid)
	}
	for _, pid := range pids {
		if holdsSocket(pid, inodes) {
			return true, nil
		}
	}
	return false, nil
}

// groupMembers lists the processes of process group pgid, from /proc.
func groupMembers(pgid int) []int {
	var out []int
	for _, pid := range listPids() {
		if st, ok := readStat(pid); ok && st.Pgid == pgid {
			out = append(out, pid)
		}
	}
	return out
}

// listeningInodes returns the inodes of the TCP sockets (IPv4 and IPv6)
// listening on port, and with udp of the UDP sockets bound to it and
// connected to nothing (a server's).
func listeningInodes(port int, udp bool) map[string]bool {
	out := map[string]bool{}
	want := fmt.Sprintf(":%04X", port)
	type table struct{ file, state string } // state: TCP_LISTEN 0A, UDP's unconnected 07
	tables := []table{{"/proc/net/tcp", "0A"}, {"/proc/net/tcp6", "0A"}}
	if udp {
		tables = append(tables, table{"/proc/net/udp", "07"}, table{"/proc/net/udp6", "07"})
	}
	for _, t := range tables {
		b, err := os.ReadFile(t.file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // the header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[3] != t.state || !strings.HasSuffix(fs[1], want) {
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
