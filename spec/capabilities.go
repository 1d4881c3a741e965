package spec

import (
	"fmt"
	"math"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"
)

// Defaults of the service, backend and listener blocks; docs/language.md
// lists the same values.
const (
	DefaultDNSZone     = "orch.internal."
	DefaultServiceHost = "127.0.0.1"
	DefaultDrain       = 5 * time.Second
	DefaultLockTTL     = 10 * time.Second
	// MinMemoryMax is the smallest memory_max: below it no program starts,
	// and a smaller figure is most likely a unit left out.
	MinMemoryMax = 1 << 20
)

// service reads service { name, host, port, route, mdns, drain }.
func (e *instEval) service(nb *nestedBlock) {
	sv := &Service{Name: e.n.addr.Name, Host: DefaultServiceHost, Drain: DefaultDrain}
	if s, a := e.str(nb, "name"); a != nil {
		if !dnsLabel(s) {
			e.l.errorf(rangePtr(a.Expr.Range()), "Invalid service name",
				"service.name of %s is %q: a service name is a DNS label, 1 to 63 lower-case letters, digits and '-', not starting or ending with '-'.", e.r.Addr, s)
			e.errs = true
		}
		sv.Name = s
	} else if !dnsLabel(sv.Name) {
		e.l.errorf(rangePtr(nb.def), "Invalid service name",
			"The service of %s is named after the daemon, %q, which is not a DNS label (lower-case letters, digits and '-', up to 63): set service.name.", e.r.Addr, sv.Name)
		e.errs = true
	}
	if s, a := e.str(nb, "host"); a != nil {
		if net.ParseIP(s) == nil {
			e.l.errorf(rangePtr(a.Expr.Range()), "Invalid service host",
				"service.host of %s must be an IP address, such as \"127.0.0.1\" or \"::1\"; got %q.", e.r.Addr, s)
			e.errs = true
		}
		sv.Host = s
	}
	if a := nb.attrs["port"]; a != nil {
		if v, ok := e.value(a.Expr, cty.Number, "service.port"); ok && v != cty.NilVal {
			var p int
			if err := gocty.FromCtyValue(v, &p); err != nil || p < 1 || p > 65535 {
				e.l.errorf(rangePtr(a.Expr.Range()), "Invalid port",
					"service.port of %s is %s: a port is a whole number from 1 to 65535.", e.r.Addr, v.AsBigFloat().Text('g', -1))
				e.errs = true
			}
			sv.Port = p
		}
	}
	if s, a := e.str(nb, "route"); a != nil {
		rt, err := ParseRoute(s)
		if err != nil {
			e.l.errorf(rangePtr(a.Expr.Range()), "Invalid route", "service.route of %s: %s.", e.r.Addr, err)
			e.errs = true
		}
		sv.Route = &rt
	}
	if s, a := e.str(nb, "mdns"); a != nil {
		if !validServiceType(s) {
			e.l.errorf(rangePtr(a.Expr.Range()), "Invalid mDNS service type",
				"service.mdns of %s must be a DNS-SD service type, _name._tcp or _name._udp, such as \"_http._tcp\"; got %q.", e.r.Addr, s)
			e.errs = true
		}
		sv.MDNS = s
	}
	e.duration(nb, "drain", &sv.Drain)
	e.r.Service = sv
}

// ParseRoute reads a route: a host and a path prefix ("api.localhost/v1"),
// a host alone (path "/"), or a path alone ("/v1": any host).
func ParseRoute(s string) (Route, error) {
	if s == "" {
		return Route{}, fmt.Errorf("a route must not be empty; write a host and an optional path, such as \"api.localhost/v1\"")
	}
	host, path := s, "/"
	if i := strings.IndexByte(s, '/'); i >= 0 {
		host, path = s[:i], s[i:]
	}
	if strings.Contains(host, ":") || strings.Contains(s, "://") {
		return Route{}, fmt.Errorf("%q: a route is a host name and a path, without scheme or port (the proxy's listen gives those)", s)
	}
	host = strings.ToLower(host)
	if host != "" && !dnsName(host) {
		return Route{}, fmt.Errorf("%q: %q is not a host name", s, host)
	}
	if strings.ContainsAny(path, "?#* ") || strings.Contains(path, "//") {
		return Route{}, fmt.Errorf("%q: the path of a route is a plain prefix, without query, fragment, wildcard, space or empty segment", s)
	}
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	return Route{Host: host, Path: path}, nil
}

// resources reads resources { memory_max, cpu_max, pids_max }.
func (e *instEval) resources(nb *nestedBlock) {
	rs := &e.r.Resources
	if s, a := e.str(nb, "memory_max"); a != nil {
		n, err := ParseSize(s)
		if err == nil && n < MinMemoryMax {
			err = fmt.Errorf("%q is below the least, 1MiB", s)
		}
		if err != nil {
			e.l.errorf(rangePtr(a.Expr.Range()), "Invalid size", "resources.memory_max of %s: %s.", e.r.Addr, err)
			e.errs = true
		} else {
			rs.MemoryMax = n
		}
	}
	if a := nb.attrs["cpu_max"]; a != nil {
		if v, ok := e.value(a.Expr, cty.Number, "resources.cpu_max"); ok && v != cty.NilVal {
			f, _ := v.AsBigFloat().Float64()
			// 1/100 of a core is the least quota a 100 ms period can give.
			if f < 0.01 || f > 4096 || math.IsNaN(f) {
				e.l.errorf(rangePtr(a.Expr.Range()), "Invalid CPU limit",
					"resources.cpu_max of %s is in cores, from 0.01 to 4096 (0.5 is half a core); got %s.", e.r.Addr, v.AsBigFloat().Text('g', -1))
				e.errs = true
			} else {
				rs.CPUMax = f
			}
		}
	}
	if a := nb.attrs["pids_max"]; a != nil {
		if v, ok := e.value(a.Expr, cty.Number, "resources.pids_max"); ok && v != cty.NilVal {
			var n int64
			if err := gocty.FromCtyValue(v, &n); err != nil || n < 1 {
				e.l.errorf(rangePtr(a.Expr.Range()), "Invalid number", "resources.pids_max of %s must be a whole number, 1 or more.", e.r.Addr)
				e.errs = true
			} else {
				rs.PidsMax = n
			}
		}
	}
}

// placement reads placement { node, labels, spread }.
func (e *instEval) placement(nb *nestedBlock) {
	p := &Placement{}
	if s, a := e.str(nb, "node"); a != nil {
		if !validName(s) {
			e.l.errorf(rangePtr(a.Expr.Range()), "Invalid node name",
				"placement.node of %s is %q: a node name uses letters, digits, '-' and '_', starting with a letter.", e.r.Addr, s)
			e.errs = true
		}
		p.Node = s
	}
	if a := nb.attrs["labels"]; a != nil {
		if v, ok := e.value(a.Expr, stringMap, "placement.labels"); ok && v != cty.NilVal {
			p.Labels = map[string]string{}
			for k, x := range v.AsValueMap() {
				p.Labels[k] = x.AsString()
			}
		}
	}
	e.boolean(nb, "spread", &p.Spread)
	e.r.Placement = p
}

// checkServices finds what no single instance can see: a service name or
// a route that two daemons claim. The instances of one daemon share both.
func (l *loader) checkServices() {
	type claim struct {
		block Address
		r     *Resource
	}
	names := map[string]claim{}
	routes := map[Route]claim{}
	for _, r := range l.cfg.Resources {
		sv := r.Service
		if sv == nil {
			continue
		}
		block := r.Addr.Block()
		at := r.Ranges.At("service")
		if prev, ok := names[sv.Name]; ok && prev.block != block {
			l.errorf(&at, "Service name claimed twice",
				"%s and %s (at %s) both publish the service %q; a name belongs to the instances of one daemon. Rename one with service.name.",
				block, prev.block, prev.r.Ranges.At("service"), sv.Name)
		} else if !ok {
			names[sv.Name] = claim{block, r}
		}
		if sv.Route == nil {
			continue
		}
		if prev, ok := routes[*sv.Route]; ok && prev.block != block {
			l.errorf(&at, "Route claimed twice",
				"%s and %s (at %s) both claim the route %q; the proxy could not tell which gets a request. Give one another host or path.",
				block, prev.block, prev.r.Ranges.At("service"), sv.Route.String())
		} else if !ok {
			routes[*sv.Route] = claim{block, r}
		}
	}
}

// decodeProjectBlock reads one block of orch {}: dns, proxy, http or
// backend. Their attributes may use variables and functions only.
func (l *loader) decodeProjectBlock(b *hcl.Block) {
	p := &l.cfg.Project
	content, diags := b.Body.Content(projectBlockSchemas[b.Type])
	l.diags = append(l.diags, diags...)
	if content == nil || diags.HasErrors() {
		return
	}
	var tlsBlocks []*hcl.Block
	for _, nb := range content.Blocks {
		if nb.Type == "tls" {
			tlsBlocks = append(tlsBlocks, nb)
		}
	}
	if len(tlsBlocks) > 1 {
		l.errorf(rangePtr(tlsBlocks[1].DefRange), "Duplicate tls block", "orch.%s already has a tls block at %s; merge the two.", b.Type, tlsBlocks[0].DefRange)
		return
	}
	dup := func(prev hcl.Range) bool {
		if prev.Filename == "" {
			return false
		}
		l.errorf(rangePtr(b.DefRange), "Duplicate "+b.Type+" block", "orch already has a %s block at %s; merge the two.", b.Type, prev)
		return true
	}
	listen := func() (string, bool) {
		a := content.Attributes["listen"]
		s, ok := l.constString(a)
		if !ok {
			return "", false
		}
		if host, port, err := net.SplitHostPort(s); err != nil || !validPort(port) || (host != "" && net.ParseIP(host) == nil && host != "localhost") {
			l.errorf(rangePtr(a.Expr.Range()), "Invalid listen address",
				"orch.%s.listen must be an IP address and port, such as \"127.0.0.1:8080\"; got %q.", b.Type, s)
			return "", false
		}
		return s, true
	}
	switch b.Type {
	case "dns":
		if p.DNS != nil && dup(p.DNS.DeclRange) {
			return
		}
		d := &DNSListener{Zone: DefaultDNSZone, DeclRange: b.DefRange}
		var ok bool
		if d.Listen, ok = listen(); !ok {
			return
		}
		if a := content.Attributes["zone"]; a != nil {
			z, ok := l.constString(a)
			if !ok {
				return
			}
			if !strings.HasSuffix(z, ".") || z == "." || !dnsName(strings.ToLower(strings.TrimSuffix(z, "."))) {
				l.errorf(rangePtr(a.Expr.Range()), "Invalid DNS zone",
					"orch.dns.zone must be a fully qualified domain name ending with a dot, such as %q; got %q.", DefaultDNSZone, z)
				return
			}
			d.Zone = strings.ToLower(z)
		}
		p.DNS = d
	case "proxy":
		if p.Proxy != nil && dup(p.Proxy.DeclRange) {
			return
		}
		x := &ProxyListener{DeclRange: b.DefRange}
		var ok bool
		if x.Listen, ok = listen(); !ok {
			return
		}
		if len(tlsBlocks) == 1 {
			t, ok := l.tlsFiles(tlsBlocks[0], "orch.proxy.tls")
			if !ok {
				return
			}
			if t.Cert == "" || t.Key == "" {
				l.errorf(rangePtr(tlsBlocks[0].DefRange), "Incomplete tls block", "orch.proxy.tls needs both cert and key.")
				return
			}
			x.TLS = t
		}
		p.Proxy = x
	case "http":
		if p.HTTP != nil && dup(p.HTTP.DeclRange) {
			return
		}
		h := &HTTPListener{DeclRange: b.DefRange}
		var ok bool
		if h.Listen, ok = listen(); !ok {
			return
		}
		if a := content.Attributes["token"]; a != nil {
			if h.Token, ok = l.constString(a); !ok {
				return
			}
		}
		p.HTTP = h
	case "backend":
		if p.Backend != nil && dup(p.Backend.DeclRange) {
			return
		}
		kind := b.Labels[0]
		if kind != "etcd" {
			l.errorf(rangePtr(b.LabelRanges[0]), "Unknown backend",
				"orch has the backends \"etcd\" and, when no backend block is declared, the embedded state file; got %q.", kind)
			return
		}
		be := &Backend{Kind: kind, Prefix: "/orch/" + p.Name, LockTTL: DefaultLockTTL, DeclRange: b.DefRange}
		a := content.Attributes["endpoints"]
		v, ok := l.constValue(a, stringList, "orch.backend.endpoints")
		if !ok {
			return
		}
		for _, x := range v.AsValueSlice() {
			ep := x.AsString()
			u := ep
			if i := strings.Index(u, "://"); i >= 0 {
				u = u[i+3:]
			}
			if _, port, err := net.SplitHostPort(u); err != nil || !validPort(port) {
				l.errorf(rangePtr(a.Expr.Range()), "Invalid endpoint",
					"each of orch.backend.endpoints is host:port or a URL with a port, such as \"http://127.0.0.1:2379\"; got %q.", ep)
				return
			}
			be.Endpoints = append(be.Endpoints, ep)
		}
		if len(be.Endpoints) == 0 {
			l.errorf(rangePtr(a.Expr.Range()), "No endpoints", "orch.backend.endpoints must name at least one etcd member.")
			return
		}
		if a := content.Attributes["prefix"]; a != nil {
			s, ok := l.constString(a)
			if !ok {
				return
			}
			if !strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.Contains(s, "//") {
				l.errorf(rangePtr(a.Expr.Range()), "Invalid prefix",
					"orch.backend.prefix is a key prefix starting with '/' and not ending with one, such as \"/orch/app\"; got %q.", s)
				return
			}
			be.Prefix = s
		}
		if a := content.Attributes["lock_ttl"]; a != nil {
			s, ok := l.constString(a)
			if !ok {
				return
			}
			d, err := ParseDuration(s)
			if err == nil && (d < time.Second || d%time.Second != 0) {
				err = fmt.Errorf("%q is not a whole number of seconds, 1s or more (an etcd lease counts in seconds)", s)
			}
			if err != nil {
				l.errorf(rangePtr(a.Expr.Range()), "Invalid duration", "orch.backend.lock_ttl: %s.", err)
				return
			}
			be.LockTTL = d
		}
		if len(tlsBlocks) == 1 {
			t, ok := l.tlsFiles(tlsBlocks[0], "orch.backend.tls")
			if !ok {
				return
			}
			be.TLS = t
		}
		p.Backend = be
	}
}

// tlsFiles reads tls { ca, cert, key }: paths relative to the
// configuration directory.
func (l *loader) tlsFiles(b *hcl.Block, what string) (*TLSFiles, bool) {
	content, diags := b.Body.Content(tlsSchema)
	l.diags = append(l.diags, diags...)
	if content == nil || diags.HasErrors() {
		return nil, false
	}
	t := &TLSFiles{}
	for _, name := range []string{"ca", "cert", "key"} {
		a := content.Attributes[name]
		if a == nil {
			continue
		}
		s, ok := l.constString(a)
		if !ok {
			return nil, false
		}
		if s == "" {
			l.errorf(rangePtr(a.Expr.Range()), "Empty path", "%s.%s must name a file.", what, name)
			return nil, false
		}
		if !filepath.IsAbs(s) {
			s = filepath.Join(l.cfg.Dir, s)
		}
		switch name {
		case "ca":
			t.CA = s
		case "cert":
			t.Cert = s
		case "key":
			t.Key = s
		}
	}
	return t, true
}

// constValue evaluates an attribute that may only use variables and
// functions, converted to ty.
func (l *loader) constValue(a *hcl.Attribute, ty cty.Type, name string) (cty.Value, bool) {
	ctx := &hcl.EvalContext{Functions: l.funcs, Variables: map[string]cty.Value{"var": l.varObject(), "path": l.pathObject()}}
	v, diags := a.Expr.Value(ctx)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	v, _ = v.UnmarkDeep()
	c, err := convertTo(v, ty)
	if err != nil || c.IsNull() || !c.IsWhollyKnown() {
		l.errorf(rangePtr(a.Expr.Range()), "Incorrect attribute value type", "%s must be %s.", name, ty.FriendlyName())
		return cty.NilVal, false
	}
	return c, true
}

// dnsLabel reports whether s is one lower-case DNS label (RFC 1123).
func dnsLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// dnsName reports whether s is a host name of dot-separated labels.
func dnsName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, lab := range strings.Split(s, ".") {
		if !dnsLabel(lab) {
			return false
		}
	}
	return true
}

// validServiceType reports whether s is a DNS-SD type: _name._tcp or
// _name._udp (RFC 6763: the name is 1 to 15 characters).
func validServiceType(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 2 || (parts[1] != "_tcp" && parts[1] != "_udp") || !strings.HasPrefix(parts[0], "_") {
		return false
	}
	name := parts[0][1:]
	return len(name) <= 15 && dnsLabel(name)
}

// ServiceNames lists the service names declared, sorted.
func (c *Config) ServiceNames() []string {
	seen := map[string]bool{}
	for _, r := range c.Resources {
		if r.Service != nil {
			seen[r.Service.Name] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
