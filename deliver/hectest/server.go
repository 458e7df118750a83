// Package hectest is a Splunk HTTP Event Collector receiver for tests and
// for the demo: it enforces HEC's protocol (token, channels, indexer
// acknowledgement, JSON event format, size limit) with Splunk's status codes
// and texts, records what it accepted, and injects faults switchable at run
// time. A fake that accepts anything hides bugs; this one answers like
// Splunk wherever Splunk's behaviour is documented, and says so in comments
// where it is a best guess.
package hectest

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Options configure a Server.
type Options struct {
	// Token is the HEC token every request must carry as
	// "Authorization: Splunk <Token>". Required.
	Token string

	// Indexes, when not empty, are the indexes the token may write to; an
	// event naming another index is refused with code 7. An event without
	// an index goes to the token's default index and is always accepted
	// (recorded with Index "").
	Indexes []string

	// AckEnabled turns on indexer acknowledgement: every event request needs
	// a channel (X-Splunk-Request-Channel header or ?channel=, a GUID), a
	// successful one is answered with an ackId, and /services/collector/ack
	// answers which ack ids are indexed. When false, the ack endpoint
	// answers code 14.
	AckEnabled bool

	// AckDelay is how long after a request its ack id becomes true. Zero
	// means at once.
	AckDelay time.Duration

	// MaxContentLength bounds a request's body in bytes, compressed as sent
	// and also decompressed; over it the answer is 413. Zero means
	// DefaultMaxContentLength (Splunk's default).
	MaxContentLength int64

	// Listen is the TCP address to listen on. Empty means DefaultListen
	// (127.0.0.1 on a free port).
	Listen string

	// TLS, when set, makes the server speak HTTPS with this configuration.
	TLS *tls.Config

	// Consume, when set, is handed the events of every request that
	// recorded some (in the request's order; concurrent requests call it
	// concurrently) instead of the server keeping them: Events then returns
	// nothing and memory stays flat however many events arrive, for
	// benchmarks of millions of events. It runs before the answer is
	// written, so a client told "Success" knows Consume saw its events.
	// Requests, Stats and acks work as usual; Event.Acked is not tracked.
	//
	// The events slice and the memory behind each Event.Event are valid
	// only during the call: the server reuses them for later requests, so
	// Consume must copy whatever it keeps (strings and Fields are not
	// reused). The same holds for the Event a Fault.RejectEvent is handed
	// while Consume is set.
	Consume func(events []Event)
}

// Fault changes how the server answers while it is set (see SetFault). The
// zero Fault is normal operation. Checks run in this order: Down,
// DropConnections, Delay, Status, TokenDisabled, then the protocol;
// WithholdAcks, LoseAcks and RejectEvent act during the protocol.
type Fault struct {
	// Down closes the listener and every open connection: clients get
	// "connection refused" until the fault is cleared, when the server
	// listens again on the same address (a maintenance window).
	Down bool

	// DropConnections makes the server close each connection on an event
	// or ack request without answering, before reading the body; nothing
	// is recorded.
	DropConnections bool

	// Delay holds every answer this long (or until the client gives up).
	Delay time.Duration

	// Status, when not zero, answers every event and ack request with this
	// HTTP status and {"text":Text,"code":Code}; Text defaults to Splunk's
	// text for Code. E.g. 503/9 "Server is busy", 500/8, or 429. Health
	// then answers 503 code 18.
	Status int
	Code   int
	Text   string

	// TokenDisabled answers 403 code 1 "Token disabled" to requests that
	// carry the right token.
	TokenDisabled bool

	// WithholdAcks keeps every ack false while set; acks become true again
	// once it is cleared (indexing stalled).
	WithholdAcks bool

	// LoseAcks makes the server forget every ack id queried while set: they
	// answer false for ever, as after an indexer restart. The events stay
	// recorded (they may or may not have been indexed; the client must
	// resend and accept duplicates).
	LoseAcks bool

	// RejectEvent, when set, is asked about every well-formed event; if it
	// answers reject, the request fails with that status, code and text
	// (text defaults to Splunk's text for code) and invalid-event-number,
	// exactly as a protocol error would.
	RejectEvent func(ev Event) (status, code int, text string, reject bool)
}

// Event is one accepted event.
type Event struct {
	// Time is the event's "time" as a number (0 when absent); RawTime is
	// the JSON text as sent, e.g. 1714567040.123456789 or "1714567040.5",
	// so that full precision can be checked.
	Time    float64
	RawTime string

	Host, Source, Sourcetype, Index string

	// Event is the "event" value exactly as sent (a JSON string or object).
	Event json.RawMessage
	// Fields are the indexed fields (string, float64 or []any values).
	Fields map[string]any

	// Channel is the request's channel, if any. Request is the request's
	// ID (see Requests). AckID is the request's ack id (-1 without acks);
	// Acked says whether a client was told it is indexed.
	Channel string
	Request int
	AckID   int64
	Acked   bool
}

// Request describes one request to an event endpoint.
type Request struct {
	ID        int
	Path      string
	Channel   string
	Gzip      bool
	WireBytes int64 // body bytes as sent
	BodyBytes int64 // after decompression
	Status    int
	Code      int
	Events    int   // events recorded from it (the prefix before an error)
	AckID     int64 // -1 if none was issued
	Acked     bool
}

// Stats summarise the traffic since New or Reset.
type Stats struct {
	Requests     int         // event requests answered
	ByStatus     map[int]int // event requests by HTTP status
	WireBytes    int64
	BodyBytes    int64
	GzipRequests int
	Events       int // events recorded
	AckQueries   int // requests to the ack endpoint answered 200
	AcksTrue     int // ack ids answered true
	Dropped      int // connections closed unanswered (Fault.DropConnections)
}

// Server is a running HEC receiver. Its methods are safe for concurrent use.
type Server struct {
	opts    Options
	indexes map[string]bool
	srv     *http.Server
	addr    string
	url     string
	fault   atomic.Pointer[Fault]

	lnMu   sync.Mutex // guards ln, conns, closed
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	serves sync.WaitGroup

	mu        sync.Mutex // guards the recordings below
	batches   [][]Event  // one slice per request: no copying as events pile up
	nevents   int
	requests  []*Request // requests[i].ID == resetBase+i
	stats     Stats
	nextID    int
	resetBase int

	acks acker

	bodyPool  sync.Pool // *[]byte: request bodies, with Consume
	eventPool sync.Pool // *[]Event, with Consume
}

// New starts a receiver listening on opts.Listen. Close stops it.
func New(opts Options) (*Server, error) {
	if opts.Token == "" {
		return nil, errors.New("hectest: Options.Token is required")
	}
	if opts.MaxContentLength < 0 || opts.AckDelay < 0 {
		return nil, errors.New("hectest: Options.MaxContentLength and AckDelay must not be negative")
	}
	if opts.MaxContentLength == 0 {
		opts.MaxContentLength = DefaultMaxContentLength
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	s := &Server{opts: opts, conns: make(map[net.Conn]struct{})}
	if len(opts.Indexes) > 0 {
		s.indexes = make(map[string]bool, len(opts.Indexes))
		for _, ix := range opts.Indexes {
			s.indexes[ix] = true
		}
	}
	s.acks.init()
	s.fault.Store(&Fault{})
	s.stats.ByStatus = make(map[int]int)
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         s.connState,
		ErrorLog:          nil,
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("hectest: listen: %w", err)
	}
	s.addr = ln.Addr().String()
	scheme := "http"
	if opts.TLS != nil {
		scheme = "https"
	}
	s.url = scheme + "://" + s.addr
	s.serve(ln)
	return s, nil
}

// NewServer starts a receiver for a test and closes it when the test ends.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// serve starts serving on ln; lnMu must be held or the server unshared.
func (s *Server) serve(ln net.Listener) {
	if s.opts.TLS != nil {
		ln = tls.NewListener(ln, s.opts.TLS)
	}
	s.ln = ln
	s.serves.Add(1)
	go func() {
		defer s.serves.Done()
		_ = s.srv.Serve(ln) // returns when ln is closed
	}()
}

func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	switch st {
	case http.StateNew:
		if s.ln == nil { // Down: refuse what slipped through
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	}
}

// URL is the server's base URL, e.g. http://127.0.0.1:41234 (no path).
func (s *Server) URL() string { return s.url }

// Close stops the server and closes every connection. It is idempotent.
func (s *Server) Close() error {
	s.lnMu.Lock()
	if s.closed {
		s.lnMu.Unlock()
		return nil
	}
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	s.lnMu.Unlock()
	err := s.srv.Close()
	s.serves.Wait()
	return err
}

// SetFault replaces the current fault; SetFault(Fault{}) restores normal
// operation. Setting Down closes the listener and open connections at once;
// clearing it listens again on the same address.
func (s *Server) SetFault(f Fault) {
	s.fault.Store(&f)
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.closed {
		return
	}
	switch {
	case f.Down && s.ln != nil:
		s.ln.Close()
		s.ln = nil
		for c := range s.conns {
			c.Close()
			delete(s.conns, c)
		}
	case !f.Down && s.ln == nil:
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			// The port was taken meanwhile: nothing sensible to do in a
			// test receiver but to say so loudly.
			panic(fmt.Sprintf("hectest: listen again on %s: %v", s.addr, err))
		}
		s.serve(ln)
	}
}

// Fault returns the current fault.
func (s *Server) Fault() Fault { return *s.fault.Load() }

// Events returns a copy of every event recorded since New or Reset, in
// arrival order, with Acked filled in; nil with Options.Consume.
func (s *Server) Events() []Event {
	if s.opts.Consume != nil {
		return nil
	}
	s.mu.Lock()
	out := make([]Event, 0, s.nevents)
	for _, b := range s.batches {
		out = append(out, b...)
	}
	base := s.baseID()
	reqs := s.requests
	s.mu.Unlock()
	for i := range out {
		if j := out[i].Request - base; j >= 0 && j < len(reqs) {
			out[i].Acked = s.acks.isAcked(reqs[j])
		}
	}
	return out
}

// EventCount returns the number of events recorded (or, with
// Options.Consume, handed to it) since New or Reset.
func (s *Server) EventCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nevents
}

// WaitForEvents polls until at least n events are recorded or timeout
// passes, and reports whether they were.
func (s *Server) WaitForEvents(n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if s.EventCount() >= n {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Requests returns a copy of the records of event requests since New or
// Reset.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	reqs := s.requests
	s.mu.Unlock()
	out := make([]Request, len(reqs))
	for i, r := range reqs {
		out[i] = s.acks.snapshot(r)
	}
	return out
}

// Stats returns counters since New or Reset.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByStatus = make(map[int]int, len(s.stats.ByStatus))
	for k, v := range s.stats.ByStatus {
		st.ByStatus[k] = v
	}
	return st
}

// Reset forgets recorded events, requests and stats. Pending ack ids stay
// valid: a client polling across a Reset still gets its answers.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches, s.nevents = nil, 0
	s.requests = nil
	s.stats = Stats{ByStatus: make(map[int]int)}
	s.resetBase = s.nextID
}

// baseID is the request ID of requests[0]; mu must be held.
func (s *Server) baseID() int { return s.resetBase }
