package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/zclconf/go-cty/cty"

	"github.com/orch-dev/orch/spec"
)

// Labels orch puts on every container it creates. A container without
// LabelManagedBy=ManagedBy is never stopped, signalled or removed.
const (
	LabelManagedBy  = "org.orch.managed-by"
	LabelProject    = "org.orch.project"
	LabelAddress    = "org.orch.address"
	LabelConfigHash = "org.orch.config-hash"
	LabelRuntime    = "org.orch.runtime"

	ManagedBy = "orch"

	reservedLabelPrefix = "org.orch."
)

// ContainerName is the name of the container of addr in project:
// "orch-<project>-<address>", with every character Docker does not allow
// in a name written as '-'. When that changed anything (daemon.api[1]),
// or the name would be longer than 128 bytes, a short hash of the exact
// project and address is appended, so that two addresses never share a
// name.
func ContainerName(project string, addr spec.Address) string {
	raw := "orch-" + project + "-" + addr.String()
	var b strings.Builder
	changed := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
			b.WriteByte(c)
		default:
			b.WriteByte('-')
			changed = true
		}
	}
	name := strings.TrimRight(b.String(), "-")
	if changed || len(name) > 128 {
		sum := sha256.Sum256([]byte(project + "\x00" + addr.String()))
		if len(name) > 110 {
			name = name[:110]
		}
		name += "-" + hex.EncodeToString(sum[:4])
	}
	return name
}

// containerSpec is what Start asks the Engine for.
type containerSpec struct {
	Name   string
	Config *container.Config
	Host   *container.HostConfig
	Ports  []portSpec // as declared, to name a port in errors
	Build  *build     // nil: run Config.Image as it is (pulled if missing)
}

type portSpec struct {
	HostIP   string
	HostPort string
	Port     network.Port
}

// buildSpec turns a daemon or job into the container to create. Every
// error names the attribute and says what is accepted.
func buildSpec(r *spec.Resource, project, configHash, runtime string) (*containerSpec, error) {
	image, err := attrString(r, AttrImage)
	if err != nil {
		return nil, err
	}
	b, err := buildOf(r)
	if err != nil {
		return nil, err
	}
	if image == "" && b != nil {
		image = BuildTag(project, r.Addr.Name, b.buildHash())
	}
	if image == "" {
		return nil, fmt.Errorf("image: no image given, and no build block")
	}
	cfg := &container.Config{
		Image:      image,
		Cmd:        append([]string(nil), r.Command...),
		StopSignal: r.Stop.Signal.Name,
		Labels:     map[string]string{},
	}
	if r.Stop.Timeout > 0 {
		secs := int(math.Ceil(r.Stop.Timeout.Seconds()))
		cfg.StopTimeout = &secs
	}
	if ep, err := attrStrings(r, AttrEntrypoint); err != nil {
		return nil, err
	} else if len(ep) > 0 {
		cfg.Entrypoint = ep
	}
	keys := make([]string, 0, len(r.Env))
	for k := range r.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cfg.Env = append(cfg.Env, k+"="+r.Env[k])
	}
	// dir defaults to the configuration's directory on the host, which
	// means nothing inside an image: only a dir the user wrote is used.
	if _, ok := r.Ranges.Get("dir"); ok && r.Dir != "" {
		cfg.WorkingDir = r.Dir
	}
	if r.User != "" {
		cfg.User = r.User
		if r.Group != "" {
			cfg.User += ":" + r.Group
		}
	} else if r.Group != "" {
		return nil, fmt.Errorf("group: a container's group needs a user too (user = \"0\" for root)")
	}
	if labels, err := attrStringMap(r, AttrLabels); err != nil {
		return nil, err
	} else {
		for k, v := range labels {
			if strings.HasPrefix(k, reservedLabelPrefix) {
				return nil, fmt.Errorf("labels: %q: labels under %q are orch's own", k, reservedLabelPrefix)
			}
			cfg.Labels[k] = v
		}
	}
	cfg.Labels[LabelManagedBy] = ManagedBy
	cfg.Labels[LabelProject] = project
	cfg.Labels[LabelAddress] = r.Addr.String()
	cfg.Labels[LabelConfigHash] = configHash
	cfg.Labels[LabelRuntime] = runtime

	host := &container.HostConfig{}
	ports, err := attrStrings(r, AttrPorts)
	if err != nil {
		return nil, err
	}
	cs := &containerSpec{Name: ContainerName(project, r.Addr), Config: cfg, Host: host, Build: b}
	for _, s := range ports {
		ps, err := parsePort(s)
		if err != nil {
			return nil, fmt.Errorf("ports: %w", err)
		}
		cs.Ports = append(cs.Ports, ps)
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = network.PortSet{}
			host.PortBindings = network.PortMap{}
		}
		cfg.ExposedPorts[ps.Port] = struct{}{}
		b := network.PortBinding{HostPort: ps.HostPort}
		if ps.HostIP != "" {
			b.HostIP = netip.MustParseAddr(ps.HostIP)
		}
		host.PortBindings[ps.Port] = append(host.PortBindings[ps.Port], b)
	}
	vols, err := attrStrings(r, AttrVolumes)
	if err != nil {
		return nil, err
	}
	for _, v := range vols {
		if err := checkVolume(v); err != nil {
			return nil, fmt.Errorf("volumes: %w", err)
		}
		host.Binds = append(host.Binds, v)
	}
	if nw, err := attrString(r, AttrNetwork); err != nil {
		return nil, err
	} else if nw != "" {
		host.NetworkMode = container.NetworkMode(nw)
	}
	if res, err := resources(r); err != nil {
		return nil, err
	} else {
		host.Resources = res
	}
	names := make([]string, 0, len(r.Rlimits))
	for n := range r.Rlimits {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v := int64(r.Rlimits[n])
		if r.Rlimits[n] > math.MaxInt64 {
			v = -1
		}
		host.Ulimits = append(host.Ulimits, &container.Ulimit{Name: n, Soft: v, Hard: v})
	}
	return cs, nil
}

// resources reads memory and cpus: the limits ContainerUpdate can change
// in place.
func resources(r *spec.Resource) (container.Resources, error) {
	var res container.Resources
	if mem, err := attrString(r, AttrMemory); err != nil {
		return res, err
	} else if mem != "" {
		n, err := spec.ParseSize(mem)
		if err != nil {
			return res, fmt.Errorf("memory: %w", err)
		}
		if n < 6<<20 {
			return res, fmt.Errorf("memory: %q is below the Engine's minimum of 6MiB", mem)
		}
		res.Memory = int64(n)
	}
	if v, ok := r.Attrs[AttrCPUs]; ok && v != cty.NilVal && !v.IsNull() {
		if v.Type() != cty.Number || !v.IsKnown() {
			return res, fmt.Errorf("cpus: want a number")
		}
		f, _ := new(big.Float).Mul(v.AsBigFloat(), big.NewFloat(1e9)).Int64()
		if f <= 0 {
			return res, fmt.Errorf("cpus: want a number above 0, such as 0.5")
		}
		res.NanoCPUs = f
	}
	return res, nil
}

// parsePort reads "[ip:]host:container[/proto]".
func parsePort(s string) (portSpec, error) {
	var ps portSpec
	body, proto, hasProto := strings.Cut(s, "/")
	if hasProto && proto != "tcp" && proto != "udp" && proto != "sctp" {
		return ps, fmt.Errorf("%q: protocol %q: use tcp, udp or sctp", s, proto)
	}
	if !hasProto {
		proto = "tcp"
	}
	var ip, hostPort, ctrPort string
	switch parts := splitHostPorts(body); len(parts) {
	case 2:
		hostPort, ctrPort = parts[0], parts[1]
	case 3:
		ip, hostPort, ctrPort = strings.Trim(parts[0], "[]"), parts[1], parts[2]
		if _, err := netip.ParseAddr(ip); err != nil {
			return ps, fmt.Errorf("%q: %q is not an IP address", s, ip)
		}
	default:
		return ps, fmt.Errorf("%q: want \"host:container\", \"ip:host:container\", optionally with /tcp or /udp", s)
	}
	for _, p := range []string{hostPort, ctrPort} {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return ps, fmt.Errorf("%q: %q is not a port number (1-65535)", s, p)
		}
	}
	port, err := network.ParsePort(ctrPort + "/" + proto)
	if err != nil {
		return ps, fmt.Errorf("%q: %w", s, err)
	}
	return portSpec{HostIP: ip, HostPort: hostPort, Port: port}, nil
}

// splitHostPorts splits on ':' outside of an [IPv6] bracket.
func splitHostPorts(s string) []string {
	if strings.HasPrefix(s, "[") {
		if i := strings.Index(s, "]:"); i > 0 {
			return append([]string{s[:i+1]}, strings.Split(s[i+2:], ":")...)
		}
	}
	return strings.Split(s, ":")
}

// checkVolume checks "source:target[:ro|rw]".
func checkVolume(v string) error {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return fmt.Errorf("%q: want \"source:target\" or \"source:target:ro\"", v)
	}
	if !strings.HasPrefix(parts[1], "/") {
		return fmt.Errorf("%q: the target %q must be an absolute path in the container", v, parts[1])
	}
	if len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw" {
		return fmt.Errorf("%q: mode %q: use ro or rw", v, parts[2])
	}
	if strings.HasPrefix(parts[0], ".") {
		return fmt.Errorf("%q: a relative source: write an absolute path, or a volume name", v)
	}
	return nil
}

func attrString(r *spec.Resource, name string) (string, error) {
	v, ok := r.Attrs[name]
	if !ok || v == cty.NilVal || v.IsNull() {
		return "", nil
	}
	if !v.IsKnown() || v.Type() != cty.String {
		return "", fmt.Errorf("%s: want a string", name)
	}
	return v.AsString(), nil
}

func attrStrings(r *spec.Resource, name string) ([]string, error) {
	v, ok := r.Attrs[name]
	if !ok || v == cty.NilVal || v.IsNull() {
		return nil, nil
	}
	t := v.Type()
	if !v.IsKnown() || !(t.IsListType() || t.IsTupleType() || t.IsSetType()) {
		return nil, fmt.Errorf("%s: want a list of strings", name)
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() || !e.IsKnown() || e.Type() != cty.String {
			return nil, fmt.Errorf("%s: want a list of strings", name)
		}
		out = append(out, e.AsString())
	}
	return out, nil
}

func attrStringMap(r *spec.Resource, name string) (map[string]string, error) {
	v, ok := r.Attrs[name]
	if !ok || v == cty.NilVal || v.IsNull() {
		return nil, nil
	}
	t := v.Type()
	if !v.IsKnown() || !(t.IsMapType() || t.IsObjectType()) {
		return nil, fmt.Errorf("%s: want a map of strings", name)
	}
	out := map[string]string{}
	for k, e := range v.AsValueMap() {
		if e.IsNull() || !e.IsKnown() || e.Type() != cty.String {
			return nil, fmt.Errorf("%s: %s: want a string", name, k)
		}
		out[k] = e.AsString()
	}
	return out, nil
}
