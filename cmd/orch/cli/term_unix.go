//go:build unix

package cli

import "golang.org/x/sys/unix"

// terminalWidth returns the width of the terminal on fd, or 0 when fd is
// not a terminal.
func terminalWidth(fd uintptr) int {
	ws, err := unix.IoctlGetWinsize(int(fd), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}
