package execwrap

import (
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// TestArgsParse: what the provider renders the wrapper parses back, and a
// malformed argument is one clear error.
func TestArgsParse(t *testing.T) {
	s := Spec{Umask: 0o027, Rlimits: map[string]uint64{"nofile": 4096, "core": 0},
		Cred: &syscall.Credential{Uid: 101, Gid: 104, Groups: []uint32{103, 104}}, StatusFD: 3,
		Cgroups: map[string]string{"memory": "/sys/fs/cgroup/memory/orch/x"}, Path: "/bin/sleep", Argv: []string{"sleep", "1"}}
	args := s.Args()
	if got := strings.Join(args, " "); got != "--umask 0027 --rlimit core=0 --rlimit nofile=4096 --cred 101:104:103,104 --status-fd 3 --cgroup memory=/sys/fs/cgroup/memory/orch/x -- /bin/sleep sleep 1" {
		t.Fatalf("Args: %s", got)
	}
	back, err := Parse(args)
	if err != nil || !reflect.DeepEqual(back, s) {
		t.Fatalf("Parse(Args) = %+v, %v; want %+v", back, err, s)
	}
	for _, bad := range [][]string{
		{"--umask", "999", "--", "/bin/true", "true"},
		{"--rlimit", "files=1", "--", "/bin/true", "true"},
		{"--cred", "x:1", "--", "/bin/true", "true"},
		{"--cgroup", "memory=relative", "--", "/bin/true", "true"},
		{"--bogus", "1", "--", "/bin/true", "true"},
		{"--", "/bin/true"},
	} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
}
