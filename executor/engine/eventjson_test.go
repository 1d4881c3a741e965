package engine

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/orch-dev/orch/spec"
)

// FuzzEventJSON: AppendJSON writes byte for byte what encoding/json makes
// of the event's JSON form, for any strings (escapes, invalid UTF-8,
// U+2028), numbers and times, and reads back as the same event.
func FuzzEventJSON(f *testing.F) {
	f.Add(int64(1764900000123456789), uint8(1), "api", 0, 4242, true, 3, "SIGTERM", "plain detail", "")
	f.Add(int64(0), uint8(16), "", 2, 0, false, 0, "", "main.hcl:3,5-9: <bad> & \"quoted\"\n\tline\u2028", "topic/x")
	f.Add(int64(-62135596800000000), uint8(31), "web", 1, -1, true, -7, "\x00\xff", "\xc3\x28 invalid", "t")
	f.Fuzz(func(t *testing.T, nanos int64, typ uint8, name string, index int, pid int, hasCode bool, code int, signal, detail, topic string) {
		ev := Event{Time: time.Unix(0, nanos).UTC(), Type: EventType(typ%uint8(len(eventNames)-1) + 1), Pid: pid, Signal: signal, Detail: detail, Topic: topic}
		if name != "" {
			ev.Addr = spec.Address{Kind: spec.KindDaemon, Name: name}
			if index > 0 {
				ev.Addr.Key = spec.IntKey(index % 1000)
			}
		}
		if hasCode {
			ev.ExitCode = &code
		}
		j := jsonEvent{Time: ev.Time, Type: ev.Type, Pid: ev.Pid, ExitCode: ev.ExitCode, Signal: ev.Signal, Detail: ev.Detail, Topic: ev.Topic}
		if !ev.Addr.IsZero() {
			j.Address = ev.Addr.String()
		}
		want, wantErr := json.Marshal(j)
		got, gotErr := json.Marshal(ev)
		if (wantErr != nil) != (gotErr != nil) {
			t.Fatalf("errors differ: encoding/json %v, AppendJSON %v", wantErr, gotErr)
		}
		if wantErr != nil {
			return
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON\n%s\nencoding/json\n%s", got, want)
		}
		if direct := ev.AppendJSON(nil); !bytes.Equal(direct, want) {
			t.Fatalf("AppendJSON directly\n%s\nencoding/json\n%s", direct, want)
		}
	})
}
