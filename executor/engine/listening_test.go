package engine

import (
	"context"
	"testing"
)

// awaitListening looks until the listener is there, and gives up, saying
// so, once its generation's context is done.
func TestAwaitListening(t *testing.T) {
	looks := 0
	if !awaitListening(context.Background(), func(context.Context) bool { looks++; return looks == 4 }) {
		t.Fatal("gave up on a listener found at the fourth look")
	}
	if looks != 4 {
		t.Errorf("%d looks, want 4", looks)
	}
	ctx, cancel := context.WithCancel(context.Background())
	looks = 0
	if awaitListening(ctx, func(context.Context) bool {
		looks++
		if looks == 3 {
			cancel()
		}
		return false
	}) {
		t.Fatal("said listening after its context was done")
	}
	if looks != 3 {
		t.Errorf("%d looks after the cancel, want none after the third", looks)
	}
}
