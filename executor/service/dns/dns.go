// Package dns is the agent's DNS server: it answers, for the zone it is
// given (default "orch.internal."), A, AAAA and SRV records of the
// instances that the service registry holds as ready, and nothing else.
//
//	api.<zone>      every ready instance of service "api"
//	0.api.<zone>    instance "0" of it (its count index or for_each key)
//	_api._tcp.<zone> SRV, as RFC 2782 spells it (the same as api.<zone>)
//
// Questions outside the zone are REFUSED, never forwarded: this server is
// not a resolver. Answers carry TTL 0, since an instance leaves as soon as
// it stops being ready. It serves UDP and TCP on the same address: TCP
// with github.com/miekg/dns's server, UDP with a loop of its own (udp.go)
// that answers the usual questions from a table of packed replies.
package dns

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	mdns "github.com/miekg/dns"
	"github.com/orch-dev/orch/executor/service"
)

// DefaultZone is the zone served when none is declared.
const DefaultZone = "orch.internal."

// Server answers DNS questions from a registry's view.
type Server struct {
	zone string // lower case, ends with "."
	reg  *service.Registry
	udp  *mdns.Server // only for a wildcard address (see udp.go)
	tcp  *mdns.Server
	addr string
	wg   sync.WaitGroup

	fast      *udpServer
	table     atomic.Pointer[replies]
	rebuild   chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

// Listen binds addr (UDP and TCP) and serves zone from reg until Close.
// A bound address that is in use is one *service.ListenError naming the
// listener; nothing is left bound then.
func Listen(addr, zone string, reg *service.Registry) (*Server, error) {
	return listen(addr, zone, reg, udpSockets())
}

// listen is Listen with n UDP sockets on the address (see udp.go).
func listen(addr, zone string, reg *service.Registry, n int) (*Server, error) {
	if zone == "" {
		zone = DefaultZone
	}
	zone = mdns.Fqdn(strings.ToLower(zone))
	conns, ln, err := listenBoth(addr, n)
	if err != nil {
		return nil, service.NewListenError("dns", addr, err)
	}
	pc := conns[0]
	s := &Server{zone: zone, reg: reg, addr: pc.LocalAddr().String(), rebuild: make(chan struct{}, 1), closed: make(chan struct{})}
	s.table.Store(&replies{})
	s.tcp = &mdns.Server{Listener: ln, Handler: s}
	servers := []*mdns.Server{s.tcp}
	if len(conns) == 1 && pc.LocalAddr().(*net.UDPAddr).IP.IsUnspecified() {
		// Replies must leave from the address each question came to:
		// miekg/dns's server does that (with IP_PKTINFO).
		s.udp = &mdns.Server{PacketConn: pc, Handler: s, UDPSize: 65535}
		servers = append(servers, s.udp)
	} else {
		s.fast = newUDPServer(s, conns)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.buildReplies()
		}()
	}
	// Returned once each server serves: a Close before that found a
	// server "not started", left it, and then waited for it forever.
	started := make(chan error, 2*len(servers))
	for _, srv := range servers {
		srv.NotifyStartedFunc = func() { started <- nil }
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				started <- err
			}
		}()
	}
	for range servers {
		if err := <-started; err != nil {
			s.Close()
			return nil, service.NewListenError("dns", addr, err)
		}
	}
	return s, nil
}

// listenBoth binds n UDP sockets and a TCP listener on the same port of
// addr. When addr says port 0, the port UDP got may be in use for TCP
// (by any connection from it): then another port is tried, as the kernel
// would have chosen one that is free for both.
func listenBoth(addr string, n int) ([]*net.UDPConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	for attempt := 0; ; attempt++ {
		conns, err := listenUDP(addr, n)
		if err != nil {
			return nil, nil, err
		}
		// TCP on the port UDP got. Bound without SO_REUSEPORT, it is also
		// what tells a second server on the same address that it is in
		// use.
		ln, err := net.Listen("tcp", conns[0].LocalAddr().String())
		if err == nil {
			return conns, ln, nil
		}
		for _, c := range conns {
			c.Close()
		}
		if port != "0" || !errors.Is(err, syscall.EADDRINUSE) || attempt == 20 {
			return nil, nil, err
		}
	}
}

// Addr is the address served (the port chosen when addr said 0).
func (s *Server) Addr() string { return s.addr }

// Zone is the zone served, ending with ".".
func (s *Server) Zone() string { return s.zone }

// Close stops serving and releases the address.
func (s *Server) Close() error {
	ctx := context.Background()
	first := false
	s.closeOnce.Do(func() { close(s.closed); first = true })
	if !first {
		return errors.New("dns server on " + s.addr + " already closed")
	}
	err := s.tcp.ShutdownContext(ctx)
	if s.udp != nil {
		err = errors.Join(err, s.udp.ShutdownContext(ctx))
	}
	if s.fast != nil {
		err = errors.Join(err, s.fast.close())
	}
	s.wg.Wait()
	return err
}

// Name is the DNS name of a service's instances, or of one instance when
// label is not "": "api.orch.internal." or "0.api.orch.internal.".
func Name(zone, svc, label string) string {
	zone = mdns.Fqdn(zone)
	if label == "" {
		return svc + "." + zone
	}
	return label + "." + svc + "." + zone
}

// ServeDNS answers one question.
func (s *Server) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	m := s.Answer(req)
	if m == nil {
		return
	}
	if w.RemoteAddr() != nil && w.RemoteAddr().Network() == "udp" {
		m.Truncate(udpSize(req))
	}
	w.WriteMsg(m)
}

// Answer builds the reply to req (nil: none is sent).
func (s *Server) Answer(req *mdns.Msg) *mdns.Msg { return s.answer(req, s.reg.View()) }

// answer builds the reply to req from the view v.
func (s *Server) answer(req *mdns.Msg, v *service.View) *mdns.Msg {
	if req.Response {
		return nil
	}
	m := new(mdns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = false
	if o := req.IsEdns0(); o != nil {
		m.SetEdns0(mdns.DefaultMsgSize, false)
	}
	if req.Opcode != mdns.OpcodeQuery {
		m.Rcode = mdns.RcodeNotImplemented
		return m
	}
	if len(req.Question) != 1 {
		m.Rcode = mdns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if !mdns.IsSubDomain(s.zone, name) || (q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY) {
		m.Rcode = mdns.RcodeRefused
		return m
	}
	m.Authoritative = true
	if name == s.zone {
		switch q.Qtype {
		case mdns.TypeSOA, mdns.TypeANY:
			m.Answer = append(m.Answer, s.soa(v))
		case mdns.TypeNS:
			m.Answer = append(m.Answer, &mdns.NS{Hdr: hdr(s.zone, mdns.TypeNS), Ns: "ns." + s.zone})
		default:
			m.Ns = append(m.Ns, s.soa(v))
		}
		return m
	}
	labels := mdns.SplitDomainName(strings.TrimSuffix(name, "."+s.zone))
	var svc, label string
	switch {
	case len(labels) == 1:
		svc = labels[0]
	case len(labels) == 2 && strings.HasPrefix(labels[0], "_") && labels[1] == "_tcp":
		svc = labels[0][1:]
	case len(labels) == 2:
		label, svc = labels[0], labels[1]
	}
	found := false
	if svc != "" {
		v.Each(svc, func(inst *service.Instance) {
			if label != "" && inst.Label != label {
				return
			}
			found = true
			s.records(m, name, q.Qtype, inst)
		})
	}
	switch {
	case !found:
		m.Rcode = mdns.RcodeNameError
		m.Ns = append(m.Ns, s.soa(v))
	case len(m.Answer) == 0:
		m.Ns = append(m.Ns, s.soa(v)) // the name exists, without this type
	}
	return m
}

// records adds inst's records of type qt at name to m: its address (A or
// AAAA, once per address), or its SRV with the target's address in the
// additional section.
func (s *Server) records(m *mdns.Msg, name string, qt uint16, inst *service.Instance) {
	ip := hostIP(inst.Host)
	if qt == mdns.TypeA || qt == mdns.TypeAAAA || qt == mdns.TypeANY {
		if rr := addrRR(name, ip, qt); rr != nil && !hasRR(m.Answer, rr) {
			m.Answer = append(m.Answer, rr)
		}
	}
	if qt == mdns.TypeSRV || qt == mdns.TypeANY {
		target := Name(s.zone, inst.Service, inst.Label)
		m.Answer = append(m.Answer, &mdns.SRV{Hdr: hdr(name, mdns.TypeSRV), Priority: 0, Weight: 1,
			Port: uint16(inst.Port), Target: target})
		if rr := addrRR(target, ip, mdns.TypeANY); rr != nil && !hasRR(m.Extra, rr) {
			m.Extra = append(m.Extra, rr)
		}
	}
}

// hostIP is the address clients reach an instance at: an unspecified one
// (it listens on all addresses) is the loopback address.
func hostIP(host string) net.IP {
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return nil
	case ip.IsUnspecified() && ip.To4() != nil:
		return net.IPv4(127, 0, 0, 1)
	case ip.IsUnspecified():
		return net.IPv6loopback
	}
	return ip
}

func addrRR(name string, ip net.IP, qt uint16) mdns.RR {
	if ip == nil {
		return nil
	}
	if v4 := ip.To4(); v4 != nil {
		if qt == mdns.TypeA || qt == mdns.TypeANY {
			return &mdns.A{Hdr: hdr(name, mdns.TypeA), A: v4}
		}
		return nil
	}
	if qt == mdns.TypeAAAA || qt == mdns.TypeANY {
		return &mdns.AAAA{Hdr: hdr(name, mdns.TypeAAAA), AAAA: ip}
	}
	return nil
}

func hasRR(rrs []mdns.RR, rr mdns.RR) bool {
	for _, x := range rrs {
		if mdns.IsDuplicate(x, rr) {
			return true
		}
	}
	return false
}

func hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: 0}
}

func (s *Server) soa(v *service.View) mdns.RR {
	return &mdns.SOA{Hdr: hdr(s.zone, mdns.TypeSOA), Ns: "ns." + s.zone, Mbox: "hostmaster." + s.zone,
		Serial: uint32(v.Version), Refresh: 60, Retry: 10, Expire: 600, Minttl: 0}
}
