package module

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orch-dev/orch/spec"
)

// TestFileLogRotates: a module's log is rotated by size as a daemon's is,
// keeping MaxFiles rotated files of whole lines, none larger than MaxSize,
// and the newest lines in the current file.
func TestFileLogRotates(t *testing.T) {
	dir := t.TempDir()
	addr := spec.Address{Kind: spec.KindModule, Name: "chatty"}
	path := filepath.Join(dir, "module.chatty.log")
	l := NewFileLog(func(spec.Address) string { return path })
	l.MaxSize, l.MaxFiles = 1024, 2
	defer l.Close()
	for i := 0; i < 200; i++ {
		l.Write(Record{Addr: addr, Level: LevelInfo, Message: fmt.Sprintf("message %03d", i)})
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Error("a third rotated file with MaxFiles 2")
	}
	for _, p := range []string{path, path + ".1", path + ".2"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 || len(b) > 1024 || !strings.HasSuffix(string(b), "\n") {
			t.Errorf("%s: %d bytes, want whole lines, at most 1024", filepath.Base(p), len(b))
		}
	}
	cur, _ := os.ReadFile(path)
	if !strings.HasSuffix(string(cur), "message 199\n") {
		t.Errorf("the current file ends with %q", cur[max(0, len(cur)-40):])
	}
	older, _ := os.ReadFile(path + ".1")
	lastOlder := strings.Split(strings.TrimSuffix(string(older), "\n"), "\n")
	firstCur := strings.SplitN(string(cur), "\n", 2)[0]
	var a, b int
	fmt.Sscanf(lastOlder[len(lastOlder)-1][strings.LastIndex(lastOlder[len(lastOlder)-1], "message "):], "message %d", &a)
	fmt.Sscanf(firstCur[strings.LastIndex(firstCur, "message "):], "message %d", &b)
	if b != a+1 {
		t.Errorf(".log.1 ends with message %d, the current file starts with %d", a, b)
	}
}
