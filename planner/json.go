package planner

import (
	"encoding/json"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// JSONPlan is the machine form of a plan (`orch plan -json`), documented
// in docs/plan-json.md. Sensitive values are null and their paths listed.
type JSONPlan struct {
	FormatVersion string       `json:"format_version"`
	ConfigHash    string       `json:"configuration_hash"`
	Fingerprint   string       `json:"fingerprint"`
	Destroy       bool         `json:"destroy,omitempty"`
	Changes       []JSONChange `json:"resource_changes"`
	Summary       JSONSummary  `json:"summary"`
}

// JSONChange is one instance's change.
type JSONChange struct {
	Address             string                     `json:"address"`
	Kind                string                     `json:"kind"`
	Name                string                     `json:"name"`
	Action              string                     `json:"action"`
	Reason              string                     `json:"reason,omitempty"`
	ForcesReplacement   []string                   `json:"forces_replacement,omitempty"`
	CreateBeforeDestroy bool                       `json:"create_before_destroy,omitempty"`
	Before              map[string]json.RawMessage `json:"before,omitempty"`
	After               map[string]json.RawMessage `json:"after,omitempty"`
	AfterUnknown        []string                   `json:"after_unknown,omitempty"`
	BeforeSensitive     []string                   `json:"before_sensitive,omitempty"`
	AfterSensitive      []string                   `json:"after_sensitive,omitempty"`
	ConfigHash          string                     `json:"config_hash,omitempty"`
	PriorConfigHash     string                     `json:"prior_config_hash,omitempty"`
	Pid                 int                        `json:"pid,omitempty"`
	ObservedState       string                     `json:"observed_state,omitempty"`
}

// JSONSummary mirrors the summary line.
type JSONSummary struct {
	Add     int `json:"add"`
	Change  int `json:"change"`
	Replace int `json:"replace"`
	Destroy int `json:"destroy"`
}

// ToJSON converts a plan to its machine form. No-op changes are included
// with action "no-op", so a script sees every instance.
func ToJSON(p *Plan) *JSONPlan {
	s := p.Summary()
	out := &JSONPlan{FormatVersion: "1.0", ConfigHash: p.ConfigHash, Fingerprint: p.Fingerprint, Destroy: p.Destroy,
		Summary: JSONSummary{s.Add, s.Change, s.Replace, s.Destroy}, Changes: []JSONChange{}}
	for _, c := range p.Changes {
		jc := JSONChange{Address: c.Addr.String(), Kind: c.Addr.Kind.String(), Name: c.Addr.Name,
			Action: c.Action.String(), Reason: c.Reason.String(), ForcesReplacement: c.ForcedBy,
			CreateBeforeDestroy: c.CreateBeforeDestroy, ConfigHash: c.Hash(), Pid: c.Observed.Pid}
		if c.Observed.State != 0 {
			jc.ObservedState = c.Observed.State.String()
		}
		if c.Prior != nil {
			jc.PriorConfigHash = c.Prior.ConfigHash
			if c.Prior.Snapshot != nil {
				jc.Before, jc.BeforeSensitive = jsonValues(c.Prior.Snapshot)
			}
		}
		if c.Desired != nil {
			jc.After, jc.AfterSensitive = jsonValues(c.Desired)
			if c.Action == Create || c.Action == Replace || c.Action == Start {
				jc.AfterUnknown = []string{"pid"}
			}
		}
		out.Changes = append(out.Changes, jc)
	}
	return out
}

func jsonValues(s *Snapshot) (map[string]json.RawMessage, []string) {
	vals := map[string]json.RawMessage{}
	for name, v := range s.Values {
		if s.isSensitive(name) {
			v = redact(v, name, s.Sensitive)
		}
		b, err := ctyjson.Marshal(v, v.Type())
		if err != nil {
			b = []byte("null")
		}
		vals[name] = b
	}
	return vals, sortedSet(s.Sensitive)
}

// redact replaces the sensitive parts of v (by path) with null.
func redact(v cty.Value, path string, sensitive map[string]bool) cty.Value {
	if sensitive[path] {
		return cty.NullVal(v.Type())
	}
	t := v.Type()
	if v.IsNull() || !v.IsKnown() {
		return v
	}
	switch {
	case t.IsMapType():
		m := map[string]cty.Value{}
		for k, e := range v.AsValueMap() {
			m[k] = redact(e, path+"."+k, sensitive)
		}
		if len(m) == 0 {
			return v
		}
		return cty.MapVal(m)
	case t.IsObjectType():
		m := map[string]cty.Value{}
		for k, e := range v.AsValueMap() {
			m[k] = redact(e, path+"."+k, sensitive)
		}
		return cty.ObjectVal(m)
	case t.IsListType():
		if v.LengthInt() == 0 {
			return v
		}
		var l []cty.Value
		i := 0
		for it := v.ElementIterator(); it.Next(); i++ {
			_, e := it.Element()
			l = append(l, redact(e, path+"["+itoa(i)+"]", sensitive))
		}
		return cty.ListVal(l)
	}
	return v
}

func itoa(i int) string {
	return string(FormatValue(cty.NumberIntVal(int64(i)), 0))
}
