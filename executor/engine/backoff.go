package engine

import (
	"time"

	"github.com/orch-dev/orch/spec"
)

// Jitter is the spread of a restart delay: a delay d becomes a value in
// [d*(1-Jitter), d*(1+Jitter)), never more than max_backoff.
const Jitter = 0.2

// Backoff returns the delay before restart number attempt (0 for the first
// restart after a stable run): backoff * 2^attempt, capped at max_backoff,
// spread by Jitter with u, a uniform random number in [0, 1). A zero
// backoff gives zero delays.
func Backoff(r spec.Restart, attempt int, u float64) time.Duration {
	base, ceil := r.Backoff, r.MaxBackoff
	if base <= 0 {
		return 0
	}
	if ceil < base {
		ceil = base
	}
	d := base
	for i := 0; i < attempt && d < ceil; i++ {
		d *= 2
	}
	d = min(d, ceil)
	j := time.Duration(float64(d) * Jitter * (2*u - 1))
	return max(0, min(d+j, ceil))
}

// stableAfter is how long a daemon must run for its backoff to start again
// from restart.backoff: longer than the longest delay it could have waited.
func stableAfter(r spec.Restart) time.Duration {
	return max(r.MaxBackoff, r.Backoff)
}

// restartHistory holds the times of recent restarts of one daemon, for the
// crash-loop limit (max_restarts within window).
type restartHistory []time.Time

// allow drops restarts older than window before now and reports whether
// one more restart is allowed: fewer than max happened within window (max
// 0: no limit). It records now when it is.
func (h *restartHistory) allow(now time.Time, window time.Duration, max int) bool {
	kept := (*h)[:0]
	for _, t := range *h {
		if window <= 0 || now.Sub(t) < window {
			kept = append(kept, t)
		}
	}
	*h = kept
	if max > 0 && len(kept) >= max {
		return false
	}
	*h = append(*h, now)
	return true
}
