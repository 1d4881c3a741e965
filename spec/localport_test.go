package spec

import "testing"

// TestLocalPort: the port of this host a check reaches, when it reaches
// one: loopback, unspecified or localhost, with the scheme's port by
// default; none for another host or an exec check.
func TestLocalPort(t *testing.T) {
	for _, tc := range []struct {
		h    Health
		port int
		ok   bool
	}{
		{Health{Kind: HealthHTTP, HTTP: "http://127.0.0.1:8191/"}, 8191, true},
		{Health{Kind: HealthHTTP, HTTP: "http://localhost/healthz"}, 80, true},
		{Health{Kind: HealthHTTP, HTTP: "https://[::1]/"}, 443, true},
		{Health{Kind: HealthTCP, TCP: "0.0.0.0:5432"}, 5432, true},
		{Health{Kind: HealthTCP, TCP: "10.1.2.3:5432"}, 0, false},
		{Health{Kind: HealthHTTP, HTTP: "http://db.internal:80/"}, 0, false},
		{Health{Kind: HealthExec, Exec: []string{"true"}}, 0, false},
	} {
		port, ok := tc.h.LocalPort()
		if port != tc.port || ok != tc.ok {
			t.Errorf("LocalPort(%+v) = %d, %v; want %d, %v", tc.h, port, ok, tc.port, tc.ok)
		}
	}
}
