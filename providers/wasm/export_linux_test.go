package wasm

// UseOpenat2 turns resolving grant paths with openat2 on or off (off:
// os.Root's walk), for the modules instantiated from now on, and returns
// a function that restores what was.
func UseOpenat2(on bool) (restore func()) {
	was := noOpenat2.Swap(!on)
	return func() { noOpenat2.Store(was) }
}

// HasOpenat2 reports whether the kernel has openat2.
func HasOpenat2() bool { return hasOpenat2() }
