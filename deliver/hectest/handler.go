package hectest

import (
	"bytes"
	stdgzip "compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/klauspost/compress/gzip"
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
	var buf *[]byte
	if a.status == 0 {
		events, a, buf = s.readEvents(w, r, req, f)
	}
	s.record(req, events, &a)
	if s.opts.Consume != nil && len(events) > 0 {
		s.opts.Consume(events)
	}
	s.release(events, buf)
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

// readEvents reads the body, a stream of concatenated JSON event objects,
// into memory (within MaxContentLength, compressed and decompressed) and
// parses it (parse.go). On the first bad event it stops and answers with its
// index; the events before it are returned and recorded, as Splunk indexes
// the events of a request that precede the failing one (which is why a
// client resending the whole batch creates duplicates). With Consume set,
// the events alias a pooled buffer returned as buf, for release once
// Consume has seen them.
func (s *Server) readEvents(w http.ResponseWriter, r *http.Request, req *Request, f *Fault) (events []Event, a answer, buf *[]byte) {
	max := s.opts.MaxContentLength
	if r.ContentLength > max {
		return nil, tooLarge(r.ContentLength, max), nil
	}
	gzipped := false
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "gzip":
		gzipped = true
		req.Gzip = true
	default:
		// A guess: Splunk's answer to an unknown encoding is not
		// documented.
		a := codeAnswer(CodeInvalidDataFormat)
		a.status = http.StatusUnsupportedMediaType
		return nil, a, nil
	}
	wireReader := http.MaxBytesReader(w, r.Body, max)
	if s.opts.Consume != nil {
		buf, _ = s.bodyPool.Get().(*[]byte)
		if buf == nil {
			buf = new([]byte)
		}
	}
	var body []byte
	if buf != nil {
		body = *buf
	}
	var wireN int64
	var bodyErr error
	if !gzipped {
		body, bodyErr = readAll(wireReader, body, r.ContentLength, max+1)
		wireN = int64(len(body))
	} else {
		wbuf, _ := wirePool.Get().(*[]byte)
		if wbuf == nil {
			wbuf = new([]byte)
		}
		defer putBuf(&wirePool, wbuf)
		wire, wireErr := readAll(wireReader, *wbuf, r.ContentLength, max+1)
		*wbuf = wire
		wireN = int64(len(wire))
		var err error
		body, bodyErr, err = gunzip(wire, wireErr, body, max+1)
		if err != nil {
			req.WireBytes = wireN
			if buf != nil {
				*buf = body
				putBuf(&s.bodyPool, buf)
			}
			if a, over := overLimit(err, wireN, max); over {
				return nil, a, nil
			}
			return nil, eventAnswer(CodeInvalidDataFormat, 0), nil
		}
	}
	if buf != nil {
		*buf = body
	}
	req.WireBytes, req.BodyBytes = wireN, int64(len(body))
	events, a = s.parseEvents(body, bodyErr, wireN, max, f)
	if a.status == http.StatusRequestEntityTooLarge {
		events = nil // Splunk refuses the request before parsing it
	}
	return events, a, buf
}

var (
	wirePool sync.Pool // *[]byte: compressed bodies
	gzipPool sync.Pool // *gzip.Reader
)

// maxPooledBuf bounds the buffers kept for reuse.
const maxPooledBuf = 64 << 20

func putBuf(p *sync.Pool, b *[]byte) {
	if cap(*b) <= maxPooledBuf {
		*b = (*b)[:0]
		p.Put(b)
	}
}

// release recycles a request's buffers once Consume has seen its events.
func (s *Server) release(events []Event, buf *[]byte) {
	if s.opts.Consume == nil {
		return
	}
	if events != nil && cap(events) <= maxPooledBuf/int(unsafe.Sizeof(Event{})) {
		clear(events)
		events = events[:0]
		s.eventPool.Put(&events)
	}
	if buf != nil {
		putBuf(&s.bodyPool, buf)
	}
}

// readAll appends what r yields to buf[:0] until EOF, an error (returned;
// EOF is not) or limit bytes. hint, when not negative, is the expected size.
func readAll(r io.Reader, buf []byte, hint, limit int64) ([]byte, error) {
	buf = buf[:0]
	if want := min(hint+1, limit); hint >= 0 && int64(cap(buf)) < want {
		buf = make([]byte, 0, want) // +1: room to see EOF without growing
	} else if cap(buf) == 0 {
		buf = make([]byte, 0, min(32<<10, limit))
	}
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, int(min(int64(max(cap(buf), 4096)), limit-int64(len(buf)))))
		}
		end := int(min(int64(cap(buf)), limit))
		n, err := r.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// gunzip decompresses wire, which its reader ended with wireErr (nil for
// EOF), into dst[:0], up to limit bytes; bodyErr is the error that ended
// the decompressed stream (nil for its end or the limit), headerErr the
// error that prevented reading the gzip header. A complete body is inflated
// by klauspost/compress, faster; anything that fails is inflated again by
// compress/gzip, the reference implementation's, as how much of a broken
// stream is delivered before the error differs between the two (and
// decides which events are kept).
func gunzip(wire []byte, wireErr error, dst []byte, limit int64) (body []byte, bodyErr, headerErr error) {
	hint := int64(-1)
	if wireErr == nil && len(wire) >= 18 { // ISIZE of the last member: a size hint
		hint = min(int64(binary.LittleEndian.Uint32(wire[len(wire)-4:])), 1032*int64(len(wire))+64)
	}
	if wireErr == nil {
		gz, _ := gzipPool.Get().(*gzip.Reader)
		var err error
		if gz == nil {
			gz, err = gzip.NewReader(bytes.NewReader(wire))
		} else {
			err = gz.Reset(bytes.NewReader(wire))
		}
		if err == nil {
			dst, err = readAll(gz, dst, hint, limit)
		}
		if gz != nil {
			gzipPool.Put(gz)
		}
		if err == nil {
			return dst, nil, nil
		}
	}
	var src io.Reader = bytes.NewReader(wire)
	if wireErr != nil {
		src = &errAtEnd{b: wire, err: wireErr}
	}
	zr, err := stdgzip.NewReader(src)
	if err != nil {
		return dst[:0], nil, err
	}
	body, bodyErr = readAll(zr, dst, hint, limit)
	return body, bodyErr, nil
}

// errAtEnd reads b, then fails with err: a body cut short by its reader's
// error (e.g. http.MaxBytesError) as the gzip reader would have seen it.
type errAtEnd struct {
	b   []byte
	err error
}

func (e *errAtEnd) Read(p []byte) (int, error) {
	if len(e.b) == 0 {
		return 0, e.err
	}
	n := copy(p, e.b)
	e.b = e.b[n:]
	return n, nil
}

// checkEvent validates event i and converts it.
func (s *Server) checkEvent(pe *parsedEvent, i int, f *Fault) (Event, answer) {
	switch {
	case len(pe.event) == 0:
		return Event{}, eventAnswer(CodeEventRequired, i)
	case string(pe.event) == `""` || string(pe.event) == "null":
		return Event{}, eventAnswer(CodeEventBlank, i)
	}
	ev := Event{Event: pe.event, Fields: pe.fields, AckID: -1}
	if len(pe.time) > 0 {
		t, ok := parseTime(pe.time)
		if !ok {
			return Event{}, eventAnswer(CodeInvalidDataFormat, i)
		}
		ev.Time, ev.RawTime = t, string(pe.time)
	}
	for name, v := range pe.fields {
		if !flatField(v) || name == "" {
			return Event{}, eventAnswer(CodeIndexedFields, i)
		}
	}
	ev.Host, ev.Source, ev.Sourcetype, ev.Index = pe.host, pe.source, pe.sourcetype, pe.index
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
