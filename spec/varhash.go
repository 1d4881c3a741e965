package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"

	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// VariablesHash identifies the values of c's variables, wherever they came
// from (defaults, -var, -var-file, ORCH_VAR_*): two loads whose variables
// have the same values have the same hash, whatever their sources. A
// sensitive value goes into the hash without being shown by it.
func (c *Config) VariablesHash() string {
	names := make([]string, 0, len(c.Variables))
	for n := range c.Variables {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		v := c.Variables[n]
		b, err := ctyjson.Marshal(v.Value, v.Type)
		if err != nil {
			b = []byte(v.Value.GoString()) // unknown, or not of its type
		}
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write(b)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
