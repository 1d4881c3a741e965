package dns

// The UDP side of the server, built for a steady 20,000 questions a second
// with a short tail on a small machine.
//
// miekg/dns's server starts a goroutine per packet, sets a read deadline
// before each read, unpacks every question into a Msg, builds the answer
// and packs it again; under load the garbage this makes brings the
// collector round often, and the goroutines queue on the socket's write
// lock: that was the 99th percentile of 5.5 ms at 20,000 q/s (p50 0.2 ms).
//
// Here a few sockets on the same address (SO_REUSEPORT, one per P) are
// each read by a goroutine in a loop, with buffers of its own, which
// answers the usual question — one question of
// class IN, at most an OPT record, a name of letters, digits, '-' and '_'
// — from a table of packed replies: the reply to every question about a
// name the zone holds (its apex, every service, every instance, every
// _service._tcp) for the usual types, packed once per view of the
// registry, with and without EDNS. Answering is a map lookup, a copy and
// three patches (the ID, the RD and CD bits, the question's name as the
// client spelled it, same length); nothing is allocated. The table is
// built again, off the serving path, when a question finds it older than
// the registry's view (see buildReplies); a question that comes while it
// is older than the registry's view, or
// that it does not hold, or that is anything unusual, is answered the
// slow way, by the same code the table was built with (Server.answer),
// so both give the same bytes.
//
// A wildcard address (0.0.0.0, ::) keeps miekg/dns's server: its replies
// must leave from the address each question came to (IP_PKTINFO).

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/orch-dev/orch/executor/service"
	"golang.org/x/sys/unix"
)

// tableTypes are the question types the table holds replies to.
var tableTypes = []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeSRV, mdns.TypeANY, mdns.TypeSOA, mdns.TypeNS, mdns.TypeTXT, mdns.TypeHTTPS}

// replies is the table of packed replies for one view of the registry,
// by key: the question's type (2 bytes), 1 when it has an OPT record,
// then its name in wire format, lower case. A reply has ID 0 and the RD
// and CD bits clear.
type replies struct {
	view *service.View
	m    map[string][]byte
}

// stale asks for the table to be built again; it does not wait.
func (s *Server) stale() {
	select {
	case s.rebuild <- struct{}{}:
	default:
	}
}

// buildReplies builds the table again when a question found it older
// than the registry's view, until Close. It is built when questions come
// (a registry that changes while nobody asks costs nothing), and at most
// once per four times as long as the last build took (at least 20 ms):
// for 1,000 instances a build takes 0.1-0.4 s, and a registry changing
// all the time (1,000 daemons starting) would keep a core busy
// otherwise. Meanwhile the slow way answers.
func (s *Server) buildReplies() {
	for {
		select {
		case <-s.closed:
			return
		case <-s.rebuild:
		}
		v := s.reg.View()
		if s.table.Load().view == v {
			continue
		}
		start := time.Now()
		s.table.Store(s.buildTable(v))
		select {
		case <-s.closed:
			return
		case <-time.After(max(20*time.Millisecond, 4*time.Since(start))):
		}
	}
}

func (s *Server) buildTable(v *service.View) *replies {
	names := []string{s.zone}
	seen := map[string]bool{}
	for i := range v.Instances {
		inst := &v.Instances[i]
		if !seen[inst.Service] {
			seen[inst.Service] = true
			names = append(names, Name(s.zone, inst.Service, ""), "_"+inst.Service+"._tcp."+s.zone)
		}
		if inst.Label != "" {
			names = append(names, Name(s.zone, inst.Service, inst.Label))
		}
	}
	t := &replies{view: v, m: make(map[string][]byte, len(names)*len(tableTypes)*2)}
	var wire [256]byte
	for _, name := range names {
		n, err := mdns.PackDomainName(name, wire[:], 0, nil, false)
		if err != nil {
			continue // not a name a question can ask
		}
		for _, qt := range tableTypes {
			for _, edns := range []bool{false, true} {
				req := new(mdns.Msg)
				req.Question = []mdns.Question{{Name: name, Qtype: qt, Qclass: mdns.ClassINET}}
				if edns {
					req.SetEdns0(mdns.DefaultMsgSize, false)
				}
				m := s.answer(req, v)
				if m == nil {
					continue
				}
				b, err := m.Pack()
				if err != nil {
					continue
				}
				key := make([]byte, 0, 3+n)
				key = binary.BigEndian.AppendUint16(key, qt)
				key = append(key, b2i(edns))
				key = append(key, wire[:n]...)
				t.m[string(key)] = b
			}
		}
	}
	return t
}

func b2i(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// udpSockets is how many UDP sockets serve a specific address: one per P
// (up to 4), bound with SO_REUSEPORT, so that the kernel spreads the
// clients over them and no goroutine waits for another's turn on a
// socket.
func udpSockets() int { return min(runtime.GOMAXPROCS(0), 4) }

// listenUDP binds n UDP sockets to addr with SO_REUSEPORT (the first on
// the port addr says, the others on the port it got); a wildcard
// address gets one.
func listenUDP(addr string, n int) ([]*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		return errors.Join(err, serr)
	}}
	if n <= 1 {
		lc.Control = nil
	}
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, err
	}
	conns := []*net.UDPConn{pc.(*net.UDPConn)}
	if conns[0].LocalAddr().(*net.UDPAddr).IP.IsUnspecified() {
		return conns, nil
	}
	for len(conns) < n {
		pc, err := lc.ListenPacket(context.Background(), "udp", conns[0].LocalAddr().String())
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		conns = append(conns, pc.(*net.UDPConn))
	}
	return conns, nil
}

// udpServer reads UDP sockets, each with a goroutine of its own.
type udpServer struct {
	s     *Server
	conns []*net.UDPConn
	wg    sync.WaitGroup
}

func newUDPServer(s *Server, conns []*net.UDPConn) *udpServer {
	u := &udpServer{s: s, conns: conns}
	for _, c := range conns {
		u.wg.Add(1)
		go u.serve(c)
	}
	return u
}

func (u *udpServer) close() error {
	var err error
	for _, c := range u.conns {
		err = errors.Join(err, c.Close())
	}
	u.wg.Wait()
	return err
}

func (u *udpServer) serve(conn *net.UDPConn) {
	defer u.wg.Done()
	in := make([]byte, 65535)
	out := make([]byte, 65535)
	var key [3 + 256]byte
	for {
		n, addr, err := conn.ReadFromUDPAddrPort(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // one bad datagram (or an ICMP error) is no reason to stop
		}
		pkt := in[:n]
		r := u.s.fastReply(pkt, out, key[:0])
		if r == nil {
			r = u.s.slowReply(pkt)
		}
		if r != nil {
			conn.WriteToUDPAddrPort(r, addr)
		}
	}
}

// fastReply writes the reply to the question pkt into out from the table,
// or returns nil when the table cannot answer it.
func (s *Server) fastReply(pkt, out, key []byte) []byte {
	const hdrLen = 12
	if len(pkt) < hdrLen+5 {
		return nil
	}
	t := s.table.Load()
	if t.view != s.reg.View() {
		s.stale() // the registry changed: the table is built again
		return nil
	}
	// A query (QR 0, opcode 0) with one question, nothing in the answer
	// and authority sections, at most an OPT record.
	if pkt[2]&0xf8 != 0 {
		return nil
	}
	be := binary.BigEndian
	if be.Uint16(pkt[4:]) != 1 || be.Uint16(pkt[6:]) != 0 || be.Uint16(pkt[8:]) != 0 || be.Uint16(pkt[10:]) > 1 {
		return nil
	}
	key = append(key, 0, 0, 0)
	off := hdrLen
	for {
		if off >= len(pkt) {
			return nil
		}
		l := int(pkt[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(pkt) || len(key)+1+l > cap(key)-1 {
			return nil // a compression pointer, or too long
		}
		key = append(key, byte(l))
		for _, c := range pkt[off : off+l] {
			switch {
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			default:
				return nil // spelled with escapes by miekg/dns: the slow way
			}
			key = append(key, c)
		}
		off += l
	}
	key = append(key, 0)
	nameEnd := off
	if off+4 > len(pkt) || be.Uint16(pkt[off+2:]) != mdns.ClassINET {
		return nil
	}
	key[0], key[1] = pkt[off], pkt[off+1]
	off += 4
	size := mdns.MinMsgSize
	if be.Uint16(pkt[10:]) == 1 {
		// OPT: the root name, type 41, the UDP size as its class.
		if off+11 > len(pkt) || pkt[off] != 0 || be.Uint16(pkt[off+1:]) != mdns.TypeOPT {
			return nil
		}
		size = max(size, int(be.Uint16(pkt[off+3:])))
		off += 11 + int(be.Uint16(pkt[off+9:]))
		key[2] = 1
	}
	if off != len(pkt) {
		return nil
	}
	r, ok := t.m[string(key)]
	if !ok || len(r) > size || len(r) > len(out) {
		return nil // or it would be truncated: the slow way
	}
	o := out[:len(r)]
	copy(o, r)
	o[0], o[1] = pkt[0], pkt[1]
	o[2] |= pkt[2] & 0x01 // RD
	o[3] |= pkt[3] & 0x10 // CD
	copy(o[hdrLen:nameEnd], pkt[hdrLen:nameEnd])
	return o
}

// slowReply answers pkt as miekg/dns's server with its default accept
// function and ServeDNS would: nil when no reply is sent.
func (s *Server) slowReply(pkt []byte) []byte {
	if len(pkt) < 12 || pkt[2]&0x80 != 0 {
		return nil // not even a header, or a response: no reply (it could amplify)
	}
	be := binary.BigEndian
	opcode := int(pkt[2]>>3) & 0xf
	rcode := mdns.RcodeSuccess
	switch {
	case opcode != mdns.OpcodeQuery && opcode != mdns.OpcodeNotify:
		rcode = mdns.RcodeNotImplemented
	case be.Uint16(pkt[4:]) != 1 || be.Uint16(pkt[6:]) > 1 || be.Uint16(pkt[8:]) > 1 || be.Uint16(pkt[10:]) > 2:
		rcode = mdns.RcodeFormatError
	}
	req := new(mdns.Msg)
	if rcode == mdns.RcodeSuccess {
		if err := req.Unpack(pkt); err != nil {
			rcode = mdns.RcodeFormatError
		}
	}
	var m *mdns.Msg
	if rcode != mdns.RcodeSuccess {
		m = new(mdns.Msg)
		m.Id = be.Uint16(pkt)
		m.Response = true
		m.Opcode = mdns.OpcodeQuery
		if rcode == mdns.RcodeNotImplemented {
			m.Opcode = opcode
		}
		m.Rcode = rcode
	} else if m = s.Answer(req); m == nil {
		return nil
	} else {
		m.Truncate(udpSize(req))
	}
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	return b
}

// udpSize is the largest reply the client of req takes over UDP.
func udpSize(req *mdns.Msg) int {
	size := mdns.MinMsgSize
	if o := req.IsEdns0(); o != nil {
		size = max(int(o.UDPSize()), mdns.MinMsgSize)
	}
	return size
}
