package deliver

import (
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Counters are what a sink changed or refused to take at face value,
// beyond delivering: each is a count since the sink was built, exported as
// a metric. A sink reports them through CounterReporter.
type Counters struct {
	// Truncated counts events cut to fit the transport (syslog: 2 KiB over
	// UDP, max_message_bytes otherwise), each marked in the message.
	Truncated uint64
	// OversizeDeadLettered counts oversize events sent whole to the
	// dead-letter queue instead (oversize: dead_letter).
	OversizeDeadLettered uint64
	// InvalidUTF8 counts events in which invalid UTF-8 was replaced by
	// U+FFFD.
	InvalidUTF8 uint64
	// UnlistedStatus counts answers with a 4xx status HEC does not list as
	// a rejection of the data (407, 411, 414, 415…): each paused the sink.
	UnlistedStatus uint64
}

// CounterReporter is implemented by sinks that keep Counters.
type CounterReporter interface {
	Counters() Counters
}

// counters is the atomic form a sink keeps.
type counters struct {
	truncated, oversizeDead, invalidUTF8, unlisted atomic.Uint64
}

func (c *counters) snapshot() Counters {
	return Counters{
		Truncated:            c.truncated.Load(),
		OversizeDeadLettered: c.oversizeDead.Load(),
		InvalidUTF8:          c.invalidUTF8.Load(),
		UnlistedStatus:       c.unlisted.Load(),
	}
}

// formatted tracks which events of the record being sent a sink has
// formatted already, so that what formatting changed is counted once per
// event: the loop sends a record again after a failure, or only the events
// after a rejected one (a suffix of the record), and a send may stop
// before formatting all of its events.
type formatted struct {
	mu    sync.Mutex
	seq   uint64
	total int // events of the record (its first send)
	done  int // leading events of the record formatted so far
	valid bool
}

// begin starts a send of n events of record seq (a suffix of it) and
// returns the index in the batch from which events were never formatted.
func (f *formatted) begin(seq uint64, n int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.valid || seq != f.seq || n > f.total {
		f.seq, f.total, f.done, f.valid = seq, n, 0, true
	}
	return max(0, f.done-(f.total-n))
}

// upTo records that events [0,hi) of a batch of n events of record seq
// have been formatted.
func (f *formatted) upTo(seq uint64, n, hi int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.valid && seq == f.seq {
		f.done = max(f.done, f.total-n+hi)
	}
}

// replacements counts, across all sinks, the invalid UTF-8 sequences the
// formats replaced by U+FFFD (the formatting functions are shared and
// stateless). It costs nothing on the common path: only the rare
// replacement branch writes it. A sink reads it before and after
// formatting; when it moved, it checks the events it formatted (another
// sink may have moved it, so the events decide).
var replacements atomic.Uint64

// countInvalidUTF8 adds to c the events of evs with invalid UTF-8, which
// the format replaced by U+FFFD, when replacements moved from before.
func countInvalidUTF8(c *counters, before uint64, evs []Event) {
	if replacements.Load() == before {
		return
	}
	for k := range evs {
		if !validEvent(&evs[k]) {
			c.invalidUTF8.Add(1)
		}
	}
}

// validEvent reports whether every string of e (field keys and values,
// metadata) is valid UTF-8.
func validEvent(e *Event) bool {
	for _, f := range e.Fields {
		if !utf8.ValidString(f.Key) || !utf8.ValidString(f.Value) {
			return false
		}
	}
	return e.Meta == nil || validMeta(e.Meta)
}

func validMeta(m *Meta) bool {
	for _, s := range []string{m.Project, m.Logstore, m.Topic, m.Source} {
		if !utf8.ValidString(s) {
			return false
		}
	}
	for _, t := range m.Tags {
		if !utf8.ValidString(t.Key) || !utf8.ValidString(t.Value) {
			return false
		}
	}
	return true
}
