package wasm

import (
	"context"
	"fmt"
	"unicode/utf8"

	"github.com/orch-dev/orch/providers/bus"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// HostModule is the name of the import module of orch's host functions.
const HostModule = "orch"

// Results of host functions that fail (docs/modules.md).
const (
	resultNotFound = -1 // kv_get: no such key
	resultError    = -2 // the call failed; the reason is in the module's log
)

const i32, i64 = api.ValueTypeI32, api.ValueTypeI64

// instantiateHost instantiates WASI and the "orch" host module in rt.
// Each host function finds the Module it serves in its call's context.
func instantiateHost(ctx context.Context, rt wazero.Runtime) error {
	if err := instantiateWASI(ctx, rt); err != nil {
		return err
	}
	b := rt.NewHostModuleBuilder(HostModule)
	fn := func(name string, f func(*Module, context.Context, api.Module, []uint64), params, results []api.ValueType) {
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, s []uint64) {
			m, ok := ctx.Value(moduleKey{}).(*Module)
			if !ok {
				panic("orch: host function called outside a module's call")
			}
			f(m, ctx, mod, s)
		}), params, results).Export(name)
	}
	fn("log", (*Module).hostLog, []api.ValueType{i32, i32, i32}, nil)
	fn("now", (*Module).hostNow, nil, []api.ValueType{i64})
	fn("config", (*Module).hostConfig, []api.ValueType{i32, i32}, []api.ValueType{i32})
	fn("publish", (*Module).hostPublish, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32})
	fn("subscribe", (*Module).hostSubscribe, []api.ValueType{i32, i32}, []api.ValueType{i32})
	fn("kv_get", (*Module).hostKVGet, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32})
	fn("kv_put", (*Module).hostKVPut, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32})
	fn("kv_delete", (*Module).hostKVDelete, []api.ValueType{i32, i32}, []api.ValueType{i32})
	_, err := b.Instantiate(ctx)
	return err
}

// read returns a copy of guest memory [ptr, ptr+n), or ok false when it is
// out of bounds.
func read(mod api.Module, ptr, n uint64) ([]byte, bool) {
	b, ok := mod.Memory().Read(uint32(ptr), uint32(n))
	if !ok {
		return nil, false
	}
	return append([]byte(nil), b...), true
}

func readString(mod api.Module, ptr, n uint64) (string, bool) {
	b, ok := mod.Memory().Read(uint32(ptr), uint32(n))
	if !ok {
		return "", false
	}
	return string(b), true
}

// log(level i32, ptr i32, len i32)
func (m *Module) hostLog(_ context.Context, mod api.Module, s []uint64) {
	msg, ok := readString(mod, s[1], s[2])
	if !ok {
		msg = "(log message outside the module's memory)"
	}
	if !utf8.ValidString(msg) {
		msg = string([]rune(msg))
	}
	lvl := Level(int32(s[0]))
	if lvl < LevelDebug || lvl > LevelError {
		lvl = LevelInfo
	}
	m.log(lvl, msg)
}

// now() i64: the host's clock, Unix nanoseconds.
func (m *Module) hostNow(_ context.Context, _ api.Module, s []uint64) {
	s[0] = uint64(m.h.opts.Now().UnixNano())
}

func (m *Module) errorf(format string, args ...any) int32 {
	m.log(LevelError, "orch: "+fmt.Sprintf(format, args...))
	return resultError
}

func result(s []uint64, rc int32) { s[0] = uint64(uint32(rc)) }

// publish(topic_ptr, topic_len, data_ptr, data_len i32) i32
func (m *Module) hostPublish(_ context.Context, mod api.Module, s []uint64) {
	topic, ok := readString(mod, s[0], s[1])
	if !ok {
		result(s, m.errorf("publish: topic outside the module's memory"))
		return
	}
	if !bus.ValidTopic(topic) {
		result(s, m.errorf("publish: invalid topic %q: printable ASCII, no spaces or '*', and not starting with %q", topic, bus.ReservedPrefix))
		return
	}
	data, ok := read(mod, s[2], s[3])
	if !ok {
		result(s, m.errorf("publish: data outside the module's memory"))
		return
	}
	m.bus.Publish(bus.Event{Topic: topic, Data: data})
	result(s, 0)
}

// subscribe(pattern_ptr, pattern_len i32) i32
func (m *Module) hostSubscribe(_ context.Context, mod api.Module, s []uint64) {
	p, ok := readString(mod, s[0], s[1])
	if !ok || !bus.ValidPattern(p) {
		result(s, m.errorf("subscribe: invalid pattern %q: printable ASCII, no spaces, '*' only at the end", p))
		return
	}
	m.subscribe(p)
	result(s, 0)
}

// config(buf_ptr, buf_cap i32) i32: the length of the module's
// configuration as JSON, written into buf only when it fits.
func (m *Module) hostConfig(_ context.Context, mod api.Module, s []uint64) {
	if uint64(len(m.config)) <= s[1] && !mod.Memory().Write(uint32(s[0]), m.config) {
		result(s, m.errorf("config: buffer outside the module's memory"))
		return
	}
	result(s, int32(len(m.config)))
}

// kv_get(key_ptr, key_len, buf_ptr, buf_cap i32) i32: the value's length
// (written into buf only when it fits), -1 when there is none, -2 on error.
func (m *Module) hostKVGet(_ context.Context, mod api.Module, s []uint64) {
	if m.kv == nil {
		result(s, m.errorf("kv_get: this host has no key-value store"))
		return
	}
	key, ok := readString(mod, s[0], s[1])
	if !ok {
		result(s, m.errorf("kv_get: key outside the module's memory"))
		return
	}
	v, found, err := m.kv.Get(key)
	switch {
	case err != nil:
		result(s, m.errorf("kv_get %q: %v", key, err))
	case !found:
		result(s, resultNotFound)
	case uint64(len(v)) <= s[3]:
		if !mod.Memory().Write(uint32(s[2]), v) {
			result(s, m.errorf("kv_get: buffer outside the module's memory"))
			return
		}
		result(s, int32(len(v)))
	default:
		result(s, int32(len(v)))
	}
}

// kv_put(key_ptr, key_len, value_ptr, value_len i32) i32
func (m *Module) hostKVPut(_ context.Context, mod api.Module, s []uint64) {
	if m.kv == nil {
		result(s, m.errorf("kv_put: this host has no key-value store"))
		return
	}
	key, ok := readString(mod, s[0], s[1])
	v, ok2 := read(mod, s[2], s[3])
	if !ok || !ok2 {
		result(s, m.errorf("kv_put: key or value outside the module's memory"))
		return
	}
	if err := m.kv.Put(key, v); err != nil {
		result(s, m.errorf("kv_put %q: %v", key, err))
		return
	}
	result(s, 0)
}

// kv_delete(key_ptr, key_len i32) i32
func (m *Module) hostKVDelete(_ context.Context, mod api.Module, s []uint64) {
	if m.kv == nil {
		result(s, m.errorf("kv_delete: this host has no key-value store"))
		return
	}
	key, ok := readString(mod, s[0], s[1])
	if !ok {
		result(s, m.errorf("kv_delete: key outside the module's memory"))
		return
	}
	if err := m.kv.Delete(key); err != nil {
		result(s, m.errorf("kv_delete %q: %v", key, err))
		return
	}
	result(s, 0)
}
