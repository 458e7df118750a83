package hectest

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ServeHTTP answers HEC requests; Server is thus also an http.Handler that
// can be mounted elsewhere (faults that act on the listener then do not
// apply).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case PathEvent, PathEvent10, PathCollector:
		s.handleEvents(w, r)
	case PathAck:
		s.handleAck(w, r)
	case PathHealth, PathHealth10:
		s.handleHealth(w)
	default:
		// Includes /services/collector/raw, which this receiver does not
		// implement.
		writeJSON(w, http.StatusNotFound, `{"text":"The requested URL was not found on this server.","code":404}`)
	}
}

// answer is a HEC reply: HTTP status, Splunk code and text, and where
// relevant the failing event's index or the ack id.
type answer struct {
	status, code int
	text         string
	invalidEvent int   // -1: none
	ackID        int64 // -1: none
}

func codeAnswer(code int) answer {
	return answer{status: Statuses[code], code: code, text: Texts[code], invalidEvent: -1, ackID: -1}
}

func eventAnswer(code, event int) answer {
	a := codeAnswer(code)
	a.invalidEvent = event
	return a
}

func (a answer) write(w http.ResponseWriter) {
	b := make([]byte, 0, 96)
	b = append(b, `{"text":`...)
	b = strconv.AppendQuote(b, a.text)
	b = append(b, `,"code":`...)
	b = strconv.AppendInt(b, int64(a.code), 10)
	if a.invalidEvent >= 0 {
		b = append(b, `,"invalid-event-number":`...)
		b = strconv.AppendInt(b, int64(a.invalidEvent), 10)
	}
	if a.ackID >= 0 {
		b = append(b, `,"ackId":`...)
		b = strconv.AppendInt(b, a.ackID, 10)
	}
	b = append(b, '}')
	writeJSON(w, a.status, string(b))
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", ContentTypeHEC)
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// precheck applies the faults and checks method, token and channel common
// to the event and ack endpoints. It returns ok=false when it has answered
// (or dropped the connection).
func (s *Server) precheck(w http.ResponseWriter, r *http.Request, f *Fault) (channel string, a answer, ok bool) {
	if f.DropConnections {
		if hj, isHJ := w.(http.Hijacker); isHJ {
			if c, _, err := hj.Hijack(); err == nil {
				s.mu.Lock()
				s.stats.Dropped++ // before Close: a client seeing EOF then sees the count
				s.mu.Unlock()
				c.Close()
				return "", answer{}, false
			}
		}
		panic(http.ErrAbortHandler) // HTTP/2 or no hijacker: abort the stream
	}
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return "", answer{}, false
		}
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, `{"text":"Method not allowed","code":405}`)
		return "", answer{}, false
	}
	if f.Status != 0 {
		a := answer{status: f.Status, code: f.Code, text: f.Text, invalidEvent: -1, ackID: -1}
		if a.text == "" {
			a.text = Texts[f.Code]
		}
		return "", a, true
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		if r.URL.Query().Has("token") {
			return "", codeAnswer(CodeQueryStringAuthDisabled), true
		}
		return "", codeAnswer(CodeTokenRequired), true
	}
	// Splunk also accepts HTTP Basic with the token as password; the relay
	// does not use it, so it is refused here as an unknown scheme.
	scheme, token, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Splunk") {
		return "", codeAnswer(CodeInvalidAuthorization), true
	}
	if strings.TrimSpace(token) != s.opts.Token {
		return "", codeAnswer(CodeInvalidToken), true
	}
	if f.TokenDisabled {
		return "", codeAnswer(CodeTokenDisabled), true
	}
	channel = r.Header.Get(ChannelHeader)
	if channel == "" {
		channel = r.URL.Query().Get("channel")
	}
	if s.opts.AckEnabled {
		if channel == "" {
			return "", codeAnswer(CodeChannelMissing), true
		}
		if !isGUID(channel) {
			return channel, codeAnswer(CodeInvalidChannel), true
		}
	}
	return channel, answer{}, true
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	f := s.fault.Load()
	channel, a, ok := s.precheck(w, r, f)
	if !ok {
		return
	}
	req := &Request{Path: r.URL.Path, Channel: channel, AckID: -1}
	var events []Event
	if a.status == 0 {
		events, a = s.readEvents(w, r, req, f)
	}
	s.record(req, events, &a)
	if s.opts.Consume != nil && len(events) > 0 {
		s.opts.Consume(events)
	}
	if a.status == http.StatusRequestEntityTooLarge {
		// What Splunk's HTTP layer sends is not HEC JSON (from memory, not
		// verified): clients must classify on the HTTP status.
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.WriteHeader(a.status)
		io.WriteString(w, a.text)
		return
	}
	a.write(w)
}

// record stores a request's events and outcome, under one lock per request;
// for a success with acks enabled it issues the ack id into a.
func (s *Server) record(req *Request, events []Event, a *answer) {
	req.Status, req.Code, req.Events = a.status, a.code, len(events)
	s.mu.Lock()
	defer s.mu.Unlock()
	req.ID = s.nextID
	s.nextID++
	if a.status == http.StatusOK && s.opts.AckEnabled {
		a.ackID = s.acks.issue(req.Channel, req, s.opts.AckDelay)
	}
	for i := range events {
		events[i].Request = req.ID
		events[i].Channel = req.Channel
		events[i].AckID = a.ackID
	}
	if len(events) > 0 && s.opts.Consume == nil {
		s.batches = append(s.batches, events)
	}
	s.nevents += len(events)
	s.requests = append(s.requests, req)
	st := &s.stats
	st.Requests++
	st.ByStatus[a.status]++
	st.WireBytes += req.WireBytes
	st.BodyBytes += req.BodyBytes
	st.Events += len(events)
	if req.Gzip {
		st.GzipRequests++
	}
}

// readEvents decodes the body, a stream of concatenated JSON event objects.
// On the first bad event it stops and answers with its index; the events
// before it are returned and recorded, as Splunk indexes the events of a
// request that precede the failing one (which is why a client resending the
// whole batch creates duplicates).
func (s *Server) readEvents(w http.ResponseWriter, r *http.Request, req *Request, f *Fault) ([]Event, answer) {
	max := s.opts.MaxContentLength
	if r.ContentLength > max {
		return nil, tooLarge(r.ContentLength, max)
	}
	wire := &countingReader{r: http.MaxBytesReader(w, r.Body, max)}
	var body io.Reader = wire
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "gzip":
		req.Gzip = true
		gz, err := gzip.NewReader(wire)
		if err != nil {
			req.WireBytes = wire.n
			if a, over := overLimit(err, wire.n, max); over {
				return nil, a
			}
			return nil, eventAnswer(CodeInvalidDataFormat, 0)
		}
		defer gz.Close()
		body = io.LimitReader(gz, max+1)
	default:
		// A guess: Splunk's answer to an unknown encoding is not
		// documented.
		a := codeAnswer(CodeInvalidDataFormat)
		a.status = http.StatusUnsupportedMediaType
		return nil, a
	}
	decoded := &countingReader{r: body}
	dec := json.NewDecoder(decoded)
	var events []Event
	var a answer
	for i := 0; ; i++ {
		var we wireEvent
		err := dec.Decode(&we)
		if err == io.EOF {
			break
		}
		if err != nil {
			if over, isOver := overLimit(err, wire.n, max); isOver {
				a = over
			} else if decoded.n > max {
				a = tooLarge(decoded.n, max)
			} else if ute := (*json.UnmarshalTypeError)(nil); errors.As(err, &ute) && ute.Field == "fields" {
				a = eventAnswer(CodeIndexedFields, i)
			} else {
				a = eventAnswer(CodeInvalidDataFormat, i)
			}
			break
		}
		ev, bad := s.checkEvent(&we, i, f)
		if bad.status != 0 {
			a = bad
			break
		}
		events = append(events, ev)
	}
	req.WireBytes, req.BodyBytes = wire.n, decoded.n
	switch {
	case a.status != 0:
	case decoded.n > max:
		a = tooLarge(decoded.n, max)
	case len(events) == 0:
		a = codeAnswer(CodeNoData)
	default:
		a = codeAnswer(CodeSuccess)
	}
	if a.status == http.StatusRequestEntityTooLarge {
		events = nil // Splunk refuses the request before parsing it
	}
	return events, a
}

// wireEvent is one event object as sent.
type wireEvent struct {
	Time       json.RawMessage `json:"time"`
	Host       *string         `json:"host"`
	Source     *string         `json:"source"`
	Sourcetype *string         `json:"sourcetype"`
	Index      *string         `json:"index"`
	Event      json.RawMessage `json:"event"`
	Fields     map[string]any  `json:"fields"`
}

// checkEvent validates event i and converts it.
func (s *Server) checkEvent(we *wireEvent, i int, f *Fault) (Event, answer) {
	switch {
	case len(we.Event) == 0:
		return Event{}, eventAnswer(CodeEventRequired, i)
	case string(we.Event) == `""` || string(we.Event) == "null":
		return Event{}, eventAnswer(CodeEventBlank, i)
	}
	ev := Event{Event: we.Event, Fields: we.Fields, AckID: -1}
	if len(we.Time) > 0 {
		t, ok := parseTime(we.Time)
		if !ok {
			return Event{}, eventAnswer(CodeInvalidDataFormat, i)
		}
		ev.Time, ev.RawTime = t, string(we.Time)
	}
	for name, v := range we.Fields {
		if !flatField(v) || name == "" {
			return Event{}, eventAnswer(CodeIndexedFields, i)
		}
	}
	ev.Host, ev.Source, ev.Sourcetype, ev.Index = deref(we.Host), deref(we.Source), deref(we.Sourcetype), deref(we.Index)
	if ev.Index != "" && s.indexes != nil && !s.indexes[ev.Index] {
		return Event{}, eventAnswer(CodeIncorrectIndex, i)
	}
	if f.RejectEvent != nil {
		if status, code, text, reject := f.RejectEvent(ev); reject {
			a := answer{status: status, code: code, text: text, invalidEvent: i, ackID: -1}
			if a.text == "" {
				a.text = Texts[code]
			}
			return Event{}, a
		}
	}
	return ev, answer{}
}

// parseTime accepts epoch seconds as a JSON number or a string holding one.
func parseTime(raw json.RawMessage) (float64, bool) {
	s := string(raw)
	if s == "null" {
		return 0, false
	}
	if s[0] == '"' {
		var err error
		if s, err = strconv.Unquote(s); err != nil {
			return 0, false
		}
	}
	t, err := strconv.ParseFloat(s, 64)
	return t, err == nil && t >= 0
}

// flatField: indexed field values are strings or numbers, or arrays of them.
func flatField(v any) bool {
	switch v := v.(type) {
	case string, float64:
		return true
	case []any:
		for _, e := range v {
			switch e.(type) {
			case string, float64:
			default:
				return false
			}
		}
		return true
	}
	return false
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func tooLarge(n, max int64) answer {
	return answer{status: http.StatusRequestEntityTooLarge, text: fmt.Sprintf("Content-Length of %d too large (maximum is %d)", n, max), invalidEvent: -1, ackID: -1}
}

// overLimit recognises http.MaxBytesReader's error.
func overLimit(err error, n, max int64) (answer, bool) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(n, max), true
	}
	return answer{}, false
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (s *Server) handleAck(w http.ResponseWriter, r *http.Request) {
	f := s.fault.Load()
	channel, a, ok := s.precheck(w, r, f)
	if !ok {
		return
	}
	if a.status != 0 {
		a.write(w)
		return
	}
	if !s.opts.AckEnabled {
		codeAnswer(CodeAckDisabled).write(w)
		return
	}
	var q struct {
		Acks []int64 `json:"acks"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&q); err != nil || q.Acks == nil {
		codeAnswer(CodeInvalidDataFormat).write(w)
		return
	}
	acks, trues := s.acks.query(channel, q.Acks, f)
	b, _ := json.Marshal(map[string]any{"acks": acks})
	s.mu.Lock()
	s.stats.AckQueries++
	s.stats.AcksTrue += trues
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, string(b))
}

func (s *Server) handleHealth(w http.ResponseWriter) {
	f := s.fault.Load()
	if f.Status == http.StatusServiceUnavailable || f.Status == http.StatusTooManyRequests {
		codeAnswer(CodeUnhealthyQueues).write(w)
		return
	}
	codeAnswer(CodeHealthy).write(w)
}

// isGUID reports whether s has the form 8-4-4-4-12 hex digits.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
