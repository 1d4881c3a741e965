package planner

import "testing"

// Every status reads back from its word, and the words are those of the
// state records and the agent API.
func TestStatusVocabulary(t *testing.T) {
	want := []string{"", "running", "failed", "completed", "stopped", "waiting", "blocked", "held", "pending"}
	for i, w := range want {
		s := Status(i)
		if s.String() != w {
			t.Errorf("Status(%d) = %q, want %q", i, s.String(), w)
		}
		if ParseStatus(w) != s {
			t.Errorf("ParseStatus(%q) = %d, want %d", w, ParseStatus(w), s)
		}
	}
	if ParseStatus("bogus") != StatusNone || Status(len(want)).String() != "" {
		t.Error("an unknown status is not StatusNone")
	}
}

// Every change reason has its own text, the one plans rendered before
// the vocabulary was typed.
func TestReasonVocabulary(t *testing.T) {
	cases := map[Reason]string{
		{Kind: ReasonReload, Arg: "SIGHUP"}:        "reload: SIGHUP",
		{Kind: ReasonKilled, Arg: "SIGKILL"}:       "it was killed by SIGKILL",
		{Kind: ReasonExited, Code: 3}:              "it exited with code 3",
		{Kind: ReasonRestartPolicy, Arg: "always"}: "restart policy always",
		{Kind: ReasonReplaceRequested}:             "as requested with -replace",
		{Kind: ReasonLastStartFailed}:              "its last start failed",
		{Kind: ReasonStopped}:                      "it was stopped",
		{Kind: ReasonNotRunning}:                   "it is not running",
		{Kind: ReasonStateUnknown}:                 "its state is unknown",
		{Kind: ReasonAdopted}:                      "running, ours, and missing from state",
		{Kind: ReasonAdoptedDiffers}:               "adopted instance runs a different configuration",
		{Kind: ReasonUnreadable}:                   "the stored configuration is unreadable",
		{Kind: ReasonLeftOver}:                     "left over by an earlier apply: ours, running, and no longer declared",
		{Kind: ReasonRestartRequested}:             "orch restart",
		{Kind: ReasonAdoptedNewer}:                 "running, ours, and newer than its record",
		{}:                                         "",
	}
	seen := map[string]bool{}
	for r, w := range cases {
		if r.String() != w {
			t.Errorf("%+v: %q, want %q", r, r.String(), w)
		}
		if seen[w] {
			t.Errorf("two reasons say %q", w)
		}
		seen[w] = true
	}
	for k := ReasonNone + 1; k <= ReasonAdoptedNewer; k++ {
		if (Reason{Kind: k}).String() == "" {
			t.Errorf("reason kind %d has no text", k)
		}
	}
}
