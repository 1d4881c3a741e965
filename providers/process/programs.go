package process

import (
	"strings"
	"sync"
	"time"
)

// programTTL is how long a program name found in a PATH is remembered.
const programTTL = time.Second

// programCache remembers, for a short while, where a program name was
// found in a daemon's PATH, so that a burst of starts of the same program
// (orch apply of 10,000 daemons running "sleep") does not look at every
// directory before the right one for each: with Debian's PATH, "sleep"
// costs four stat calls, three of which fail (0.62 s of CPU per 10,000
// starts on this project's VM).
//
// A remembered path is still checked (one stat) before it is used: a
// program removed or made non-executable meanwhile is searched for again,
// and its error is the search's. What the memo can miss, for at most
// programTTL, is a program of the same name installed since in a
// directory earlier in the PATH. Failures are never remembered.
type programCache struct {
	mu  sync.Mutex
	m   map[programKey]programFound
	now func() time.Time // nil: time.Now
}

type programKey struct{ name, path, dir string }

type programFound struct {
	path string
	at   time.Time
}

// programCacheMax bounds the memo: past it, it is emptied (it only saves
// stat calls).
const programCacheMax = 1024

// lookPath is the package's lookPath, through the memo.
func (c *programCache) lookPath(name, path, dir string) (string, error) {
	if strings.Contains(name, "/") {
		return lookPath(name, path, dir) // one stat: nothing to save
	}
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	k := programKey{name, path, dir}
	t := now()
	c.mu.Lock()
	f, ok := c.m[k]
	c.mu.Unlock()
	if ok && t.Sub(f.at) < programTTL && t.Sub(f.at) >= 0 && checkExecutable(f.path) == nil {
		return f.path, nil
	}
	found, err := lookPath(name, path, dir)
	if err != nil {
		c.mu.Lock()
		delete(c.m, k)
		c.mu.Unlock()
		return "", err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= programCacheMax {
		c.m = map[programKey]programFound{}
	}
	c.m[k] = programFound{found, t}
	c.mu.Unlock()
	return found, nil
}
