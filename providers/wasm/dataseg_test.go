package wasm

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"testing"

	"github.com/orch-dev/orch/providers/wasm/wasmtest"
	"github.com/tetratelabs/wazero"
)

// seg is a data segment of a module built by testModule.
type seg struct {
	passive bool
	offset  int32
	init    string
}

// testModule builds a module with one memory of pages pages and segs; with
// dataCount, a data count section too.
func testModule(pages int, dataCount bool, segs ...seg) []byte {
	section := func(b []byte, id byte, body []byte) []byte {
		b = append(b, id)
		b = binary.AppendUvarint(b, uint64(len(body)))
		return append(b, body...)
	}
	b := []byte("\x00asm\x01\x00\x00\x00")
	b = section(b, 5, binary.AppendUvarint([]byte{1, 0}, uint64(pages)))
	if dataCount {
		b = section(b, sectionDataCount, binary.AppendUvarint(nil, uint64(len(segs))))
	}
	body := binary.AppendUvarint(nil, uint64(len(segs)))
	for _, s := range segs {
		if s.passive {
			body = append(body, 1)
		} else {
			body = append(body, 0, opI32Const)
			body = appendSleb32(body, s.offset)
			body = append(body, opEnd)
		}
		body = binary.AppendUvarint(body, uint64(len(s.init)))
		body = append(body, s.init...)
	}
	return section(b, sectionData, body)
}

func countSegments(t *testing.T, bin []byte) int {
	t.Helper()
	for p := 8; p < len(bin); {
		size, n := uleb32(bin[p+1:])
		if bin[p] == sectionData {
			count, _ := uleb32(bin[p+1+n:])
			return int(count)
		}
		p += 1 + n + int(size)
	}
	return 0
}

// memoryAfter instantiates bin (without running anything: the
// interpreter, no start functions) and returns its memory, or the
// instantiation's error.
func memoryAfter(t *testing.T, rt wazero.Runtime, bin []byte) ([]byte, error) {
	t.Helper()
	ctx := context.Background()
	c, err := rt.CompileModule(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	m, err := rt.InstantiateModule(ctx, c, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		return nil, err
	}
	defer m.Close(ctx)
	mem, _ := m.Memory().Read(0, m.Memory().Size())
	return bytes.Clone(mem), nil
}

func TestMergeDataSegments(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	big := string(bytes.Repeat([]byte{7}, 3000))
	for _, tc := range []struct {
		name      string
		bin       []byte
		segments  int // after merging
		unchanged bool
		fails     bool // instantiation fails, before and after
	}{
		{name: "small gaps, out of order", segments: 1,
			bin: testModule(1, false, seg{offset: 100, init: "abc"}, seg{offset: 10, init: "hello"}, seg{offset: 16, init: "x"},
				seg{offset: 15, init: ""}, seg{offset: 200, init: big})},
		{name: "a gap over the limit", segments: 2,
			bin: testModule(1, false, seg{offset: 0, init: "a"}, seg{offset: 3 + maxMergedGap + 1, init: "b"}, seg{offset: 2, init: "c"})},
		{name: "a gap at the limit", segments: 1,
			bin: testModule(1, false, seg{offset: 0, init: "a"}, seg{offset: 1 + maxMergedGap, init: "b"})},
		{name: "adjacent", segments: 1,
			bin: testModule(1, false, seg{offset: 5, init: "ab"}, seg{offset: 7, init: "cd"})},
		{name: "overlapping", unchanged: true,
			bin: testModule(1, false, seg{offset: 0, init: "aaaa"}, seg{offset: 2, init: "bb"})},
		{name: "passive", unchanged: true,
			bin: testModule(1, false, seg{offset: 0, init: "aaaa"}, seg{passive: true, init: "bb"})},
		{name: "data count section", unchanged: true,
			bin: testModule(1, true, seg{offset: 0, init: "aaaa"}, seg{offset: 8, init: "bb"})},
		{name: "one segment", unchanged: true,
			bin: testModule(1, false, seg{offset: 0, init: "aaaa"})},
		{name: "out of bounds", segments: 1, fails: true,
			bin: testModule(1, false, seg{offset: 65000, init: "a"}, seg{offset: 65535, init: "bc"})},
		{name: "offset over 2 GiB", segments: 2, fails: true,
			bin: testModule(1, false, seg{offset: 0, init: "a"}, seg{offset: -8, init: "bc"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			merged := mergeDataSegments(tc.bin)
			if tc.unchanged {
				if !bytes.Equal(merged, tc.bin) {
					t.Fatal("changed")
				}
				return
			}
			if n := countSegments(t, merged); n != tc.segments {
				t.Errorf("%d segments after merging, want %d", n, tc.segments)
			}
			want, err1 := memoryAfter(t, rt, tc.bin)
			got, err2 := memoryAfter(t, rt, merged)
			if tc.fails {
				if err1 == nil || err2 == nil {
					t.Fatalf("instantiation: %v before merging, %v after, want errors", err1, err2)
				}
				return
			}
			if err1 != nil || err2 != nil {
				t.Fatalf("instantiation: %v before merging, %v after", err1, err2)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("the memory differs after merging")
			}
		})
	}
}

// TestMergeDataSegmentsMalformed: a truncated module is returned as it is
// (the compiler rejects it), without a panic.
func TestMergeDataSegmentsMalformed(t *testing.T) {
	bin := testModule(1, false, seg{offset: 100, init: "abc"}, seg{offset: 10, init: "hello"})
	for n := 0; n < len(bin); n++ {
		if got := mergeDataSegments(bin[:n]); !bytes.Equal(got, bin[:n]) {
			t.Fatalf("truncated at %d: changed", n)
		}
	}
}

// TestMergeDataSegmentsGoGuest: a Go guest's memory is the same, byte for
// byte, with its data segments merged.
func TestMergeDataSegmentsGoGuest(t *testing.T) {
	bin, err := os.ReadFile(wasmtest.Guest(t, "hostile"))
	if err != nil {
		t.Fatal(err)
	}
	merged := mergeDataSegments(bin)
	before, after := countSegments(t, bin), countSegments(t, merged)
	t.Logf("%d data segments, %d merged", before, after)
	if after >= before || after > 16 {
		t.Fatalf("%d data segments, %d merged", before, after)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	if err := instantiateHost(ctx, rt); err != nil {
		t.Fatal(err)
	}
	want, err := memoryAfter(t, rt, bin)
	if err != nil {
		t.Fatal(err)
	}
	got, err := memoryAfter(t, rt, merged)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the memory differs after merging")
	}
}
