package docker

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/moby/moby/client"
	"github.com/zclconf/go-cty/cty"

	"github.com/orch-dev/orch/spec"
)

// Kind is the runtime kind this provider serves by default; KindPodman is
// the same provider pointed at Podman's Docker-compatible API.
const (
	Kind       = "docker"
	KindPodman = "podman"
)

// Attribute names of the runtime block and of daemons and jobs.
const (
	AttrHost       = "host"
	AttrImage      = "image"
	AttrEntrypoint = "entrypoint"
	AttrPorts      = "ports"
	AttrVolumes    = "volumes"
	AttrNetwork    = "network"
	AttrLabels     = "labels"
	AttrMemory     = "memory"
	AttrCPUs       = "cpus"
)

// DefaultHost is the Engine address a runtime uses when it sets no host:
// $DOCKER_HOST when set (read when Schema is called), else the platform's
// default socket (unix:///var/run/docker.sock).
func DefaultHost() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h
	}
	return client.DefaultDockerHost
}

// DefaultPodmanHost is the Podman API address a podman runtime uses when
// it sets no host: $CONTAINER_HOST when set (Podman's own variable), else
// root's socket unix:///run/podman/podman.sock, or for other users
// $XDG_RUNTIME_DIR/podman/podman.sock (where `systemctl --user start
// podman.socket` or `podman system service` listens).
func DefaultPodmanHost() string {
	if h := os.Getenv("CONTAINER_HOST"); h != "" {
		return h
	}
	if os.Geteuid() != 0 {
		if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
			return "unix://" + d + "/podman/podman.sock"
		}
	}
	return "unix:///run/podman/podman.sock"
}

// PodmanSchema describes the runtime kind "podman": the attributes of
// "docker", with Podman's default host.
func PodmanSchema() spec.RuntimeSchema { return schema(KindPodman, DefaultPodmanHost()) }

// Schema describes the runtime kind "docker". A container may run its
// image's own command, so command is optional.
func Schema() spec.RuntimeSchema { return schema(Kind, DefaultHost()) }

func schema(kind, host string) spec.RuntimeSchema {
	strs := cty.List(cty.String)
	return spec.RuntimeSchema{
		Kind: kind,
		Runtime: []spec.AttrSchema{
			{Name: AttrHost, Type: cty.String, Default: cty.StringVal(host),
				Doc: "the Engine API address: unix:///path/to.sock or tcp://host:port"},
		},
		Daemon: []spec.AttrSchema{
			{Name: AttrImage, Type: cty.String, Required: true, RequiredUnless: BlockBuild, ForcesReplacement: true,
				Doc: "the image to run, such as \"nginx:1.27\"; pulled when missing locally; with a build block, the tag to build into"},
			{Name: AttrEntrypoint, Type: strs, ForcesReplacement: true,
				Doc: "replaces the image's ENTRYPOINT; command then gives its arguments"},
			{Name: AttrPorts, Type: strs, ForcesReplacement: true, Check: checkPorts,
				Doc: "published ports, \"[ip:]host:container[/tcp|udp]\""},
			{Name: AttrVolumes, Type: strs, ForcesReplacement: true, Check: checkVolumes,
				Doc: "bind mounts and named volumes, \"source:target[:ro]\""},
			{Name: AttrNetwork, Type: cty.String, ForcesReplacement: true,
				Doc: "the network to attach to (bridge, host, none or a user-defined network)"},
			{Name: AttrLabels, Type: cty.Map(cty.String), ForcesReplacement: true,
				Doc: "container labels; keys under org.orch. are reserved", Check: checkLabels},
			{Name: AttrMemory, Type: cty.String,
				Doc: "memory limit, such as \"256MiB\"; changed in place"},
			{Name: AttrCPUs, Type: cty.Number,
				Doc: "CPU limit in CPUs, such as 0.5; changed in place"},
		},
		Blocks: []spec.BlockSchema{buildBlock()},
	}
}

// checkPorts and checkVolumes check the syntax of ports and volumes when
// the configuration is loaded, so that orch validate and orch plan point
// at the entry that is wrong.
func checkPorts(v cty.Value) error {
	return checkEach(v, "Invalid port mapping", func(s string) error { _, err := parsePort(s); return err })
}

func checkVolumes(v cty.Value) error {
	return checkEach(v, "Invalid volume", checkVolume)
}

// checkEach checks every entry of a list of strings, and reports each bad
// one at its place.
func checkEach(v cty.Value, summary string, check func(string) error) error {
	var errs []error
	i := 0
	for it := v.ElementIterator(); it.Next(); i++ {
		_, e := it.Element()
		err := errors.New("an entry is null")
		if !e.IsNull() {
			err = check(e.AsString())
		}
		if err != nil {
			errs = append(errs, &spec.CheckError{Summary: summary, InList: true, Index: i, Err: err})
		}
	}
	return errors.Join(errs...)
}

// checkLabels refuses, at load, labels in orch's own prefix: orch reads
// them to know what it owns.
func checkLabels(v cty.Value) error {
	var errs []error
	for it := v.ElementIterator(); it.Next(); {
		k, _ := it.Element()
		if key := k.AsString(); strings.HasPrefix(key, reservedLabelPrefix) {
			errs = append(errs, &spec.CheckError{Summary: "Reserved label", Key: key, InMap: true,
				Err: fmt.Errorf("%q is under %q, the prefix of the labels orch sets to know what it owns; choose another key", key, reservedLabelPrefix)})
		}
	}
	return errors.Join(errs...)
}
