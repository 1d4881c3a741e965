package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/orch-dev/orch/spec"
	"github.com/zclconf/go-cty/cty"
)

// ServiceLabel names one instance under its service in DNS
// (<label>.<service>.<zone>): its count index, its for_each key when that
// is a DNS label (lower case), else "k" and a hash of the key; "0" for a
// block without count or for_each.
func ServiceLabel(a spec.Address) string {
	switch a.Key.Type {
	case spec.IntKeyType:
		return strconv.Itoa(a.Key.Int)
	case spec.StringKeyType:
		k := strings.ToLower(a.Key.Str)
		if dnsLabel(k) {
			return k
		}
		sum := sha256.Sum256([]byte(a.Key.Str))
		return "k" + hex.EncodeToString(sum[:4])
	}
	return "0"
}

func dnsLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// published is what one instance publishes, read from its snapshot.
type published struct {
	dns, route, mdns string
}

// publishedOf reads the service of a snapshot: its DNS names (when the
// project serves DNS), its proxy route and its mDNS type, each with the
// address it leads to.
func publishedOf(cfg *spec.Config, a spec.Address, s *Snapshot) (published, bool) {
	if s == nil {
		return published{}, false
	}
	v, ok := s.Values["service"]
	if !ok || v.IsNull() || !v.Type().IsObjectType() {
		return published{}, false
	}
	str := func(n string) string {
		if !v.Type().HasAttribute(n) {
			return ""
		}
		x := v.GetAttr(n)
		if x.IsNull() || x.Type() != cty.String {
			return ""
		}
		return x.AsString()
	}
	port := ""
	if v.Type().HasAttribute("port") {
		if x := v.GetAttr("port"); !x.IsNull() && x.Type() == cty.Number {
			port = x.AsBigFloat().Text('f', 0)
		}
	}
	to := net.JoinHostPort(str("host"), port)
	var p published
	if cfg != nil && cfg.Project.DNS != nil {
		z := cfg.Project.DNS.Zone
		p.dns = fmt.Sprintf("dns %s.%s.%s, %s.%s -> %s", ServiceLabel(a), str("name"), z, str("name"), z, to)
	}
	if r := str("route"); r != "" {
		p.route = fmt.Sprintf("route %s -> %s", r, to)
	}
	if m := str("mdns"); m != "" {
		p.mdns = fmt.Sprintf("mdns %s port %s", m, port)
	}
	return p, true
}

// publish fills in the Published lines of each change: what the instance
// will publish once it is ready ("+"), what it stops publishing ("-").
// A replace whose service is the same publishes the same records for the
// new instance: nothing is listed.
func publish(cfg *spec.Config, p *Plan) {
	for _, c := range p.Changes {
		var before, after published
		var had, has bool
		switch c.Action {
		case NoOp, Adopt, Stop, Reload:
			continue
		}
		if c.Prior != nil && c.Action != Start {
			before, had = publishedOf(cfg, c.Addr, c.Prior.Snapshot)
		}
		if c.Desired != nil {
			after, has = publishedOf(cfg, c.Addr, c.Desired)
		}
		if !had && !has {
			continue
		}
		for _, pair := range [3][2]string{{before.dns, after.dns}, {before.route, after.route}, {before.mdns, after.mdns}} {
			if pair[0] == pair[1] {
				continue
			}
			if pair[0] != "" {
				c.Published = append(c.Published, "- "+pair[0])
			}
			if pair[1] != "" {
				c.Published = append(c.Published, "+ "+pair[1])
			}
		}
	}
}
