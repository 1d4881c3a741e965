package docker

import (
	"encoding/json"
	"fmt"

	"github.com/orch-dev/orch/providers"
)

// HandleInfo is what a docker handle holds, encoded as JSON: the
// container's full id, and its name for messages. orch treats handles as
// opaque bytes; HandleInfo is exported so that tools and tests can read
// one.
type HandleInfo struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// ParseHandle decodes a handle produced by this provider.
func ParseHandle(h providers.Handle) (HandleInfo, error) {
	var hi HandleInfo
	if err := json.Unmarshal(h, &hi); err != nil {
		return hi, fmt.Errorf("not a docker handle: %w", err)
	}
	if hi.ID == "" {
		return hi, fmt.Errorf("not a docker handle: no container id")
	}
	return hi, nil
}

// Encode renders hi as a handle.
func (hi HandleInfo) Encode() providers.Handle {
	b, err := json.Marshal(hi)
	if err != nil {
		panic(err) // two strings always encode
	}
	return b
}
