package spec

import "github.com/zclconf/go-cty/cty"

// testSchemas mirrors the built-in runtime kinds, so spec's tests do not
// import providers (spec must not depend on them).
var testSchemas = map[string]RuntimeSchema{
	"process": {Kind: "process", CommandRequired: true},
	"docker": {
		Kind:    "docker",
		Runtime: []AttrSchema{{Name: "host", Type: cty.String}},
		Daemon: []AttrSchema{
			{Name: "image", Type: cty.String, Required: true, ForcesReplacement: true, Doc: "the container image"},
			{Name: "ports", Type: cty.List(cty.String), ForcesReplacement: true},
			{Name: "memory", Type: cty.String},
		},
	},
}
