package spec

import (
	"fmt"
	"strings"
	"time"
)

// ParseDuration reads a duration strictly: a non-negative Go duration
// with a unit on every number ("250ms", "1m30s", "0s"). Bare numbers,
// negative values and unknown units are refused, with a hint.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty duration; write a number with a unit, such as \"5s\"")
	}
	if t != s {
		return 0, fmt.Errorf("duration %q has surrounding spaces", s)
	}
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("duration %q is negative; durations must be zero or more", s)
	}
	if strings.HasPrefix(t, "+") {
		return 0, fmt.Errorf("duration %q has a sign; write it without one", s)
	}
	if isAllDigits(t) {
		return 0, fmt.Errorf("duration %q has no unit; did you mean \"%ss\"? Units: ns, us, ms, s, m, h", s, t)
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write a number with a unit such as \"500ms\", \"10s\" or \"1m30s\" (units: ns, us, ms, s, m, h)", s)
	}
	return d, nil
}

func isAllDigits(s string) bool {
	for _, r := range s {
		if (r < '0' || r > '9') && r != '.' {
			return false
		}
	}
	return s != ""
}
