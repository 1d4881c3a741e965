package wasm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
)

// BenchmarkGrantFSOpenRead measures what path_open, fd_filestat_get,
// fd_read and fd_close of a 64-byte file cost in the file system of a
// grant, without the guest: wazero's DirFS (what grants were), and
// grantFS resolving with openat2 or with os.Root's walk, at depth 1 and 4.
func BenchmarkGrantFSOpenRead(b *testing.B) {
	dir := b.TempDir()
	deep := filepath.Join(dir, "a", "b", "c")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		b.Fatal(err)
	}
	for _, d := range []string{dir, deep} {
		if err := os.WriteFile(filepath.Join(d, "small.txt"), []byte(strings.Repeat("x", 64)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	g, err := openGrant(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	for _, impl := range []string{"dirfs", "openat2", "walk"} {
		var fsys experimentalsys.FS = g
		if impl == "dirfs" {
			fsys = sysfs.DirFS(dir)
		}
		for _, p := range []string{"small.txt", "a/b/c/small.txt"} {
			b.Run(impl+"/depth"+string(rune('1'+strings.Count(p, "/"))), func(b *testing.B) {
				was := noOpenat2.Swap(impl == "walk")
				defer noOpenat2.Store(was)
				buf := make([]byte, 512)
				for b.Loop() {
					f, e := fsys.OpenFile(p, experimentalsys.O_RDONLY, 0)
					if e != 0 {
						b.Fatal(e)
					}
					if _, e := f.Stat(); e != 0 {
						b.Fatal(e)
					}
					if n, e := f.Read(buf); e != 0 || n != 64 {
						b.Fatal(n, e)
					}
					f.Close()
				}
			})
		}
	}
}
