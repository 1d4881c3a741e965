package spec

import "github.com/hashicorp/hcl/v2"

// The block and attribute shapes of the language. Runtime-specific daemon
// attributes come from Options.Schemas instead.

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "orch"},
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "runtime", LabelNames: []string{"kind", "name"}},
		{Type: "daemon", LabelNames: []string{"name"}},
		{Type: "job", LabelNames: []string{"name"}},
		{Type: "module", LabelNames: []string{"name"}},
	},
}

var orchSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "name"}, {Name: "state_dir"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "dns"}, {Type: "proxy"}, {Type: "http"}, {Type: "backend", LabelNames: []string{"kind"}},
	},
}

var projectBlockSchemas = map[string]*hcl.BodySchema{
	"dns":   {Attributes: []hcl.AttributeSchema{{Name: "listen", Required: true}, {Name: "zone"}}},
	"proxy": {Attributes: []hcl.AttributeSchema{{Name: "listen", Required: true}}, Blocks: []hcl.BlockHeaderSchema{{Type: "tls"}}},
	"http":  {Attributes: []hcl.AttributeSchema{{Name: "listen", Required: true}, {Name: "token"}}},
	"backend": {Attributes: []hcl.AttributeSchema{{Name: "endpoints", Required: true}, {Name: "prefix"}, {Name: "lock_ttl"}},
		Blocks: []hcl.BlockHeaderSchema{{Type: "tls"}}},
}

var tlsSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "ca"}, {Name: "cert"}, {Name: "key"}}}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type"}, {Name: "default"}, {Name: "description"},
		{Name: "sensitive"}, {Name: "nullable"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "condition", Required: true},
		{Name: "error_message", Required: true},
	},
}

// meta-arguments every resource block accepts
var metaAttrs = []hcl.AttributeSchema{
	{Name: "count"}, {Name: "for_each"}, {Name: "depends_on"},
}

var processAttrs = []hcl.AttributeSchema{
	{Name: "runtime"}, {Name: "command"}, {Name: "env"}, {Name: "dir"},
	{Name: "user"}, {Name: "group"}, {Name: "umask"}, {Name: "rlimits"},
	{Name: "restart_with"},
}

var daemonSchema = &hcl.BodySchema{
	Attributes: append(append([]hcl.AttributeSchema{}, metaAttrs...), processAttrs...),
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "health"}, {Type: "restart"}, {Type: "stop"}, {Type: "log"}, {Type: "lifecycle"}, {Type: "reload"},
		{Type: "service"}, {Type: "resources"}, {Type: "placement"},
	},
}

var jobSchema = &hcl.BodySchema{
	Attributes: daemonSchema.Attributes,
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "restart"}, {Type: "stop"}, {Type: "log"}, {Type: "lifecycle"},
		{Type: "resources"}, {Type: "placement"},
	},
}

var moduleSchema = &hcl.BodySchema{
	Attributes: append(append([]hcl.AttributeSchema{}, metaAttrs...),
		hcl.AttributeSchema{Name: "source", Required: true},
		hcl.AttributeSchema{Name: "sha256"},
		hcl.AttributeSchema{Name: "config"},
	),
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "grants"}, {Type: "limits"}, {Type: "restart"}, {Type: "lifecycle"},
	},
}

var runtimeCoreAttrs = []string{"plugin", "sha256"}

var nestedSchemas = map[string]*hcl.BodySchema{
	"health": {Attributes: []hcl.AttributeSchema{
		{Name: "exec"}, {Name: "http"}, {Name: "tcp"},
		{Name: "interval"}, {Name: "timeout"}, {Name: "retries"}, {Name: "start_period"}, {Name: "start_timeout"},
		{Name: "notify"}, {Name: "watchdog"},
	}},
	"service": {Attributes: []hcl.AttributeSchema{
		{Name: "name"}, {Name: "host"}, {Name: "port", Required: true}, {Name: "route"}, {Name: "mdns"}, {Name: "drain"},
	}},
	"resources": {Attributes: []hcl.AttributeSchema{{Name: "memory_max"}, {Name: "cpu_max"}, {Name: "pids_max"}}},
	"placement": {Attributes: []hcl.AttributeSchema{{Name: "node"}, {Name: "labels"}, {Name: "spread"}}},
	"restart": {Attributes: []hcl.AttributeSchema{
		{Name: "policy"}, {Name: "backoff"}, {Name: "max_backoff"},
		{Name: "max_restarts"}, {Name: "window"},
	}},
	"stop":   {Attributes: []hcl.AttributeSchema{{Name: "signal"}, {Name: "timeout"}}},
	"reload": {Attributes: []hcl.AttributeSchema{{Name: "signal"}, {Name: "on", Required: true}}},
	"log":    {Attributes: []hcl.AttributeSchema{{Name: "max_size"}, {Name: "max_files"}}},
	"lifecycle": {Attributes: []hcl.AttributeSchema{
		{Name: "create_before_destroy"}, {Name: "prevent_destroy"}, {Name: "max_parallel"}, {Name: "ignore_changes"},
	}},
	"grants": {Attributes: []hcl.AttributeSchema{{Name: "dirs"}, {Name: "writable"}, {Name: "env"}}},
	"limits": {Attributes: []hcl.AttributeSchema{{Name: "memory"}, {Name: "call_timeout"}}},
}

// staticAttrs are read as references, never evaluated.
var staticAttrs = map[string]bool{"runtime": true, "depends_on": true, "restart_with": true}

func schemaFor(k Kind) *hcl.BodySchema {
	switch k {
	case KindJob:
		return jobSchema
	case KindModule:
		return moduleSchema
	}
	return daemonSchema
}
