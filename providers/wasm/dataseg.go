package wasm

import (
	"bytes"
	"encoding/binary"
	"sort"
)

// A Go guest comes with tens of thousands of small data segments (the
// linker starts a new one after every run of zeros longer than a few
// bytes: 38,727 segments for 0.95 MB in the hostile guest), and wazero
// evaluates each one's offset expression, with allocations, every time
// the module is instantiated: about 2 ms of each instantiation.
// mergeDataSegments rewrites the data section, once before compiling, into
// a few segments that write the same bytes (the gaps between the merged
// segments, zeros, are written as zeros).
//
// The rewrite is exact when the segments are active segments of memory 0
// at constant offsets that do not overlap (then their order does not
// matter, and a gap between two of them is never written by any segment,
// so it is zero after instantiation either way) and nothing refers to a
// segment by its index: memory.init and data.drop need the data count
// section, so a module without one cannot use them. An instantiation
// fails (a segment out of the memory's bounds) exactly when it failed
// before, since a merged segment ends where its last part ended. Any other
// module is returned as it is.

// maxMergedGap is the longest run of zeros written to join two segments:
// larger gaps stay gaps.
const maxMergedGap = 4096

// Wasm binary format constants.
const (
	sectionData      = 11
	sectionDataCount = 12
	opI32Const       = 0x41
	opEnd            = 0x0b
)

type dataSegment struct {
	offset uint32
	init   []byte
}

// mergeDataSegments returns bin with its data segments merged, or bin
// itself when it has nothing to merge or when merging would not be exact
// (see above). It does not validate the module: a malformed one is
// returned as it is, for the compiler to reject.
func mergeDataSegments(bin []byte) []byte {
	if len(bin) < 8 || !bytes.Equal(bin[:4], []byte("\x00asm")) {
		return bin
	}
	var dataID, dataStart, dataEnd int // the data section: its id, its contents
	for p := 8; p < len(bin); {
		id := bin[p]
		size, n := uleb32(bin[p+1:])
		if n == 0 {
			return bin
		}
		start := p + 1 + n
		end := start + int(size)
		if end > len(bin) || end < start {
			return bin
		}
		switch id {
		case sectionDataCount:
			return bin
		case sectionData:
			if dataEnd != 0 {
				return bin // two data sections: invalid
			}
			dataID, dataStart, dataEnd = p, start, end
		}
		p = end
	}
	if dataEnd == 0 {
		return bin
	}
	segs, ok := parseDataSegments(bin[dataStart:dataEnd])
	if !ok || len(segs) < 2 {
		return bin
	}
	sort.SliceStable(segs, func(i, j int) bool { return segs[i].offset < segs[j].offset })
	for i := 1; i < len(segs); i++ {
		if uint64(segs[i-1].offset)+uint64(len(segs[i-1].init)) > uint64(segs[i].offset) {
			return bin // overlapping: the order would matter
		}
	}
	// Groups of segments to merge: [from, to).
	type group struct{ from, to int }
	var groups []group
	for i := 0; i < len(segs); {
		j := i + 1
		end := uint64(segs[i].offset) + uint64(len(segs[i].init))
		for j < len(segs) && uint64(segs[j].offset)-end <= maxMergedGap {
			end = uint64(segs[j].offset) + uint64(len(segs[j].init))
			j++
		}
		groups = append(groups, group{i, j})
		i = j
	}
	if len(groups) == len(segs) {
		return bin
	}
	sec := binary.AppendUvarint(nil, uint64(len(groups))) // LEB128
	for _, g := range groups {
		first, last := segs[g.from], segs[g.to-1]
		size := int(last.offset-first.offset) + len(last.init)
		sec = append(sec, 0, opI32Const)
		sec = appendSleb32(sec, int32(first.offset))
		sec = append(sec, opEnd)
		sec = binary.AppendUvarint(sec, uint64(size))
		at := len(sec)
		sec = append(sec, make([]byte, size)...)
		for _, s := range segs[g.from:g.to] {
			copy(sec[at+int(s.offset-first.offset):], s.init)
		}
	}
	out := make([]byte, 0, len(bin)-(dataEnd-dataStart)+len(sec)+5)
	out = append(out, bin[:dataID+1]...)
	out = binary.AppendUvarint(out, uint64(len(sec))) // LEB128
	out = append(out, sec...)
	out = append(out, bin[dataEnd:]...)
	return out
}

// parseDataSegments parses the contents of a data section; ok is false
// unless every segment is active, of memory 0 (flag 0), at an i32.const
// offset.
func parseDataSegments(sec []byte) (segs []dataSegment, ok bool) {
	count, n := uleb32(sec)
	if n == 0 || int(count) > len(sec) {
		return nil, false
	}
	p := n
	segs = make([]dataSegment, 0, count)
	for i := uint32(0); i < count; i++ {
		if p+2 > len(sec) || sec[p] != 0 || sec[p+1] != opI32Const {
			return nil, false
		}
		p += 2
		off, n := sleb32(sec[p:])
		if n == 0 || p+n >= len(sec) || sec[p+n] != opEnd {
			return nil, false
		}
		p += n + 1
		size, n := uleb32(sec[p:])
		if n == 0 || p+n+int(size) > len(sec) || p+n+int(size) < p {
			return nil, false
		}
		p += n
		segs = append(segs, dataSegment{offset: uint32(off), init: sec[p : p+int(size)]})
		p += int(size)
	}
	if p != len(sec) {
		return nil, false
	}
	return segs, true
}

// uleb32 decodes an unsigned LEB128 u32; n is 0 when b does not start with
// one.
func uleb32(b []byte) (v uint32, n int) {
	var shift uint
	for i := 0; i < len(b) && i < 5; i++ {
		c := b[i]
		if i == 4 && c > 0x0f {
			return 0, 0
		}
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, i + 1
		}
		shift += 7
	}
	return 0, 0
}

// sleb32 decodes a signed LEB128 i32; n is 0 when b does not start with
// one.
func sleb32(b []byte) (v int32, n int) {
	var r int64
	var shift uint
	for i := 0; i < len(b) && i < 5; i++ {
		c := b[i]
		r |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if c&0x40 != 0 {
				r -= 1 << shift
			}
			if r < -1<<31 || r > 1<<31-1 {
				return 0, 0
			}
			return int32(r), i + 1
		}
	}
	return 0, 0
}

// appendSleb32 appends v as a signed LEB128.
func appendSleb32(b []byte, v int32) []byte {
	x := int64(v)
	for {
		c := byte(x & 0x7f)
		x >>= 7
		if x == 0 && c&0x40 == 0 || x == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
