package process

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/orch-dev/orch/providers/cgroup"
)

// FuzzParseHandle holds parseHandleFast to encoding/json: whatever it
// accepts, json.Unmarshal decodes to the same HandleInfo.
func FuzzParseHandle(f *testing.F) {
	for _, hi := range []HandleInfo{
		{Pid: 678, StartTicks: 100876, Pgid: 678, Log: "/tmp/s3/.orch/logs/daemon.d00001.log", BootID: "0a40b489-5e08-447b-b180-27e46ad54872",
			Cgroup: &cgroup.Group{Path: "/sys/fs/cgroup/orch-scale-0ae3e3d5/daemon.d00001.4d9537c80d56d947"}, ID: "4d9537c80d56d947"},
		{Pid: 1, StartTicks: 0},
		{Pid: 12, Pgid: 10, Log: "/var/log/x y.log", Cgroup: &cgroup.Group{Path: "/a", V1: map[string]string{"memory": "/m"}}},
	} {
		f.Add([]byte(hi.Encode()))
	}
	for _, s := range []string{
		`{}`, ` { "pid" : 5 , "cgroup" : null } `, `{"pid":05}`, `{"pid":-5}`, `{"pid":5.0}`, `{"pid":5e1}`,
		`{"PID":5}`, `{"pid":5,"log":"a\"b"}`, `{"pid":5,"log":"é"}`, `{"pid":5}x`, `{"pid":5,}`,
		`{"pid":99999999999999999999}`, `{"pid":5,"cgroup":{"path":"/a","v1":{}}}`, `{"pid":5,"extra":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := parseHandleFast(b)
		if !ok {
			return
		}
		var slow HandleInfo
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", b, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fast path %+v, encoding/json %+v", b, fast, slow)
		}
	})
}

// TestParseHandleFastTakesEncoded: the handles Encode writes take the
// fast path (a change of HandleInfo's fields must extend it).
func TestParseHandleFastTakesEncoded(t *testing.T) {
	for _, hi := range []HandleInfo{
		{Pid: 678, StartTicks: 100876, Pgid: 678, Log: "/tmp/l.log", BootID: "0a40b489-5e08-447b-b180-27e46ad54872",
			Cgroup: &cgroup.Group{Path: "/sys/fs/cgroup/orch-x/d.1"}, ID: "4d9537c80d56d947"},
		{Pid: 3, StartTicks: 7, Pgid: 3},
	} {
		got, ok := parseHandleFast(hi.Encode())
		if !ok {
			t.Fatalf("%s: not taken by the fast path", hi.Encode())
		}
		if !reflect.DeepEqual(got, hi) {
			t.Fatalf("got %+v, want %+v", got, hi)
		}
	}
}
