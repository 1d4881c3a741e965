package process

import "golang.org/x/sys/unix"

// EndLogdConns ends p's connections to log daemons, as its process's exit
// does (tests of what a log daemon does once a connection ends).
func EndLogdConns(p *Provider) {
	p.mu.Lock()
	conns := make([]*logdConn, 0, len(p.logds))
	for _, c := range p.logds {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		if c.fd >= 0 {
			unix.Close(c.fd)
			c.fd = -1
		}
		c.mu.Unlock()
	}
}
