package planner

import (
	"testing"

	"github.com/zclconf/go-cty/cty"
)

// The integer fast path of formatValue prints what big.Float's own 'f'
// formatting prints, at the edges of int64 too.
func TestFormatNumberSameText(t *testing.T) {
	for _, s := range []string{"0", "-0", "1", "-1", "42", "1e18", "9223372036854775807", "9223372036854775808",
		"-9223372036854775808", "-9223372036854775809", "1.5", "0.1", "1e-7", "123456789012345678901234567890", "3.0"} {
		v, err := cty.ParseNumberVal(s)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := FormatValue(v, 0), v.AsBigFloat().Text('f', -1); g != w {
			t.Fatalf("%s: %q, want %q", s, g, w)
		}
	}
}
