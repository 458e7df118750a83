package slstest

import "slices"

// An lz4 block is a run of sequences: a token (high nibble literal length,
// low nibble match length-4, 15 meaning "extension bytes follow"),
// literal-length extension bytes, the literals, then a 2-byte little-endian
// match offset and match-length extension bytes; the last sequence has
// literals only. Offsets count back from the output position, so a group
// compressed on its own decodes the same when other bytes precede it.
//
// PullLogs builds its lz4 answer from the stored blocks without
// decompressing them: at each boundary the previous group's trailing
// literals, the next group's LogGroupList field header and the next
// group's first literals become the literals of one merged sequence, which
// ends with the next group's first match; the rest of that group's block
// up to its last sequence is copied as it is. The layout below, found when
// a group is stored, is all a pull needs.

// lz4Layout locates the parts of a stored group's lz4 block that stitching
// copies. For a block of one literal run, and for a group stored
// uncompressed, mid is -1 and the literals are data[tailLit:].
type lz4Layout struct {
	lit0    int32 // first sequence's literals: data[lit0:mid]
	mid     int32 // first match's offset bytes; data[mid:tail] is copied verbatim; -1: literals only
	tail    int32 // the last sequence's token
	tailLit int32 // the last sequence's literals: data[tailLit:]
}

// parseLZ4Layout walks an lz4 block that must decode to exactly raw bytes,
// checking every sequence (lengths within the block, offsets within the
// bytes decoded so far, a literal-only last sequence); ok is false for a
// block that does not parse cleanly.
func parseLZ4Layout(block []byte, raw int) (l lz4Layout, ok bool) {
	n := len(block)
	si, di := 0, 0
	first := true
	for si < n {
		tok := si
		b := block[si]
		si++
		var lit, m int
		if lit, si, ok = lz4Length(block, si, int(b>>4)); !ok {
			return l, false
		}
		if lit > n-si {
			return l, false
		}
		litStart := si
		si += lit
		di += lit
		if si == n { // the last sequence: literals only
			if b&15 != 0 || di != raw {
				return l, false
			}
			if first {
				l.lit0, l.mid = int32(litStart), -1
			}
			l.tail, l.tailLit = int32(tok), int32(litStart)
			return l, true
		}
		if first {
			l.lit0, l.mid = int32(litStart), int32(si)
			first = false
		}
		if n-si < 2 {
			return l, false
		}
		off := int(block[si]) | int(block[si+1])<<8
		si += 2
		if off == 0 || off > di {
			return l, false
		}
		if m, si, ok = lz4Length(block, si, int(b&15)); !ok {
			return l, false
		}
		m += 4
		if di += m; di > raw {
			return l, false
		}
	}
	return l, false // empty, or no literal-only last sequence
}

// lz4Length completes a token's 4-bit length v (literals, or match length
// minus 4) with the extension bytes from block[si] on when v is 15; it
// returns the length and the index after it.
func lz4Length(block []byte, si, v int) (int, int, bool) {
	if v != 15 {
		return v, si, true
	}
	for {
		if si >= len(block) {
			return 0, si, false
		}
		x := block[si]
		si++
		v += int(x)
		if x != 255 {
			return v, si, true
		}
	}
}

// setLayout records how g's stored bytes stitch into a pull's lz4 answer.
func (g *storedGroup) setLayout() {
	if !g.compressed {
		g.layout, g.stitchable = lz4Layout{mid: -1}, true
		return
	}
	g.layout, g.stitchable = parseLZ4Layout(g.data, int(g.raw))
}

// uvarintLen is the length of n's uvarint encoding.
func uvarintLen(n int32) int {
	k := 1
	for u := uint32(n); u >= 0x80; u >>= 7 {
		k++
	}
	return k
}

// groupListSize is the size of groups' LogGroupList: each group with its
// field header.
func groupListSize(groups []storedGroup) int {
	n := 0
	for i := range groups {
		n += 1 + uvarintLen(groups[i].raw) + int(groups[i].raw)
	}
	return n
}

// appendStitched appends an lz4 block decoding to the LogGroupList of
// groups (all stitchable), built from their stored blocks; rawLen is
// groupListSize(groups). The final sequence is the last group's last
// literals (or whole data when it is one literal run), so lz4's end-of-block
// rules hold for the answer as they held for that group's block.
func appendStitched(dst []byte, groups []storedGroup, rawLen int) []byte {
	bound := 2*len(groups) + 2 + rawLen/255
	for i := range groups {
		bound += len(groups[i].data) + 1 + uvarintLen(groups[i].raw)
	}
	dst = slices.Grow(dst, bound)
	var pend []byte // trailing literals of the last group with matches
	for i := 0; ; {
		// The literals of one merged sequence: pend, then whole groups
		// that are one literal run, then the header and first literals of
		// the next group with matches, k (none at the end).
		lits := len(pend)
		j := i
		for ; j < len(groups) && groups[j].layout.mid < 0; j++ {
			g := &groups[j]
			lits += 1 + uvarintLen(g.raw) + len(g.data) - int(g.layout.tailLit)
		}
		var k *storedGroup
		var low byte
		if j < len(groups) {
			k = &groups[j]
			lits += 1 + uvarintLen(k.raw) + int(k.layout.mid-k.layout.lit0)
			low = k.data[0] & 15
		}
		dst = appendToken(dst, low, lits)
		dst = append(dst, pend...)
		for ; i < j; i++ {
			g := &groups[i]
			dst = appendGroupHeader(dst, int(g.raw))
			dst = append(dst, g.data[g.layout.tailLit:]...)
		}
		if k == nil {
			return dst
		}
		l := &k.layout
		dst = appendGroupHeader(dst, int(k.raw))
		dst = append(dst, k.data[l.lit0:l.tail]...) // first literals, then the middle verbatim
		pend = k.data[l.tailLit:]
		i = j + 1
	}
}

// appendToken writes a sequence token with lits literals and match-length
// nibble low, and the literal length's extension bytes.
func appendToken(dst []byte, low byte, lits int) []byte {
	if lits < 15 {
		return append(dst, byte(lits<<4)|low)
	}
	dst = append(dst, 0xf0|low)
	for r := lits - 15; ; r -= 255 {
		if r < 255 {
			return append(dst, byte(r))
		}
		dst = append(dst, 255)
	}
}
