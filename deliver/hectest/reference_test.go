package hectest

// The encoding/json implementation of readEvents that the hand-written
// parser replaced, kept (renamed; its per-event checks now call the
// server's checkEvent, which is the same code) as the reference for
// FuzzReadEvents_MatchesReference. oneByte feeds the decoder one byte per
// Read, which makes its one chunking-dependent outcome deterministic (see
// the fuzz test).

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing/iotest"
)

func (s *Server) refReadEvents(w http.ResponseWriter, r *http.Request, req *Request, f *Fault, oneByte bool) ([]Event, answer) {
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
		a := codeAnswer(CodeInvalidDataFormat)
		a.status = http.StatusUnsupportedMediaType
		return nil, a
	}
	if oneByte {
		body = iotest.OneByteReader(body)
	}
	decoded := &countingReader{r: body}
	dec := json.NewDecoder(decoded)
	var events []Event
	var a answer
	for i := 0; ; i++ {
		var we refWireEvent
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
		ev, bad := s.refCheckEvent(&we, i, f)
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
		events = nil
	}
	return events, a
}

type refWireEvent struct {
	Time       json.RawMessage `json:"time"`
	Host       *string         `json:"host"`
	Source     *string         `json:"source"`
	Sourcetype *string         `json:"sourcetype"`
	Index      *string         `json:"index"`
	Event      json.RawMessage `json:"event"`
	Fields     map[string]any  `json:"fields"`
}

// refCheckEvent hands the decoded event to the server's own checks: the
// reference differs from the parser in decoding only.
func (s *Server) refCheckEvent(we *refWireEvent, i int, f *Fault) (Event, answer) {
	return s.checkEvent(&parsedEvent{
		time: we.Time, event: we.Event, fields: we.Fields,
		host: refDeref(we.Host), source: refDeref(we.Source), sourcetype: refDeref(we.Sourcetype), index: refDeref(we.Index),
	}, i, f)
}

func refDeref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
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
