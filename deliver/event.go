package deliver

import (
	"fmt"
	"strings"
	"time"
	"unsafe"

	"slsrelay/internal/loggroup"
	"slsrelay/spool"
)

// ErrMalformedPayload is wrapped by Decode when a record's payload is not a
// valid serialized sls.LogGroupList (it is loggroup.ErrMalformed).
var ErrMalformedPayload = loggroup.ErrMalformed

// Field is one key/value pair of an SLS log or log group tag.
type Field struct {
	Key   string
	Value string
}

// Meta is what the events of one SLS log group share. Read-only once built.
type Meta struct {
	Project  string
	Logstore string
	Shard    int
	// Topic is the log group's topic (__topic__), often empty.
	Topic string
	// Source is the sending host or IP (__source__).
	Source string
	// Tags are the log group's LogTags with their keys as carried on the wire,
	// e.g. "__hostname__" (SLS shows it as "__tag__:__hostname__").
	Tags []Field

	category    string
	machineUUID string
}

// Tag returns the value of the tag key, given either as carried
// ("__hostname__") or as SLS displays it ("__tag__:__hostname__").
func (m *Meta) Tag(key string) (string, bool) {
	key = strings.TrimPrefix(key, "__tag__:")
	for _, t := range m.Tags {
		if strings.TrimPrefix(t.Key, "__tag__:") == key {
			return t.Value, true
		}
	}
	return "", false
}

// Event is one SLS log: its time, its contents in order, and the metadata
// of its log group.
type Event struct {
	// Time is __time__ plus the log's nanosecond part (TimeNs) when present.
	Time time.Time
	// Fields are the log's contents in wire order; keys may repeat.
	Fields []Field
	// Meta is shared by all events of a log group; never nil after Decode.
	Meta *Meta
}

// Field returns the value of the first field named key.
func (e *Event) Field(key string) (string, bool) {
	for _, f := range e.Fields {
		if f.Key == key {
			return f.Value, true
		}
	}
	return "", false
}

// Decode turns a spool record into its events, in order. Every string of
// the events points into r.Payload, which must therefore not be modified
// while they are in use (the spool hands out a fresh payload per record);
// memory is the payload plus the events' headers. It never panics on
// malformed input; it returns an error wrapping ErrMalformedPayload instead.
func Decode(r *spool.Record) ([]Event, error) {
	return decodeInto(r, nil)
}

// decodeBuffers is the memory of one Decode's events, reused by the next
// (a Loop's, once the record before is acknowledged): a 10 MiB pull
// decodes into ~7 MB of events and field blocks, which the collector
// otherwise had to allocate, clear and scan for every record.
type decodeBuffers struct {
	evs    []Event
	blocks [][]Field // in the order the last Decode used them
	used   int
	second *decodeBuffers // for the second half of a record decoded in two
	// What may still point into earlier payloads: evs[len(evs):dirtyEvs]
	// of the array whose capacity is dirtyCap, and blocks[used:dirtyBlocks].
	// release clears only these, not the whole capacity, so that a batch
	// of small records after a large one does not clear megabytes each.
	dirtyEvs, dirtyCap, dirtyBlocks int
}

// decodeInto is Decode reusing buf (nil: fresh memory). The events of the
// previous decodeInto with buf must no longer be in use.
func decodeInto(r *spool.Record, buf *decodeBuffers) ([]Event, error) {
	return decodeMore(r, buf, false)
}

// decodeAppend is decodeInto keeping the events decoded into buf since the
// last decodeInto (a batch of records): it returns them with r's events
// appended, and leaves their field blocks alone. On error buf's events are
// as before.
func decodeAppend(r *spool.Record, buf *decodeBuffers) ([]Event, error) {
	return decodeMore(r, buf, true)
}

func decodeMore(r *spool.Record, buf *decodeBuffers, keep bool) ([]Event, error) {
	n := max(0, min(r.Count, len(r.Payload)/4))
	var evs []Event
	switch {
	case buf != nil && keep:
		evs = buf.evs
	case buf != nil && cap(buf.evs) >= n:
		evs = buf.evs[:0]
	default:
		evs = make([]Event, 0, n)
	}
	before := len(evs)
	if buf != nil && !keep {
		buf.used = 0
	}
	d := decoder{s: unsafe.String(unsafe.SliceData(r.Payload), len(r.Payload)), rec: r, evs: evs, buf: buf, keep: keep}
	var err error
	if mid, ok := d.splitPoint(); ok {
		err = d.listHalves(mid)
	} else {
		err = d.list(0, len(d.s))
	}
	reached := len(d.evs)
	if err != nil {
		d.evs = d.evs[:before]
	}
	if buf != nil {
		buf.evs = d.evs
		buf.release(reached)
	}
	if err != nil {
		return nil, fmt.Errorf("decode record %d: %w", r.Seq, err)
	}
	return d.evs, nil
}

// minSplitBytes: a record at least this large is decoded in two halves at
// once (the delivery loop waits for Decode between records).
const minSplitBytes = 256 << 10

// splitPoint returns the offset of the first log group starting in the
// second half of the record, if the record is large, holds two groups or
// more, and its top level is well formed (else the one-pass decode reports
// the first error exactly).
func (d *decoder) splitPoint() (int, bool) {
	if len(d.s) < minSplitBytes {
		return 0, false
	}
	mid := -1
	for i, end := 0, len(d.s); i < end; {
		num, wt, _, _, _, n, err := d.next(i, end)
		if err != nil || num == 1 && wt != 2 {
			return 0, false
		}
		if num == 1 && mid < 0 && i >= end/2 {
			mid = i
		}
		i = n
	}
	return mid, mid > 0
}

// listHalves decodes the groups before mid here and those from mid on in a
// second goroutine, into memory of its own, then appends them: the events
// and the error are the one-pass decode's (the first half's error first).
func (d *decoder) listHalves(mid int) error {
	var sb *decodeBuffers
	var evs2 []Event
	if d.buf != nil {
		if d.buf.second == nil {
			d.buf.second = &decodeBuffers{}
		}
		sb = d.buf.second
		if !d.keep { // else earlier records' events use its blocks
			sb.used = 0
		}
		evs2 = sb.evs[:0]
	}
	d2 := decoder{s: d.s, rec: d.rec, evs: evs2, buf: sb}
	done := make(chan error, 1)
	go func() { done <- d2.list(mid, len(d.s)) }()
	err1 := d.list(0, mid)
	err2 := <-done
	if sb != nil {
		// d2.evs are copied into d.evs below: clear them all.
		defer func() { sb.evs = d2.evs[:0]; sb.release(len(d2.evs)) }()
	}
	if err1 != nil {
		return err1
	}
	if err2 != nil {
		return err2
	}
	d.evs = append(d.evs, d2.evs...)
	return nil
}

// release drops what b's slices point to beyond the events just decoded
// (the tail of a longer previous record, or what a failed decode wrote up
// to reached), so that they do not keep its payload alive.
func (b *decodeBuffers) release(reached int) {
	n := len(b.evs)
	if cap(b.evs) != b.dirtyCap { // a new array: zero beyond what was written
		b.dirtyEvs, b.dirtyCap = 0, cap(b.evs)
	}
	clear(b.evs[n:max(n, min(max(reached, b.dirtyEvs), cap(b.evs)))])
	b.dirtyEvs = n
	for _, blk := range b.blocks[b.used:max(b.used, min(b.dirtyBlocks, len(b.blocks)))] {
		clear(blk[:cap(blk)])
	}
	b.dirtyBlocks = b.used
}

// block returns an empty field block of at least n fields.
func (b *decodeBuffers) block(n int) []Field {
	if b == nil {
		return make([]Field, 0, n)
	}
	if b.used < len(b.blocks) && cap(b.blocks[b.used]) >= n {
		blk := b.blocks[b.used][:0]
		b.used++
		return blk
	}
	blk := make([]Field, 0, n)
	if b.used < len(b.blocks) {
		b.blocks[b.used] = blk
	} else {
		b.blocks = append(b.blocks, blk)
	}
	b.used++
	return blk
}

// decoder walks the protobuf encoding of sls.LogGroupList by hand (see
// log.proto in aliyun-log-go-sdk); strings are substrings of s, not copies.
type decoder struct {
	s   string
	rec *spool.Record
	evs []Event
	// fields is the block the current log's fields are appended to; a log
	// whose fields outgrow it moves them to a new block, so the events'
	// Fields are sub-slices of blocks that never move once full.
	fields []Field
	buf    *decodeBuffers // nil: fresh blocks
	keep   bool           // buf holds a batch's earlier events (decodeAppend)
}

// fieldBlock is how many fields a block holds (96 KiB): small beside a
// record, large beside a log.
const fieldBlock = 3072

type wireErr = loggroup.Error

const (
	errTruncated = loggroup.ErrTruncated
	errVarint    = loggroup.ErrVarint
	errWireType  = loggroup.ErrWireType
)

// next reads one field header at s[i:] (see loggroup.Next).
func (d *decoder) next(i, end int) (num, wt int, a, b int, v uint64, n int, err error) {
	return loggroup.Next(d.s, i, end)
}

func (d *decoder) varint(i, end int) (uint64, int, error) {
	return loggroup.Varint(d.s, i, end)
}

func (d *decoder) list(start, end int) error {
	for i := start; i < end; {
		num, wt, a, b, _, n, err := d.next(i, end)
		if err != nil {
			return err
		}
		if num == 1 {
			if wt != 2 {
				return errWireType
			}
			if err := d.group(a, b); err != nil {
				return fmt.Errorf("log group: %w", err)
			}
		}
		i = n
	}
	return nil
}

func (d *decoder) group(start, end int) error {
	m := &Meta{Project: d.rec.Project, Logstore: d.rec.Logstore, Shard: d.rec.Shard}
	first := len(d.evs)
	for i := start; i < end; {
		num, wt, a, b, _, n, err := d.next(i, end)
		if err != nil {
			return err
		}
		if num <= 6 && wt != 2 {
			return errWireType
		}
		switch num {
		case 1:
			if err := d.log(a, b); err != nil {
				return fmt.Errorf("log %d: %w", len(d.evs)-first, err)
			}
		case 2:
			m.category = d.s[a:b]
		case 3:
			m.Topic = d.s[a:b]
		case 4:
			m.Source = d.s[a:b]
		case 5:
			m.machineUUID = d.s[a:b]
		case 6:
			k, v, err := d.pair(a, b)
			if err != nil {
				return fmt.Errorf("tag: %w", err)
			}
			m.Tags = append(m.Tags, Field{k, v})
		}
		i = n
	}
	for k := first; k < len(d.evs); k++ {
		d.evs[k].Meta = m
	}
	return nil
}

func (d *decoder) log(start, end int) error {
	var (
		sec, ns uint64
		hasTime bool
	)
	first := len(d.fields)
	for i := start; i < end; {
		num, wt, a, b, v, n, err := d.next(i, end)
		if err != nil {
			return err
		}
		switch num {
		case 1:
			if wt != 0 {
				return errWireType
			}
			sec, hasTime = uint64(uint32(v)), true
		case 2:
			if wt != 2 {
				return errWireType
			}
			k, val, err := d.pair(a, b)
			if err != nil {
				return fmt.Errorf("content: %w", err)
			}
			if len(d.fields) == cap(d.fields) {
				// A new block, with this log's fields so far moved into it.
				nb := d.buf.block(max(fieldBlock, 2*(len(d.fields)-first)))
				nb = append(nb, d.fields[first:]...)
				d.fields, first = nb, 0
			}
			d.fields = append(d.fields, Field{k, val})
		case 4:
			if wt != 5 {
				return errWireType
			}
			ns = v
		}
		i = n
	}
	if !hasTime {
		return wireErr("missing __time__")
	}
	fs := d.fields[first:len(d.fields):len(d.fields)]
	d.evs = append(d.evs, Event{Time: time.Unix(int64(sec), int64(ns)), Fields: fs})
	return nil
}

// pair decodes a LogContent or LogTag: both Key (1) and Value (2) required.
func (d *decoder) pair(start, end int) (k, v string, err error) {
	// The encoding every SLS writer uses: key (field 1) then value (field
	// 2), nothing else, the key shorter than 128 bytes.
	if i := start; end-i >= 4 && d.s[i] == 0x0a && d.s[i+1] < 0x80 {
		kEnd := i + 2 + int(d.s[i+1])
		if kEnd < end && d.s[kEnd] == 0x12 {
			if vl, vs, err := d.varint(kEnd+1, end); err == nil && vl == uint64(end-vs) {
				return d.s[i+2 : kEnd], d.s[vs:end], nil
			}
		}
	}
	var hasK, hasV bool
	for i := start; i < end; {
		num, wt, a, b, _, n, err := d.next(i, end)
		if err != nil {
			return "", "", err
		}
		if (num == 1 || num == 2) && wt != 2 {
			return "", "", errWireType
		}
		switch num {
		case 1:
			k, hasK = d.s[a:b], true
		case 2:
			v, hasV = d.s[a:b], true
		}
		i = n
	}
	if !hasK || !hasV {
		return "", "", wireErr("missing key or value")
	}
	return k, v, nil
}

// deadLetterRecord builds a record like r (same source, cursors and Seq)
// holding only the given events, each in a log group of its own metadata.
func deadLetterRecord(r *spool.Record, evs []Event) (*spool.Record, error) {
	var p []byte
	var lastMeta *Meta
	var logs []loggroup.Log
	flush := func() {
		if lastMeta != nil || len(logs) > 0 {
			p = loggroup.AppendGroup(p, groupOf(lastMeta), logs)
		}
		logs = logs[:0]
	}
	out := *r
	out.Count = len(evs)
	out.MinTime, out.MaxTime = 0, 0
	for i := range evs {
		e := &evs[i]
		if i == 0 || e.Meta != lastMeta {
			if i > 0 {
				flush()
			}
			lastMeta = e.Meta
		}
		logs = append(logs, logOf(e))
		t := e.Time.Unix()
		if i == 0 || t < out.MinTime {
			out.MinTime = t
		}
		if i == 0 || t > out.MaxTime {
			out.MaxTime = t
		}
	}
	if len(evs) > 0 {
		flush()
	}
	out.Payload = p
	return &out, nil
}

func groupOf(m *Meta) *loggroup.Group {
	g := &loggroup.Group{}
	if m == nil {
		return g
	}
	g.Topic, g.Source, g.Category, g.MachineUUID = m.Topic, m.Source, m.category, m.machineUUID
	for _, t := range m.Tags {
		g.Tags = append(g.Tags, loggroup.KV{Key: t.Key, Value: t.Value})
	}
	return g
}

func logOf(e *Event) loggroup.Log {
	l := loggroup.Log{Time: uint32(e.Time.Unix()), TimeNs: uint32(e.Time.Nanosecond())}
	for _, f := range e.Fields {
		l.Contents = append(l.Contents, loggroup.KV{Key: f.Key, Value: f.Value})
	}
	return l
}

// FilterRecord returns a record like r (same source and cursors) holding
// only the events keep accepts, in order, and how many it kept; r itself
// when keep accepts all of them. It is how replay's --log-time keeps only
// logs whose own time is inside the range. A record that does not decode
// is returned as it is (the delivery loop dead-letters it with the reason).
func FilterRecord(r *spool.Record, keep func(*Event) bool) (*spool.Record, int, error) {
	evs, err := Decode(r)
	if err != nil {
		return r, r.Count, nil
	}
	kept := evs[:0]
	for i := range evs {
		if keep(&evs[i]) {
			kept = append(kept, evs[i])
		}
	}
	if len(kept) == len(evs) {
		return r, len(evs), nil
	}
	if len(kept) == 0 {
		out := *r
		out.Count, out.MinTime, out.MaxTime, out.Payload = 0, 0, 0, nil
		return &out, 0, nil
	}
	out, err := deadLetterRecord(r, kept)
	if err != nil {
		return nil, 0, err
	}
	return out, len(kept), nil
}
