package deliver

import "sync/atomic"

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
