package spec

import "testing"

// The fast path must agree with the HCL path on everything it accepts and
// refuse what it cannot read exactly.
func TestParseAddressFastAgrees(t *testing.T) {
	for _, s := range []string{
		"daemon.api", "daemon.api[0]", "daemon.api[12]", "job.migrate", "module.compress",
		"runtime.process.host", "runtime.docker.local", "daemon.my_svc-2[3]",
	} {
		fast, ok := parseAddressFast(s)
		if !ok {
			t.Errorf("fast path refused %q", s)
			continue
		}
		if fast.String() != s {
			t.Errorf("fast(%q) renders %q", s, fast.String())
		}
	}
	for _, s := range []string{"", "daemon", "daemon.", "daemon.api[", "daemon.api[-1]", "daemon.api[01]", "daemon.1x", "nope.x", "runtime.docker", "daemon.api.x", `daemon.api["a\"b"]`} {
		if a, ok := parseAddressFast(s); ok {
			t.Errorf("fast path accepted %q as %#v", s, a)
		}
	}
}
