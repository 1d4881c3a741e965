package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// FollowPoll is how often Tail looks for more output while it follows.
const FollowPoll = 50 * time.Millisecond

// maxRotated is how many rotated files (.1, .2, ...) Tail reads at most to
// find n lines.
const maxRotated = 20

// Tail writes the last n lines of the log at path (older lines come from
// the rotated files path.1, path.2, ... when the current one has fewer;
// n < 0: everything) to w. With follow it then writes what is appended,
// across rotations (the file it held is read to its end, then the rotated
// files newer than it, oldest first, when it was rotated more than once
// since the last look, before the new path is opened) and truncations, polling every FollowPoll, until
// ctx is done; a log that does not exist yet is waited for. It returns
// ctx's error when following, else the first read or write error.
func Tail(ctx context.Context, path string, n int, follow bool, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil && (!follow || !errors.Is(err, os.ErrNotExist)) {
		return err
	}
	var cur []byte
	if f != nil {
		defer func() { f.Close() }()
		if cur, err = io.ReadAll(f); err != nil {
			return err
		}
	}
	if err := writeLast(path, cur, n, w); err != nil {
		return err
	}
	if !follow {
		return nil
	}
	var buf [32 << 10]byte
	drain := func() error {
		for f != nil {
			k, err := f.Read(buf[:])
			if k > 0 {
				if _, werr := w.Write(buf[:k]); werr != nil {
					return werr
				}
			}
			if err == io.EOF || k == 0 {
				return nil
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	t := time.NewTicker(FollowPoll)
	defer t.Stop()
	for {
		if err := drain(); err != nil {
			return err
		}
		// Rotated or truncated?
		if fi, err := os.Stat(path); err == nil {
			switch {
			case f == nil:
				if f, err = os.Open(path); err != nil {
					f = nil
				}
				continue
			default:
				held, herr := f.Stat()
				if herr == nil && !os.SameFile(fi, held) {
					if err := drain(); err != nil { // what was written before the rename
						return err
					}
					f.Close()
					// More than one rotation since the last look: the
					// files between the one held and the current one.
					for _, r := range newerRotated(path, held) {
						b, err := os.ReadFile(r)
						if err != nil {
							continue // rotated away meanwhile
						}
						if _, err := w.Write(b); err != nil {
							return err
						}
					}
					if f, err = os.Open(path); err != nil {
						f = nil
					}
					continue
				}
				if pos, err := f.Seek(0, io.SeekCurrent); err == nil && fi.Size() < pos {
					f.Seek(0, io.SeekStart)
					continue
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// newerRotated returns the rotated files of path (path.1, path.2, ...)
// newer than held, oldest first: those before held in the chain, or all of
// them when held is no longer in it (rotated out of the files kept).
func newerRotated(path string, held os.FileInfo) []string {
	var newer []string
	for i := 1; ; i++ {
		name := path + "." + strconv.Itoa(i)
		fi, err := os.Stat(name)
		if err != nil || os.SameFile(fi, held) {
			break
		}
		newer = append(newer, name)
	}
	slices.Reverse(newer)
	return newer
}

// writeLast writes the last n lines, taking older ones from the rotated
// files when cur has fewer than n.
func writeLast(path string, cur []byte, n int, w io.Writer) error {
	if n == 0 {
		return nil
	}
	chunks := [][]byte{cur}
	lines := countLines(cur)
	for i := 1; i <= maxRotated && (n < 0 || lines < n); i++ {
		b, err := os.ReadFile(path + "." + strconv.Itoa(i))
		if err != nil {
			break
		}
		chunks = append(chunks, b)
		lines += countLines(b)
	}
	var all []byte
	for i := len(chunks) - 1; i >= 0; i-- {
		all = append(all, chunks[i]...)
	}
	if n > 0 {
		all = lastLines(all, n)
	}
	_, err := w.Write(all)
	return err
}

func countLines(b []byte) int {
	n := bytes.Count(b, []byte{'\n'})
	if len(b) > 0 && b[len(b)-1] != '\n' {
		n++
	}
	return n
}

// lastLines returns the suffix of b holding its last n lines (a last line
// without its newline counts).
func lastLines(b []byte, n int) []byte {
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n--
			if n == 0 {
				return b[i+1:]
			}
		}
	}
	return b
}

// isConnRefused reports whether err means that nothing listens on a socket.
func isConnRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}
