package deliver

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"slsrelay/ingest/slstest"
	"slsrelay/spool"
)

// encodeChunk cuts a batch into request bodies of at most MaxRequestBytes
// (an oversized event alone), in order, together the whole batch's JSON.
func TestHEC_EncodeChunkCuts(t *testing.T) {
	rec := auditRecord(t, 300)
	evs, err := Decode(rec)
	if err != nil {
		t.Fatal(err)
	}
	// Make a few events far larger than a request.
	big := strings.Repeat("x", 9000)
	for _, k := range []int{0, 7, 8, 150, 299} {
		evs[k].Fields = append(append([]Field(nil), evs[k].Fields...), Field{"blob", big})
	}
	for _, max := range []int{1, 2000, 5000, 64 << 10, 1 << 20} {
		h, err := NewHEC(HECOptions{URL: "http://127.0.0.1:1", Token: "t", MaxRequestBytes: max})
		if err != nil {
			t.Fatal(err)
		}
		var whole []byte
		var mc metaCache
		for k := range evs {
			whole = h.format.appendEvent(whole, &evs[k], &mc)
		}
		var got []byte
		mc = metaCache{}
		requests := 0
		for i := 0; i < len(evs); {
			c := h.encodeChunk(evs, i, &mc)
			if c.first != i || c.end() <= i {
				t.Fatalf("max %d: chunk [%d,%d) at %d", max, c.first, c.end(), i)
			}
			if len(c.buf) > max && c.end()-c.first > 1 {
				t.Errorf("max %d: request of %d events is %d bytes", max, c.end()-c.first, len(c.buf))
			}
			if !bytes.Equal(c.body(c.first, c.end()), c.buf) {
				t.Errorf("max %d: body of the whole chunk is not its buffer", max)
			}
			// Greedy: the next event would not have fitted.
			if c.end() < len(evs) {
				var m2 metaCache
				one := h.format.appendEvent(nil, &evs[c.end()], &m2)
				if len(c.buf)+len(one) <= max {
					t.Errorf("max %d: chunk [%d,%d) of %d bytes cut before an event of %d that fits", max, c.first, c.end(), len(c.buf), len(one))
				}
			}
			got = append(got, c.buf...)
			i = c.end()
			h.putChunk(c)
			requests++
		}
		if !bytes.Equal(got, whole) {
			t.Errorf("max %d: the requests together differ from the batch's JSON", max)
		}
		if max == 1 && requests != len(evs) {
			t.Errorf("max 1: %d requests for %d events", requests, len(evs))
		}
	}
}

// Decode's events point into the record's payload: no copy of it.
func TestDecode_AliasesPayload(t *testing.T) {
	rec := auditRecord(t, 3)
	evs, err := Decode(rec)
	if err != nil {
		t.Fatal(err)
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(rec.Payload)))
	for _, e := range evs {
		for _, f := range e.Fields {
			for _, s := range []string{f.Key, f.Value} {
				if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); len(s) > 0 && (p < base || p+uintptr(len(s)) > base+uintptr(len(rec.Payload))) {
					t.Fatalf("field %q is not in the payload", s)
				}
			}
		}
	}
}

// decodeInto with reused buffers yields exactly what a fresh Decode does,
// for records larger and smaller than the one before, and a failed decode
// leaves the buffers usable.
func TestDecodeInto_ReusesBuffers(t *testing.T) {
	var buf decodeBuffers
	for _, n := range []int{2000, 10, 5000, 1, 300} {
		rec := auditRecord(t, n)
		want, err := Decode(rec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeInto(rec, &buf)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%d events: reused buffers decode differently", n)
		}
		if n == 5000 {
			bad := *rec
			bad.Payload = rec.Payload[:len(rec.Payload)/2]
			if _, err := decodeInto(&bad, &buf); err == nil {
				t.Fatal("truncated record decoded")
			}
		}
	}
	if buf.used > len(buf.blocks) || len(buf.blocks) == 0 {
		t.Errorf("blocks %d, used %d", len(buf.blocks), buf.used)
	}
}

// decodeSequential is the one-pass decode into fresh memory (Decode before
// records were split and buffers reused), for comparison.
func decodeSequential(r *spool.Record) ([]Event, error) {
	d := decoder{s: string(r.Payload), rec: r, evs: make([]Event, 0, max(0, min(r.Count, len(r.Payload)/4)))}
	if err := d.list(0, len(d.s)); err != nil {
		return nil, fmt.Errorf("decode record %d: %w", r.Seq, err)
	}
	return d.evs, nil
}

// A large record decoded in two halves at once gives exactly the one-pass
// events and the one-pass error, on truncations and byte flips, with
// fresh and with reused buffers.
func TestDecode_HalvesMatchOnePass(t *testing.T) {
	g := slstest.NewGenerator(slstest.KindAudit, 7)
	p, err := g.Pull(12, 40)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) < minSplitBytes {
		t.Fatalf("record of %d bytes is too small to be split", len(p))
	}
	if d := (decoder{s: string(p)}); !func() bool { _, ok := d.splitPoint(); return ok }() {
		t.Fatal("the record would not be split")
	}
	var buf decodeBuffers
	rnd := rand.New(rand.NewPCG(5, 6))
	for trial := range 300 {
		q := bytes.Clone(p)
		switch trial % 3 {
		case 1:
			q = q[:minSplitBytes+rnd.IntN(len(q)-minSplitBytes)]
		case 2:
			for range 1 + rnd.IntN(3) {
				q[rnd.IntN(len(q))] = byte(rnd.IntN(256))
			}
		}
		rec := &spool.Record{Seq: 9, Project: "p", Logstore: "l", Count: 480, Payload: q}
		want, werr := decodeSequential(rec)
		for _, b := range []*decodeBuffers{nil, &buf} {
			got, gerr := decodeInto(rec, b)
			if fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Fatalf("trial %d: error %v, one pass %v", trial, gerr, werr)
			}
			if werr == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("trial %d: %d events, one pass %d", trial, len(got), len(want))
			}
		}
	}
}

// Whatever sequence of records, batches and failed decodes the buffers
// see, nothing beyond the events in use still points into a payload: the
// release after each decode clears what the one before left behind.
func TestDecodeBuffers_ReleaseLeavesNoStaleReferences(t *testing.T) {
	var buf decodeBuffers
	stale := func(step string) {
		t.Helper()
		tail := buf.evs[len(buf.evs):cap(buf.evs)]
		for i := range tail {
			if !reflect.ValueOf(tail[i]).IsZero() {
				t.Fatalf("%s: event %d beyond the %d in use still set", step, len(buf.evs)+i, len(buf.evs))
			}
		}
		for i, blk := range buf.blocks[buf.used:] {
			for j, f := range blk[:cap(blk)] {
				if f != (Field{}) {
					t.Fatalf("%s: block %d beyond the %d in use holds field %d", step, buf.used+i, buf.used, j)
				}
			}
		}
	}
	big, small := auditRecord(t, 3000), auditRecord(t, 40)
	bad := *big
	bad.Payload = big.Payload[:len(big.Payload)*3/4]
	steps := []struct {
		name   string
		rec    *spool.Record
		append bool
		fails  bool
	}{
		{"large", big, false, false},
		{"small after large", small, false, false},
		{"batch: small", small, false, false},
		{"batch: second small", small, true, false},
		{"batch: third small", small, true, false},
		{"large again", big, false, false},
		{"failed after decoding most", &bad, false, true},
		{"small after failure", small, false, false},
		{"failed append", &bad, true, true},
		{"small", small, false, false},
	}
	for _, s := range steps {
		var err error
		if s.append {
			_, err = decodeAppend(s.rec, &buf)
		} else {
			_, err = decodeInto(s.rec, &buf)
		}
		if (err != nil) != s.fails {
			t.Fatalf("%s: err %v", s.name, err)
		}
		stale(s.name)
		if buf.second != nil {
			for i, e := range buf.second.evs[:cap(buf.second.evs)] {
				if !reflect.ValueOf(e).IsZero() {
					t.Fatalf("%s: second half's event %d still set after it was copied", s.name, i)
				}
			}
		}
	}
}
