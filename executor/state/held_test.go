package state

import (
	"path/filepath"
	"testing"
)

// Held tells a writer's lock from a free one, without taking it.
func TestHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	if Held(path) {
		t.Fatal("no lock file, yet held")
	}
	st, err := Open(path, Options{Operation: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if !Held(path) {
		t.Fatal("an open writer's lock reads free")
	}
	// Held took nothing: the writer's lock is still its own, and a
	// second writer is refused at once.
	if _, err := Open(path, Options{Operation: "second"}); err == nil {
		t.Fatal("a second writer opened while the first held the lock")
	}
	st.Close()
	if Held(path) {
		t.Fatal("a released lock reads held")
	}
}
