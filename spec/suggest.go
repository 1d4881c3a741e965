package spec

// suggest returns the candidate closest to given when it is close enough to
// be a likely typo, or "". Distance counts an adjacent transposition as one
// edit ("deamon" is one edit from "daemon"), and short names get a tighter
// limit, so that "foo" does not suggest "job".
func suggest(given string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		d := editDistance(given, c)
		if d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	limit := 1
	switch n := len([]rune(given)); {
	case n > 8:
		limit = 3
	case n > 3:
		limit = 2
	}
	if bestD > 0 && bestD <= limit {
		return best
	}
	return ""
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and adjacent transpositions.
func editDistance(a, b string) int {
	s, t := []rune(a), []rune(b)
	if len(s) > 64 || len(t) > 64 {
		// not a typo worth suggesting; keep the work bounded
		if a == b {
			return 0
		}
		return 1 << 20
	}
	prev2 := make([]int, len(t)+1)
	prev := make([]int, len(t)+1)
	cur := make([]int, len(t)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(s); i++ {
		cur[0] = i
		for j := 1; j <= len(t); j++ {
			cost := 1
			if s[i-1] == t[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && s[i-1] == t[j-2] && s[i-2] == t[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(t)]
}
