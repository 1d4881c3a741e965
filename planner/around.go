package planner

import "github.com/orch-dev/orch/spec"

// Runtime is the runtime the change acts on: the declared one, or the
// recorded one of an instance no longer declared.
func (c *Change) Runtime() spec.Address {
	switch {
	case c.Resource != nil:
		return c.Resource.Runtime
	case c.Prior != nil:
		return c.Prior.Runtime
	}
	return spec.Address{}
}

// Without returns p without the changes of instances on the runtimes of
// away (their backend could not be reached, so what runs there is
// unknown and nothing is done to it), and the changes it left out, in
// plan order. p is not modified.
func Without(p *Plan, away map[spec.Address]error) (*Plan, []*Change) {
	if len(away) == 0 {
		return p, nil
	}
	out := *p
	out.Changes = nil
	var left []*Change
	for _, c := range p.Changes {
		if away[c.Runtime()] != nil {
			left = append(left, c)
			continue
		}
		out.Changes = append(out.Changes, c)
	}
	return &out, left
}
