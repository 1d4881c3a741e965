package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers/process"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTailFollowsSeveralRotationsBetweenLooks: a log rotated several times
// between two looks of Tail (a chatty daemon, a small max_size) loses no
// line: the files between the one Tail held and the new one are read, in
// order. The writer rotates with the log daemon's own process.RotateLog.
func TestTailFollowsSeveralRotationsBetweenLooks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "daemon.chatty.log")
	const lines, perFile, keep = 400, 5, 200
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuf{}
	done := make(chan error, 1)
	go func() { done <- Tail(ctx, path, -1, true, out) }() // all: whenever it starts, nothing is skipped

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < lines; i++ {
		if i > 0 && i%perFile == 0 {
			f.Close()
			process.RotateLog(path, keep) // as the log daemon does
			if f, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
				t.Fatal(err)
			}
			// About ten rotations per FollowPoll.
			time.Sleep(FollowPoll / 10)
		}
		fmt.Fprintf(f, "line %d\n", i)
	}
	f.Close()
	last := fmt.Sprintf("line %d\n", lines-1)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.HasSuffix(out.String(), last) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for i, l := range got {
		if want := fmt.Sprintf("line %d", i); l != want {
			t.Fatalf("line %d of the output is %q, want %q (%d lines in all)", i, l, want, len(got))
		}
	}
	if len(got) != lines {
		t.Fatalf("%d lines followed, want %d", len(got), lines)
	}
}
