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

// TestParseHandleRefusesPidOne: a handle naming pid 1 (or group 1) is
// never a daemon's, and its group signal would be kill(-1): every process
// the caller may signal.
func TestParseHandleRefusesPidOne(t *testing.T) {
	for _, h := range []string{`{"pid":1}`, `{"pid":1,"pgid":1}`, `{"pid":5,"pgid":1}`, `{"pid":1,"start":4,"pgid":7}`} {
		if hi, err := ParseHandle([]byte(h)); err == nil {
			t.Fatalf("%s: taken as %+v", h, hi)
		}
	}
	if _, err := ParseHandle([]byte(`{"pid":2,"pgid":2}`)); err != nil {
		t.Fatal(err)
	}
}

// FuzzParseRegLine holds parseRegLine to encoding/json, as
// FuzzParseHandle does parseHandleFast.
func FuzzParseRegLine(f *testing.F) {
	h := HandleInfo{Pid: 671, StartTicks: 100874, Pgid: 671, Log: "/tmp/s3/.orch/logs/daemon.d00004.log",
		BootID: "0a40b489-5e08-447b-b180-27e46ad54872", Cgroup: &cgroup.Group{Path: "/sys/fs/cgroup/x/d.1"}, ID: "5c1390bf7a02453d"}
	for _, e := range []regEntry{
		{Name: "daemon.d00004", ID: "5c1390bf7a02453d", logConf: logConf{Address: "daemon.d00004", Project: "scale", Runtime: "runtime.process.default",
			ConfigHash: "26e2aa05a30614ec0e65873501a7d4ee10a68b8a8fe789d1256684983c9869f0", MaxSize: 10485760, MaxFiles: 3},
			Pipe: 402644, Pending: true, Cgroup: &cgroup.Group{Path: "/sys/fs/cgroup/x/d.1"}, By: &starter{Pid: 663, StartTicks: 100775},
			StopSignal: "SIGTERM", StopTimeoutMS: 10000},
		{Name: "daemon.d00004", ID: "5c1390bf7a02453d", logConf: logConf{Handle: json.RawMessage(h.Encode())}},
		{Name: "daemon.d00004", ID: "5c1390bf7a02453d", Gone: true},
		{Name: "job.j", logConf: logConf{Address: "job.j", Handle: json.RawMessage(`{"pid":5}`)}},
	} {
		b, err := json.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{}`, `{"name":"a","by":{"pid":1,"start_ticks":5},"by":{"pid":2}}`, `{"name":"a","cgroup":null}`,
		`{"name":"a","handle":{"pid":1} }`, `{"name":"a","handle":null}`, `{"name":"a","max_size":-1}`, `{"name":"a","pending":true,"gone":false}`,
		`{"name":"a","project":"p","runtime":"p"}`, `{"Name":"a"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := parseRegLine(b, interner{})
		if !ok {
			return
		}
		var slow regEntry
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", b, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fast path %+v, encoding/json %+v", b, fast, slow)
		}
	})
}

// TestParseRegLineTakesWritten: the lines a start, its commit and a
// deletion write take the fast path.
func TestParseRegLineTakesWritten(t *testing.T) {
	h := HandleInfo{Pid: 3, StartTicks: 7, Pgid: 3, Cgroup: &cgroup.Group{Path: "/c"}, ID: "ab"}
	for _, e := range []regEntry{
		{Name: "daemon.a", ID: "ab", logConf: logConf{Address: "daemon.a", Project: "p", Runtime: "runtime.process.default", ConfigHash: "00", MaxSize: 1, MaxFiles: 2},
			Pipe: 9, Pending: true, Cgroup: &cgroup.Group{Path: "/c"}, By: &starter{Pid: 1, StartTicks: 2}, StopSignal: "SIGTERM", StopTimeoutMS: 10},
		{Name: "daemon.a", ID: "ab", logConf: logConf{Handle: json.RawMessage(h.Encode())}},
		{Name: "daemon.a", ID: "ab", Gone: true},
	} {
		b, _ := json.Marshal(e)
		got, ok := parseRegLine(b, interner{})
		if !ok {
			t.Fatalf("%s: not taken by the fast path", b)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("got %+v, want %+v", got, e)
		}
	}
}
