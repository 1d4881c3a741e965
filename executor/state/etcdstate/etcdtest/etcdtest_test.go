package etcdtest

import (
	"net"
	"testing"
	"time"
)

// A member whose port another process took before it could bind it has
// the cluster started again on new ports, instead of failing the test
// (TestLostWhenLeaseGone failed so once, on a machine busy with other
// tests).
func TestStartRetriesWhenAPortIsTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	first := true
	pickAddr = func(t testing.TB, ip string) string {
		if first {
			first = false
			return taken.Addr().String()
		}
		return freeAddr(t, ip)
	}
	defer func() { pickAddr = freeAddr }()
	c := Start(t, 1)
	if got := c.Members[0].ClientURL; got == "http://"+taken.Addr().String() {
		t.Fatalf("the member kept the taken address %s", got)
	}
	if err := c.WaitHealthy(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}
