package spool

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// The lz4 buffer is sized from the last ratio; a record compressing worse
// than guessed is compressed again into the worst-case bound, not stored
// uncompressed; s2 records of one or several blocks (payloads up to 1 MiB
// and beyond) compress; every record reads back.
func TestEncodeRecord_GuessFallsBack(t *testing.T) {
	for _, codec := range []byte{codecLZ4, codecS2} {
		testGuessFallsBack(t, codec)
	}
}

func testGuessFallsBack(t *testing.T, codec byte) {
	rnd := rand.New(rand.NewPCG(3, 4))
	text := func(n int, alphabet string) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		return b
	}
	words := func(n int) []byte {
		var b []byte
		for len(b) < n {
			b = append(b, text(6+rnd.IntN(6), "abcdefghijklmnopqrstuvwxyz")...)
			b = append(b, ' ')
			if rnd.IntN(3) == 0 && len(b) > 64 { // repeat an earlier stretch
				k := rnd.IntN(len(b) - 32)
				b = append(b, b[k:k+16+rnd.IntN(16)]...)
			}
		}
		return b[:n]
	}
	payloads := [][]byte{
		bytes.Repeat([]byte("audit log line 0123456789 "), 40000), // ~50x: the guess shrinks
		words(1 << 20), // compresses a few times: over the guess
		text(1<<20, "ab"),
		text(64<<10, string(rune(0))+"\xff\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"),
	}
	rnd2 := make([]byte, 1<<20)
	for i := range rnd2 {
		rnd2[i] = byte(rnd.Uint32())
	}
	payloads = append(payloads, rnd2, payloads[0], payloads[1])
	for i, p := range payloads {
		f, err := encodeRecord(&Record{Project: "p", Count: 1, Payload: p}, codec)
		if err != nil {
			t.Fatal(err)
		}
		stored := len(f.buf) - f.hdrLen
		t.Logf("payload %d: codec %d, %d of %d bytes", i, f.buf[5], stored, len(p))
		if i == 1 && (f.buf[5] != codec || stored >= len(p)) {
			t.Errorf("payload %d: codec %d, %d of %d bytes: compressible data not compressed after a bad guess", i, f.buf[5], stored, len(p))
		}
		if i == 4 && f.buf[5] != codecNone {
			t.Errorf("random payload stored with codec %d", f.buf[5])
		}
		r, err := decodeRecord(f.seal(uint64(i + 1)))
		if err != nil || !bytes.Equal(r.Payload, p) {
			t.Fatalf("payload %d does not read back: %v", i, err)
		}
	}
}
