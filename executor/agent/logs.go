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
	var curFi os.FileInfo
	if f != nil {
		defer func() { f.Close() }()
		if cur, err = io.ReadAll(f); err != nil {
			return err
		}
		curFi, _ = f.Stat()
	}
	newest, err := writeLast(path, cur, curFi, n, w)
	if err != nil {
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
	// gone is the last file read to its end after a rotation: catchUp's
	// starting point when no current file could be opened then.
	var gone os.FileInfo
	if f == nil {
		gone = newest // no current file: rotated files were printed, if any
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
			case f == nil && gone != nil:
				// Rotated away while none was current: catch up from
				// the last file written.
				next, last, err := catchUp(path, gone, w)
				if err != nil {
					return err
				}
				f, gone = next, last
				continue
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
					next, last, err := catchUp(path, held, w)
					if err != nil {
						return err
					}
					f, gone = next, last
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

// catchUp follows a rotation of path away from held (read to its end
// already): it writes the rotated files newer than held, oldest first (the
// log may have rotated more than once since the last look), and returns
// the current file, opened (nil if there is none yet), and the last file
// it wrote (held if none). The log daemon may
// rotate again meanwhile; catchUp tries again until path.1 is the last
// file it wrote or the one it returns, so no file is skipped or written
// twice.
func catchUp(path string, held os.FileInfo, w io.Writer) (*os.File, os.FileInfo, error) {
	last := held
	for try := 0; ; try++ {
		next, err := os.Open(path)
		if err != nil {
			next = nil
		}
		var nextFi os.FileInfo
		if next != nil {
			if nextFi, err = next.Stat(); err != nil {
				next.Close()
				next, nextFi = nil, nil
			}
		}
		newer, found := newerRotated(path, last, nextFi)
		if !found && len(newer) > 0 && try < catchUpTries {
			// A rotation under way (path.1 is missing between two of
			// its renames), or last rotated out of the files kept: look
			// again before taking all there is.
			for _, r := range newer {
				r.f.Close()
			}
			if next != nil {
				next.Close()
			}
			time.Sleep(time.Millisecond)
			continue
		}
		for i, r := range newer {
			_, err := io.Copy(w, r.f)
			if err != nil {
				for _, r := range newer[i:] {
					r.f.Close()
				}
				if next != nil {
					next.Close()
				}
				return nil, last, err
			}
			r.f.Close()
			last = r.fi
		}
		p1, err := os.Stat(path + ".1")
		if err != nil {
			if _, err2 := os.Stat(path + ".2"); err2 != nil {
				return next, last, nil // no rotated file kept (max_files = 0)
			}
		}
		if (err == nil && (os.SameFile(p1, last) || (nextFi != nil && os.SameFile(p1, nextFi)))) || try >= catchUpTries {
			return next, last, nil
		}
		if next != nil {
			next.Close()
		}
		time.Sleep(time.Millisecond)
	}
}

// catchUpTries bounds how often catchUp looks again, a millisecond apart,
// at a chain of rotated files that is not what it expects (being renamed).
const catchUpTries = 200

type rotated struct {
	f  *os.File
	fi os.FileInfo
}

// newerRotated opens the rotated files of path (path.1, path.2, ...)
// newer than last and older than next (nil: no bound), oldest first:
// those before last in the chain (found), or all of them when last is not
// in it (rotated out of the files kept, or a rotation under way). Opened, each is read whole even if
// it is renamed meanwhile; one seen twice (renamed during the walk) is
// taken once.
func newerRotated(path string, last, next os.FileInfo) (newer []rotated, found bool) {
	seen := func(fi os.FileInfo) bool {
		for _, r := range newer {
			if os.SameFile(r.fi, fi) {
				return true
			}
		}
		return false
	}
	for i := 1; i < 10000; i++ {
		f, err := os.Open(path + "." + strconv.Itoa(i))
		if err != nil {
			// A rotation renames from the oldest down, leaving one name
			// free at a time: the chain goes on past one missing name.
			if _, err := os.Stat(path + "." + strconv.Itoa(i+1)); err == nil {
				continue
			}
			break
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			break
		}
		if os.SameFile(fi, last) {
			f.Close()
			found = true
			break
		}
		if (next != nil && os.SameFile(fi, next)) || seen(fi) {
			f.Close()
			continue
		}
		newer = append(newer, rotated{f, fi})
	}
	slices.Reverse(newer)
	return newer, found
}

// writeLast writes the last n lines, taking older ones from the rotated
// files when cur has fewer than n.
func writeLast(path string, cur []byte, curFi os.FileInfo, n int, w io.Writer) (newest os.FileInfo, err error) {
	if n == 0 {
		return nil, nil
	}
	chunks := [][]byte{cur}
	lines := countLines(cur)
	for i := 1; i <= maxRotated && (n < 0 || lines < n); i++ {
		f, err := os.Open(path + "." + strconv.Itoa(i))
		if err != nil {
			if _, err := os.Stat(path + "." + strconv.Itoa(i+1)); err == nil {
				continue // one name free while a rotation renames
			}
			break
		}
		fi, err := f.Stat()
		if err == nil && curFi != nil && os.SameFile(fi, curFi) {
			f.Close() // rotated since it was read as the current file
			continue
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			break
		}
		if newest == nil {
			newest = fi
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
	_, err = w.Write(all)
	return newest, err
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
