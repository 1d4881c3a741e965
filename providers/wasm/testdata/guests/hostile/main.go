// Command hostile is the guest of the sandbox's tests; its config
// ({"mode": ..., "paths": [...]}) says how it behaves:
//
//	loop    start never returns
//	bomb    start allocates memory until it is refused
//	trap    init panics
//	escape  init reads each of paths, publishes what happened on
//	        "escape.result" ("ok <path> <content>" or "err <path> <error>"),
//	        then tries to write /in/written, then publishes its config
//	        as the config host function gives it on "escape.config"
//	sink    subscribes to "bench.*" and counts what it receives
//	fsops   init runs ops, each a file system operation and its
//	        arguments (see fsop), and publishes what happened on
//	        "escape.result": "<i> ok <result>" or "<i> err <error>"
//	reader  subscribes to "bench.read": an event whose data is n reads
//	        paths[0] n times (os.ReadFile), then publishes "bench.done"
//
// One guest for every case: each .wasm file costs a compilation, which is
// slow under the race detector.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/orch-dev/orch/providers/wasm/guest"
)

var (
	config struct {
		Mode  string
		Paths []string
		Ops   [][]string
	}
	n     int
	hoard [][]byte
)

func init() {
	guest.Register(guest.Module{
		Init: func(raw []byte) error {
			if err := json.Unmarshal(raw, &config); err != nil {
				return err
			}
			switch config.Mode {
			case "trap":
				var m map[string]int
				m["boom"] = 1 // assignment to entry in nil map
			case "escape":
				return escape()
			case "sink":
				return guest.Subscribe("bench.*")
			case "fsops":
				for i, op := range config.Ops {
					msg := strconv.Itoa(i) + " "
					if r, err := fsop(op); err != nil {
						msg += "err " + err.Error()
					} else {
						msg += "ok " + r
					}
					if err := guest.Publish("escape.result", []byte(msg)); err != nil {
						return err
					}
				}
			case "reader":
				return guest.Subscribe("bench.read")
			}
			return nil
		},
		Start: func() error {
			switch config.Mode {
			case "loop":
				for {
					n++
				}
			case "bomb":
				for {
					b := make([]byte, 1<<20)
					for i := range b {
						b[i] = byte(i)
					}
					hoard = append(hoard, b)
				}
			}
			return nil
		},
		OnEvent: func(ev guest.Event) error {
			n++
			if config.Mode == "reader" {
				count, _ := strconv.Atoi(string(ev.Data))
				for i := 0; i < count; i++ {
					if _, err := os.ReadFile(config.Paths[0]); err != nil {
						return err
					}
				}
				return guest.Publish("bench.done", nil)
			}
			return nil
		},
	})
}

func escape() error {
	for _, p := range config.Paths {
		b, err := os.ReadFile(p)
		msg := "ok " + p + " " + string(b)
		if err != nil {
			msg = "err " + p + " " + err.Error()
		}
		if err := guest.Publish("escape.result", []byte(msg)); err != nil {
			return err
		}
	}
	err := os.WriteFile("/in/written", []byte("x"), 0o644)
	msg := "ok write"
	if err != nil {
		msg = "err write " + err.Error()
	}
	if err := guest.Publish("escape.result", []byte(msg)); err != nil {
		return err
	}
	// The configuration, read through the host function this time.
	c, err := guest.Config()
	if err != nil {
		return err
	}
	return guest.Publish("escape.config", c)
}

// fsop runs one operation: read P, write P DATA, symlink TARGET LINK,
// link OLD NEW, rename OLD NEW, mkdir P, remove P, readlink P, stat P,
// lstat P, readdir P, rw P (writes, reads at offsets, seeks, truncates,
// appends, sets the times of P and tells what it found), or race P W N: read P and write W over and over
// until N reads succeeded and N failed, one read anything but "INSIDE",
// or 200000 rounds, and tell how many read "INSIDE", failed, or read
// anything else.
func fsop(op []string) (string, error) {
	arg := func(i int) string {
		if i < len(op) {
			return op[i]
		}
		return ""
	}
	switch op[0] {
	case "read":
		b, err := os.ReadFile(arg(1))
		return string(b), err
	case "write":
		return "", os.WriteFile(arg(1), []byte(arg(2)), 0o644)
	case "symlink":
		return "", os.Symlink(arg(1), arg(2))
	case "link":
		return "", os.Link(arg(1), arg(2))
	case "rename":
		return "", os.Rename(arg(1), arg(2))
	case "mkdir":
		return "", os.Mkdir(arg(1), 0o755)
	case "remove":
		return "", os.Remove(arg(1))
	case "readlink":
		return os.Readlink(arg(1))
	case "stat", "lstat":
		stat := os.Stat
		if op[0] == "lstat" {
			stat = os.Lstat
		}
		fi, err := stat(arg(1))
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d %s", fi.Size(), fi.Mode().Type()), nil
	case "readdir":
		es, err := os.ReadDir(arg(1))
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		return strings.Join(names, ","), err
	case "rw":
		return rw(arg(1))
	case "race":
		n, _ := strconv.Atoi(arg(3))
		var inside, failed, leaked, rounds int
		var leak string
		for ; rounds < 200000 && leaked == 0 && (inside < n || failed < n); rounds++ {
			b, err := os.ReadFile(arg(1))
			switch {
			case err != nil:
				failed++
			case string(b) == "INSIDE":
				inside++
			default:
				leaked++
				leak = string(b)
			}
			os.WriteFile(arg(2), []byte("x"), 0o644)
		}
		return fmt.Sprintf("inside=%d failed=%d leaked=%d rounds=%d %s", inside, failed, leaked, rounds, leak), nil
	}
	return "", fmt.Errorf("unknown op %q", op[0])
}

// rw exercises the calls on an open file: pwrite, pread, seek,
// ftruncate, fsync, append, and path_filestat_set_times.
func rw(p string) (string, error) {
	if err := os.WriteFile(p, []byte("hello world"), 0o644); err != nil {
		return "", err
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("HELLO"), 0); err != nil {
		return "", err
	}
	b := make([]byte, 5)
	if _, err := f.ReadAt(b, 6); err != nil {
		return "", err
	}
	end, err := f.Seek(0, 2)
	if err != nil {
		return "", err
	}
	if err := f.Truncate(5); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	a, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return "", err
	}
	if _, err := a.Write([]byte(" again")); err != nil {
		return "", err
	}
	a.Close()
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		return "", err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	all, err := os.ReadFile(p)
	return fmt.Sprintf("%s|%d|%s|%s", b, end, all, fi.ModTime().UTC().Format(time.RFC3339)), err
}

func main() {}
