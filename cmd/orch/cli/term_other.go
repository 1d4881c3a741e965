//go:build !unix

package cli

// terminalWidth returns 0: the width is unknown on this platform.
func terminalWidth(uintptr) int { return 0 }
