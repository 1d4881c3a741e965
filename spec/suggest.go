package spec

import "github.com/agext/levenshtein"

// suggest returns the candidate closest to given when it is close enough to
// be a likely typo, or "".
func suggest(given string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		d := levenshtein.Distance(given, c, nil)
		if d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	limit := 2
	if len(given) > 8 {
		limit = 3
	}
	if bestD > 0 && bestD <= limit {
		return best
	}
	return ""
}
