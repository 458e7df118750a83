package deliver

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
)

// ErrorKind says what the delivery loop should do with a failed send.
type ErrorKind int

const (
	// Transient failures (5xx, 429, timeouts, resets, refused connections)
	// are retried with backoff for ever; the data stays in the spool.
	Transient ErrorKind = iota + 1
	// Permanent failures mean the SIEM will never accept the data as sent
	// (a malformed event, an event over the size limit). The loop sends the
	// offending event (or batch) to the dead-letter queue.
	Permanent
	// Config failures need an operator (bad token, unknown index, TLS trust):
	// the loop keeps the data, pauses the sink and retries with capped backoff
	// until the SIEM accepts again.
	Config
)

func (k ErrorKind) String() string {
	switch k {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	case Config:
		return "config"
	}
	return "unknown(" + strconv.Itoa(int(k)) + ")"
}

// Error is the typed error a Sink returns from Send; read it with errors.As.
type Error struct {
	Kind ErrorKind
	// Status is the HTTP status, 0 when there was no response.
	Status int
	// Code is the SIEM's own error code (Splunk HEC "code"), 0 if none.
	Code int
	// EventIndex is the index in Batch.Events of the event the SIEM rejected,
	// -1 when the error is not about one event. For a Permanent error with
	// EventIndex ≥ 0 every event before it has been confirmed.
	EventIndex int
	// Text is the SIEM's message (truncated), never a secret.
	Text string
	// Err is the underlying cause, if any.
	Err error
}

func (e *Error) Error() string {
	s := e.Kind.String()
	if e.Status != 0 {
		s += " status " + strconv.Itoa(e.Status)
	}
	if e.Code != 0 {
		s += " code " + strconv.Itoa(e.Code)
	}
	if e.Text != "" {
		s += ": " + e.Text
	}
	if e.EventIndex >= 0 {
		s += " (event " + strconv.Itoa(e.EventIndex) + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of err: the Kind of an *Error in its chain, else
// Transient (an unknown failure is never a reason to drop data).
func KindOf(err error) ErrorKind {
	var de *Error
	if errors.As(err, &de) {
		return de.Kind
	}
	return Transient
}

// Secret is a string that never prints: fmt, slog and encoding/json show a
// fixed mask. Convert explicitly (string(s)) where the value is needed.
type Secret string

const secretMask = "****"

func (s Secret) String() string   { return secretMask }
func (s Secret) GoString() string { return `"` + secretMask + `"` }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(secretMask) }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + secretMask + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(secretMask), nil }

// Format masks the value for every fmt verb.
func (s Secret) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q':
		fmt.Fprint(f, strconv.Quote(secretMask))
	default:
		fmt.Fprint(f, secretMask)
	}
}
