// Package mdns announces the ready instances of services whose service
// block names an mDNS type (service { mdns = "_http._tcp" }) on the local
// links, as DNS-SD over multicast DNS (RFC 6762, 6763):
//
//   - the responder, github.com/hashicorp/mdns, answers the queries of
//     browsers (PTR, SRV, TXT, A, AAAA) from the registry's current view;
//   - an instance that becomes ready is announced at once, unsolicited,
//     and again a second later (RFC 6762 section 8.3), on every up,
//     multicast-capable interface;
//   - an instance that stops being ready (or the announcer closing) is
//     withdrawn with a goodbye: the same records with TTL 0 (section
//     10.1), so that browsers drop it at once rather than when its TTL
//     runs out.
//
// hashicorp/mdns responds but neither announces nor says goodbye; those
// two are sent here, from a socket bound to port 5353 as the RFC requires
// of responses, and joined to the group on every interface so that the
// responder hears queries from all of them.
//
// An instance is announced as "<service>-<label>-<host name>" of its type
// in "local.", at the host's own addresses (or its service.host, when that
// is a specific address other than loopback), with the port of its
// service block.
package mdns

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	hmdns "github.com/hashicorp/mdns"
	"github.com/miekg/dns"
	"github.com/orch-dev/orch/executor/service"
	"golang.org/x/net/ipv4"
)

var group = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}

// TTL of the records announced (RFC 6762 recommends 120 s for records of
// a host name, 75 min for others; every record here goes with readiness).
const ttl = 120

// Announcer announces a registry's instances.
type Announcer struct {
	host string // "<host name>.local."

	mu       sync.Mutex
	services map[string]*entry // by instance ID
	resp     *hmdns.Server
	send     *ipv4.PacketConn
	sendConn net.PacketConn
	closed   bool
	wg       sync.WaitGroup
	stop     chan struct{}
}

type entry struct {
	inst service.Instance
	svc  *hmdns.MDNSService
}

// New starts the responder and announces reg's instances from now on.
func New(reg *service.Registry) (*Announcer, error) {
	hn, err := os.Hostname()
	if err != nil {
		return nil, err
	}
	hn = strings.SplitN(hn, ".", 2)[0]
	a := &Announcer{host: hn + ".local.", services: map[string]*entry{}, stop: make(chan struct{})}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		})
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:5353")
	if err != nil {
		return nil, fmt.Errorf("binding udp 0.0.0.0:5353: %w", err)
	}
	a.sendConn = pc
	a.send = ipv4.NewPacketConn(pc)
	a.send.SetMulticastTTL(255)
	a.send.SetMulticastLoopback(true)
	for _, ifi := range interfaces() {
		ifi := ifi
		a.send.JoinGroup(&ifi, group) // so that the responder hears this link's queries
	}
	// Drain what the sending socket receives (it is bound to the port
	// too); the responder's own socket answers.
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		buf := make([]byte, 9000)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	a.resp, err = hmdns.NewServer(&hmdns.Config{Zone: a, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("starting the mDNS responder: %w", err)
	}
	reg.Watch(a.changed)
	return a, nil
}

// interfaces lists the up, multicast-capable interfaces other than
// loopback.
func interfaces() []net.Interface {
	ifs, _ := net.Interfaces()
	var out []net.Interface
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagMulticast != 0 && ifi.Flags&net.FlagLoopback == 0 {
			out = append(out, ifi)
		}
	}
	return out
}

// hostIPs are the addresses of the up interfaces other than loopback.
func hostIPs() []net.IP {
	var ips []net.IP
	for _, ifi := range interfaces() {
		addrs, _ := ifi.Addrs()
		for _, ad := range addrs {
			if n, ok := ad.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				ips = append(ips, n.IP)
			}
		}
	}
	return ips
}

// Records answers a query (hashicorp/mdns's Zone).
func (a *Announcer) Records(q dns.Question) []dns.RR {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []dns.RR
	for _, e := range a.services {
		out = append(out, e.svc.Records(q)...)
	}
	return out
}

// InstanceName is how inst is announced ("api-0-myhost").
func (a *Announcer) InstanceName(inst service.Instance) string {
	return inst.Service + "-" + inst.Label + "-" + strings.TrimSuffix(a.host, ".local.")
}

func (a *Announcer) changed(set, removed []service.Instance, _ *service.View) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	for _, inst := range removed {
		if e := a.services[inst.ID]; e != nil {
			delete(a.services, inst.ID)
			a.sendLocked(e, 0)
		}
	}
	for _, inst := range set {
		old := a.services[inst.ID]
		if inst.MDNS == "" {
			if old != nil {
				delete(a.services, inst.ID)
				a.sendLocked(old, 0)
			}
			continue
		}
		if old != nil && old.inst.MDNS == inst.MDNS && old.inst.Port == inst.Port && old.inst.Host == inst.Host && old.inst.Label == inst.Label && old.inst.Service == inst.Service {
			continue
		}
		ips := hostIPs()
		if ip := net.ParseIP(inst.Host); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
			ips = []net.IP{ip}
		}
		svc, err := hmdns.NewMDNSService(a.InstanceName(inst), inst.MDNS, "local.", a.host, inst.Port, ips, []string{"orch=" + inst.Addr})
		if err != nil {
			continue
		}
		if old != nil {
			a.sendLocked(old, 0)
		}
		e := &entry{inst: inst, svc: svc}
		a.services[inst.ID] = e
		a.sendLocked(e, ttl)
		// Again a second later, unless withdrawn meanwhile.
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			select {
			case <-time.After(time.Second):
			case <-a.stop:
				return
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			if a.services[inst.ID] == e && !a.closed {
				a.sendLocked(e, ttl)
			}
		}()
	}
}

// sendLocked multicasts e's records (PTR, SRV, TXT, A/AAAA) with ttl (0:
// a goodbye) on every interface.
func (a *Announcer) sendLocked(e *entry, ttlSecs uint32) {
	rrs := e.svc.Records(dns.Question{Name: e.svc.Service + "." + e.svc.Domain, Qtype: dns.TypePTR, Qclass: dns.ClassINET})
	m := new(dns.Msg)
	m.Response, m.Authoritative = true, true
	for _, rr := range rrs {
		rr = dns.Copy(rr)
		rr.Header().Ttl = ttlSecs
		if rr.Header().Rrtype != dns.TypePTR {
			rr.Header().Class |= 1 << 15 // cache-flush: this host owns these records
		}
		m.Answer = append(m.Answer, rr)
	}
	buf, err := m.Pack()
	if err != nil {
		return
	}
	for _, ifi := range interfaces() {
		ifi := ifi
		if a.send.SetMulticastInterface(&ifi) == nil {
			a.send.WriteTo(buf, nil, group)
		}
	}
}

// Close withdraws every instance (goodbyes) and stops the responder.
func (a *Announcer) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	for id, e := range a.services {
		a.sendLocked(e, 0)
		delete(a.services, id)
	}
	a.closed = true
	close(a.stop)
	a.mu.Unlock()
	a.resp.Shutdown()
	a.sendConn.Close()
	a.wg.Wait()
	return nil
}
