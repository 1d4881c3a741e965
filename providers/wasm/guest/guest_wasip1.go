//go:build wasip1

package guest

import (
	"fmt"
	"time"
	"unsafe"
)

var (
	module Module
	buf    []byte // the buffer orch writes into (orch_alloc)
)

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// Register makes m the module's hooks. Call it from an init function: a
// reactor's main function never runs.
func Register(m Module) { module = m }

//go:wasmimport orch log
func hostLog(level int32, ptr unsafe.Pointer, n uint32)

//go:wasmimport orch now
func hostNow() int64

//go:wasmimport orch publish
func hostPublish(topic unsafe.Pointer, topicLen uint32, data unsafe.Pointer, dataLen uint32) int32

//go:wasmimport orch subscribe
func hostSubscribe(pattern unsafe.Pointer, n uint32) int32

//go:wasmimport orch kv_get
func hostKVGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport orch kv_put
func hostKVPut(key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32) int32

//go:wasmimport orch kv_delete
func hostKVDelete(key unsafe.Pointer, keyLen uint32) int32

func str(s string) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.StringData(s)), uint32(len(s))
}

func bytes(b []byte) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))
}

// Log writes msg at level into orch's log of the module.
func Log(level Level, msg string) {
	p, n := str(msg)
	hostLog(int32(level), p, n)
}

// Now returns orch's clock: the module's own clock (time.Now) is a fake
// one that starts in 2022 and barely moves.
func Now() time.Time { return time.Unix(0, hostNow()) }

// Publish puts data on the event bus under topic. Topics starting with
// "orch." are orch's own and refused.
func Publish(topic string, data []byte) error {
	tp, tn := str(topic)
	dp, dn := bytes(data)
	if hostPublish(tp, tn, dp, dn) != 0 {
		return ErrHost
	}
	return nil
}

// Subscribe delivers to OnEvent every event whose topic matches pattern:
// a topic, or a prefix ending in "*" ("orch.daemon.*"), or "*".
func Subscribe(pattern string) error {
	p, n := str(pattern)
	if hostSubscribe(p, n) != 0 {
		return ErrHost
	}
	return nil
}

//go:wasmimport orch config
func hostConfig(buf unsafe.Pointer, bufCap uint32) int32

// Config returns the module's configuration as JSON (null when it has
// none): what Init received, at any time.
func Config() ([]byte, error) {
	v := make([]byte, 512)
	for {
		vp, vn := bytes(v)
		n := hostConfig(vp, vn)
		switch {
		case n < 0:
			return nil, ErrHost
		case uint32(n) <= vn:
			return v[:n], nil
		}
		v = make([]byte, n)
	}
}

// Get returns the value of key; ok is false when there is none.
func (kv) Get(key string) (value []byte, ok bool, err error) {
	kp, kn := str(key)
	v := make([]byte, 256)
	for {
		vp, vn := bytes(v)
		n := hostKVGet(kp, kn, vp, vn)
		switch {
		case n == -1:
			return nil, false, nil
		case n < 0:
			return nil, false, ErrHost
		case uint32(n) <= vn:
			return v[:n], true, nil
		}
		v = make([]byte, n)
	}
}

// Put sets key to value.
func (kv) Put(key string, value []byte) error {
	kp, kn := str(key)
	vp, vn := bytes(value)
	if hostKVPut(kp, kn, vp, vn) != 0 {
		return ErrHost
	}
	return nil
}

// Delete removes key; a missing key is not an error.
func (kv) Delete(key string) error {
	kp, kn := str(key)
	if hostKVDelete(kp, kn) != 0 {
		return ErrHost
	}
	return nil
}

func status(hook string, err error) int32 {
	if err == nil {
		return 0
	}
	Log(Error, hook+": "+err.Error())
	return 1
}

//go:wasmexport orch_alloc
func orchAlloc(size uint32) uint32 {
	buf = make([]byte, size)
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
}

//go:wasmexport orch_init
func orchInit(ptr, n uint32) int32 {
	if module.Init == nil {
		return 0
	}
	config := append([]byte(nil), buf[:n]...)
	_ = ptr // always the start of buf
	return status("init", module.Init(config))
}

//go:wasmexport orch_start
func orchStart() int32 {
	if module.Start == nil {
		return 0
	}
	return status("start", module.Start())
}

//go:wasmexport orch_stop
func orchStop() int32 {
	if module.Stop == nil {
		return 0
	}
	return status("stop", module.Stop())
}

//go:wasmexport orch_on_event
func orchOnEvent(topicPtr, topicLen, dataPtr, dataLen uint32) int32 {
	if module.OnEvent == nil {
		return 0
	}
	base := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
	t := topicPtr - base
	d := dataPtr - base
	ev := Event{Topic: string(buf[t : t+topicLen]), Data: append([]byte(nil), buf[d:d+dataLen]...)}
	if err := module.OnEvent(ev); err != nil {
		return status("event "+ev.Topic, err)
	}
	return 0
}

// orch_on_events receives a batch of events in buf: per event, the topic's
// and the data's length (u32, little endian), then the topic and the data.
// The host prefers it to orch_on_event: one call per batch, not per event.
//
//go:wasmexport orch_on_events
func orchOnEvents(ptr, n, count uint32) int32 {
	if module.OnEvent == nil {
		return 0
	}
	base := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
	b := buf[ptr-base : ptr-base+n]
	for i := uint32(0); i < count; i++ {
		if len(b) < 8 {
			return status("events", errBatch)
		}
		tl := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
		dl := uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24
		b = b[8:]
		if uint32(len(b)) < tl+dl {
			return status("events", errBatch)
		}
		ev := Event{Topic: string(b[:tl]), Data: append([]byte(nil), b[tl:tl+dl]...)}
		b = b[tl+dl:]
		if err := module.OnEvent(ev); err != nil {
			return status("event "+ev.Topic, err)
		}
	}
	return 0
}
