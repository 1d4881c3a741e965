package dns

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/orch-dev/orch/executor/service"
)

// The table's replies are, byte for byte, those the slow way gives
// (Server.answer, as miekg/dns's server with ServeDNS would send them),
// for questions in any case, with and without EDNS, RD and CD.
func TestTableRepliesAsTheSlowWay(t *testing.T) {
	reg := service.New()
	// Not listening: no builder replaces the table this test sets.
	s := &Server{zone: DefaultZone, reg: reg}
	reg.Set(api(0, "0", "127.0.0.1", 8080))
	reg.Set(api(1, "1", "::1", 8081))
	v := reg.View()
	s.table.Store(s.buildTable(v))
	names := []string{"api.orch.internal.", "API.Orch.Internal.", "0.api.orch.internal.", "1.API.orch.internal.",
		"_api._tcp.orch.internal.", "orch.internal.", "web.orch.internal.", "example.com."}
	types := []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeSRV, mdns.TypeANY, mdns.TypeSOA, mdns.TypeNS, mdns.TypeMX}
	out := make([]byte, 65535)
	var key [3 + 256]byte
	fast := 0
	for _, name := range names {
		for _, qt := range types {
			for _, edns := range []bool{false, true} {
				for _, rd := range []bool{false, true} {
					q := new(mdns.Msg)
					q.SetQuestion(name, qt)
					q.Id = 4242
					q.RecursionDesired = rd
					q.CheckingDisabled = rd
					if edns {
						q.SetEdns0(1232, false)
					}
					pkt, err := q.Pack()
					if err != nil {
						t.Fatal(err)
					}
					slow := s.slowReply(pkt)
					got := s.fastReply(pkt, out, key[:0])
					if got == nil {
						continue
					}
					fast++
					if !bytes.Equal(got, slow) {
						var a, b mdns.Msg
						a.Unpack(got)
						b.Unpack(slow)
						t.Errorf("%s %s edns=%v rd=%v: the table's reply\n%v\nthe slow way's\n%v", name, mdns.TypeToString[qt], edns, rd, &a, &b)
					}
				}
			}
		}
	}
	if fast < 100 {
		t.Errorf("the table answered %d questions, want every one about a name of the zone of a type it holds", fast)
	}
	// Once the registry changed, the table is not used until it is built
	// again.
	reg.Remove(api(1, "1", "::1", 8081).ID)
	if reg.View() == v {
		t.Fatal("the view did not change")
	}
	s.table.Store(s.buildTable(v))
	q := new(mdns.Msg)
	q.SetQuestion("api.orch.internal.", mdns.TypeAAAA)
	pkt, _ := q.Pack()
	if got := s.fastReply(pkt, out, key[:0]); got != nil {
		t.Error("answered from a table older than the registry's view")
	}
	if testing.AllocsPerRun(100, func() { s.table.Store(s.buildTable(reg.View())) }) == 0 {
		t.Fatal("building allocates nothing?")
	}
	s.table.Store(s.buildTable(reg.View()))
	q.SetQuestion("API.orch.internal.", mdns.TypeA)
	q.SetEdns0(1232, false)
	pkt, _ = q.Pack()
	if n := testing.AllocsPerRun(1000, func() { s.fastReply(pkt, out, key[:0]) }); n != 0 {
		t.Errorf("a question from the table allocates %v times", n)
	}
	if s.fastReply(pkt, out, key[:0]) == nil {
		t.Error("not answered from the table")
	}
}

// A question that finds the table older than the registry's view has it
// built again (and is answered the slow way meanwhile, correctly).
func TestTableBuiltAgainWhenAsked(t *testing.T) {
	reg := service.New()
	s := serve(t, reg)
	for i, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		reg.Set(api(i, fmt.Sprint(i), ip, 8080+i))
		want := []string{"127.0.0.1", "127.0.0.2"}[:i+1]
		if got := short(t, s, "api.orch.internal", "A"); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("after instance %d: %q, want %q", i, got, want)
		}
		deadline := time.Now().Add(20 * time.Second)
		for s.table.Load().view != reg.View() {
			if time.Now().After(deadline) {
				t.Fatal("the table was not built again after a question")
			}
			time.Sleep(time.Millisecond) // polling the builder's result
		}
	}
}
