package deliver

import (
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

// firstSend reports whether a Send of the record seq is its first one by
// this sink (the loop sends a record again, or its remainder, after a
// failure): counts of what formatting changed are taken once per record.
// last holds seq+1 of the record seen last (0: none).
func firstSend(last *atomic.Uint64, seq uint64) bool {
	return last.Swap(seq+1) != seq+1
}

// invalidUTF8Events counts the events with invalid UTF-8 in a field's key
// or value or in their metadata: the sinks' formats replace it by U+FFFD.
func invalidUTF8Events(evs []Event) uint64 {
	var n uint64
	var meta *Meta
	metaBad := false
	for i := range evs {
		e := &evs[i]
		if e.Meta != meta {
			meta, metaBad = e.Meta, e.Meta != nil && !validMeta(e.Meta)
		}
		bad := metaBad
		for j := 0; !bad && j < len(e.Fields); j++ {
			bad = !utf8.ValidString(e.Fields[j].Key) || !utf8.ValidString(e.Fields[j].Value)
		}
		if bad {
			n++
		}
	}
	return n
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
