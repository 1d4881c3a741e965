package cli

import "fmt"

// usageColumns renders memory and CPU use for orch status: "-" when
// unknown.
func usageColumns(mem uint64, cpu float64) (string, string) {
	m, c := "-", "-"
	if mem > 0 {
		switch {
		case mem >= 1<<30:
			m = fmt.Sprintf("%.1fGiB", float64(mem)/(1<<30))
		case mem >= 1<<20:
			m = fmt.Sprintf("%.1fMiB", float64(mem)/(1<<20))
		default:
			m = fmt.Sprintf("%.0fKiB", float64(mem)/(1<<10))
		}
	}
	if cpu > 0 {
		c = fmt.Sprintf("%.2fs", cpu)
	}
	return m, c
}

// withSays appends what a daemon says of itself (sd_notify STATUS=) to its
// status column, cut to 40 characters.
func withSays(status, says string) string {
	if says == "" {
		return status
	}
	if r := []rune(says); len(r) > 40 {
		says = string(r[:39]) + "…"
	}
	return status + " (" + says + ")"
}
