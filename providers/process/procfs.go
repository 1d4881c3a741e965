package process

import (
	"bytes"
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// procStat is what orch reads from /proc/<pid>/stat.
type procStat struct {
	State      byte   // field 3: R, S, D, Z, T, ...
	Pgid       int    // field 5
	Sid        int    // field 6
	StartTicks uint64 // field 22: start time after boot, in clock ticks
	// ExitStatus is field 52, a zombie's wait status (Linux 3.5+; 0 unless
	// orch may ptrace the process); HasExit says it was read.
	ExitStatus int
	HasExit    bool
}

// readStat reads and parses /proc/<pid>/stat by hand, with one open, one
// read and one close and no allocation beyond the path. ok is false when
// the process does not exist (or its stat cannot be parsed).
func readStat(pid int) (st procStat, ok bool) {
	if pid <= 0 {
		return st, false
	}
	fd, err := openRO("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return st, false
	}
	var buf [1024]byte
	n, err := readStatFile(fd, buf[:])
	unix.Close(fd)
	if err != nil || n == 0 {
		return st, false
	}
	return parseStat(buf[:n])
}

// parseStat parses the text of /proc/<pid>/stat. The command name (field
// 2) is in parentheses and may hold spaces and parentheses itself, so the
// fields are counted from the last ')'.
func parseStat(b []byte) (st procStat, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return st, false
	}
	b = b[i+2:] // "S 1 2 3 ..." starting at field 3
	field := 3
	for len(b) > 0 {
		j := bytes.IndexByte(b, ' ')
		var f []byte
		if j < 0 {
			f, b = b, nil
		} else {
			f, b = b[:j], b[j+1:]
		}
		switch field {
		case 3:
			if len(f) != 1 {
				return st, false
			}
			st.State = f[0]
		case 5:
			st.Pgid = atoi(f)
		case 6:
			st.Sid = atoi(f)
		case 22:
			st.StartTicks = atou(f)
			if st.State != 'Z' {
				return st, true
			}
			ok = true // read on to the exit status of the zombie
		case 52:
			st.ExitStatus, st.HasExit = int(atou(f)), true
			return st, true
		}
		field++
	}
	return st, ok
}

func atoi(b []byte) int {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	n := int(atou(b))
	if neg {
		return -n
	}
	return n
}

func atou(b []byte) uint64 {
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}

// bootInfo holds the constants needed to turn start ticks into a time and
// to tell one boot from another.
type bootInfo struct {
	bootID  string    // /proc/sys/kernel/random/boot_id
	btime   time.Time // boot time, from /proc/stat
	clockHz uint64    // AT_CLKTCK, usually 100
}

// hostBoot is this host's bootInfo, read once per orch process: the boot
// id, the boot time and the clock rate do not change while it runs.
var hostBoot = sync.OnceValue(readBootInfo)

func readBootInfo() bootInfo {
	bi := bootInfo{clockHz: 100}
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		bi.bootID = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "btime "); ok {
				if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
					bi.btime = time.Unix(s, 0)
				}
			}
		}
	}
	// AT_CLKTCK (17) from the auxiliary vector; the kernel reports /proc
	// times in these units.
	if b, err := os.ReadFile("/proc/self/auxv"); err == nil {
		for i := 0; i+16 <= len(b); i += 16 {
			k := binary.NativeEndian.Uint64(b[i:])
			v := binary.NativeEndian.Uint64(b[i+8:])
			if k == 17 && v > 0 {
				bi.clockHz = v
			}
			if k == 0 {
				break
			}
		}
	}
	return bi
}

// startedAt converts start ticks to wall-clock time (to the tick).
func (bi bootInfo) startedAt(ticks uint64) time.Time {
	if bi.btime.IsZero() {
		return time.Time{}
	}
	return bi.btime.Add(time.Duration(ticks) * time.Second / time.Duration(bi.clockHz))
}

// procUmask reads this process's umask from /proc/self/status without
// changing it (calling umask(2) to read it would race with other goroutines
// creating files). It returns -1 when unknown.
func procUmask() int {
	if m, err := strconv.ParseUint(selfStatus("Umask"), 8, 32); err == nil {
		return int(m)
	}
	return -1
}

// selfStatus is the value of field in /proc/self/status ("Umask",
// "SigIgn"), trimmed; "" when it cannot be read.
func selfStatus(field string) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func openRO(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

// readStatFile reads a file of /proc whose text the kernel makes whole at
// the first read (seq_file: /proc/<pid>/stat): a first read that returns
// less than b holds, ending with its newline, is all of it, and the read
// that would return 0 is not made (one system call of four per process
// when a plan observes 10,000 daemons). Anything else reads on to the end.
func readStatFile(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n > 0 && n < len(b) && b[n-1] == '\n' {
			return n, nil
		}
		if n == 0 {
			return 0, nil
		}
		m, err := readFull(fd, b[n:])
		return n + m, err
	}
}

func readFull(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Read(fd, b[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}
