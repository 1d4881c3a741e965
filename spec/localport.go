package spec

import (
	"net"
	"net/url"
	"strconv"
)

// LocalPort is the port of this host that h's check reaches: an http or
// tcp check of a loopback or unspecified address, or localhost.
func (h *Health) LocalPort() (int, bool) {
	if h == nil {
		return 0, false
	}
	var hostport string
	switch h.Kind {
	case HealthTCP:
		hostport = h.TCP
	case HealthHTTP:
		u, err := url.Parse(h.HTTP)
		if err != nil {
			return 0, false
		}
		hostport = u.Host
		if u.Port() == "" {
			switch u.Scheme {
			case "http":
				hostport = net.JoinHostPort(u.Hostname(), "80")
			case "https":
				hostport = net.JoinHostPort(u.Hostname(), "443")
			}
		}
	default:
		return 0, false
	}
	host, ps, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0, false
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port <= 0 || port > 65535 {
		return 0, false
	}
	if host == "localhost" {
		return port, true
	}
	ip := net.ParseIP(host)
	if ip == nil || !(ip.IsLoopback() || ip.IsUnspecified()) {
		return 0, false
	}
	return port, true
}
