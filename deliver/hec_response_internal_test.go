package deliver

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestClassifyHEC(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		kind   ErrorKind // 0: success
		code   int
		index  int
	}{
		{"200 success", 200, `{"text":"Success","code":0}`, 0, 0, -1},
		{"200 with ackId", 200, `{"text":"Success","code":0,"ackId":7}`, 0, 0, -1},
		{"503 code 9 server busy", 503, `{"text":"Server is busy","code":9}`, Transient, 9, -1},
		{"503 code 18 queues full", 503, `{"text":"HEC is unhealthy, queues are full","code":18}`, Transient, 18, -1},
		{"429", 429, ``, Transient, 0, -1},
		{"500 code 8", 500, `{"text":"Internal server error","code":8}`, Transient, 8, -1},
		{"502 from a proxy, html", 502, `<html>bad gateway</html>`, Transient, 0, -1},
		{"504", 504, ``, Transient, 0, -1},
		{"408", 408, ``, Transient, 0, -1},
		{"400 code 6 with event number", 400, `{"text":"Invalid data format","code":6,"invalid-event-number":4}`, Permanent, 6, 4},
		{"400 code 6 event number as string", 400, `{"text":"Invalid data format","code":6,"invalid-event-number":"2"}`, Permanent, 6, 2},
		{"400 code 6 without event number", 400, `{"text":"Invalid data format","code":6}`, Permanent, 6, -1},
		{"400 code 12 event required", 400, `{"text":"Event field is required","code":12,"invalid-event-number":0}`, Permanent, 12, 0},
		{"400 code 13 event blank", 400, `{"text":"Event field cannot be blank","code":13,"invalid-event-number":3}`, Permanent, 13, 3},
		{"400 code 5 no data", 400, `{"text":"No data","code":5}`, Permanent, 5, -1},
		{"400 code 15 indexed fields", 400, `{"text":"Error in handling indexed fields","code":15,"invalid-event-number":1}`, Permanent, 15, 1},
		{"400 code 7 incorrect index", 400, `{"text":"Incorrect index","code":7,"invalid-event-number":1}`, Config, 7, -1},
		{"400 code 10 channel missing", 400, `{"text":"Data channel is missing","code":10}`, Config, 10, -1},
		{"400 code 11 invalid channel", 400, `{"text":"Invalid data channel","code":11}`, Config, 11, -1},
		{"400 code 14 ack disabled", 400, `{"text":"ACK is disabled","code":14}`, Config, 14, -1},
		{"401 code 2 token required", 401, `{"text":"Token is required","code":2}`, Config, 2, -1},
		{"401 code 3 invalid authorization", 401, `{"text":"Invalid authorization","code":3}`, Config, 3, -1},
		{"403 code 4 invalid token", 403, `{"text":"Invalid token","code":4}`, Config, 4, -1},
		{"403 code 1 token disabled", 403, `{"text":"Token disabled","code":1}`, Config, 1, -1},
		{"404 wrong URL", 404, `not json`, Config, 0, -1},
		{"413", 413, `{"text":"Content request too large","code":413}`, Permanent, 413, -1},
		{"unlisted 4xx: 422", 422, ``, Config, 0, -1},
		{"unlisted 4xx: 407 from a proxy", 407, `<html>Proxy Authentication Required</html>`, Config, 0, -1},
		{"unlisted 4xx: 411", 411, ``, Config, 0, -1},
		{"unlisted 4xx: 414", 414, ``, Config, 0, -1},
		{"unlisted 4xx: 415", 415, ``, Config, 0, -1},
		{"400 garbage body (not HEC)", 400, `{{{`, Config, 0, -1},
		{"400 unknown code", 400, `{"text":"Something new","code":27,"invalid-event-number":1}`, Config, 27, -1},
		{"3xx", 302, ``, Config, 0, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := classifyHEC(tc.status, []byte(tc.body))
			if tc.kind == 0 {
				if e != nil {
					t.Fatalf("got %v, want success", e)
				}
				return
			}
			if e == nil {
				t.Fatalf("got success, want %v", tc.kind)
			}
			if e.Kind != tc.kind || e.Code != tc.code || e.EventIndex != tc.index || e.Status != tc.status {
				t.Errorf("got kind %v code %d index %d status %d, want %v %d %d %d",
					e.Kind, e.Code, e.EventIndex, e.Status, tc.kind, tc.code, tc.index, tc.status)
			}
		})
	}
}

func TestUnlistedHEC(t *testing.T) {
	for _, tc := range []struct {
		status, code int
		hasCode      bool
		want         bool
	}{
		{400, 6, true, false}, {400, 7, true, false}, {400, 14, true, false}, {400, 0, false, true},
		{400, 27, true, true}, {401, 2, true, false}, {403, 1, true, false}, {404, 0, false, false},
		{405, 0, false, false}, {408, 0, false, false}, {413, 0, false, false}, {429, 0, false, false},
		{407, 0, false, true}, {411, 0, false, true}, {414, 0, false, true}, {415, 0, false, true},
		{422, 0, false, true}, {503, 9, true, false}, {302, 0, false, false},
	} {
		if got := unlistedHEC(tc.status, tc.code, tc.hasCode); got != tc.want {
			t.Errorf("unlistedHEC(%d, %d, %v) = %v, want %v", tc.status, tc.code, tc.hasCode, got, tc.want)
		}
	}
}

func TestClassifyTransport(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want ErrorKind
	}{
		{"timeout", &url.Error{Op: "Post", URL: "x", Err: context.DeadlineExceeded}, Transient},
		{"net timeout", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, Transient},
		{"reset", &url.Error{Op: "Post", Err: &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}, Transient},
		{"refused", &url.Error{Op: "Post", Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, Transient},
		{"EOF", fmt.Errorf("post: %w", errors.New("EOF")), Transient},
		{"unknown CA", &url.Error{Op: "Post", Err: x509.UnknownAuthorityError{}}, Config},
		{"wrong host name", &url.Error{Op: "Post", Err: x509.HostnameError{Host: "h", Certificate: &x509.Certificate{}}}, Config},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := classifyTransport(tc.err).Kind; got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			retry, _ := RetryPolicy{}.checkRetry(nil)(context.Background(), nil, tc.err)
			if retry != (tc.want == Transient) {
				t.Errorf("checkRetry = %v", retry)
			}
		})
	}
	t.Run("status", func(t *testing.T) {
		for status, want := range map[int]bool{200: false, 400: false, 401: false, 413: false, 429: true, 500: true, 503: true} {
			got, _ := RetryPolicy{}.checkRetry(nil)(context.Background(), &http.Response{StatusCode: status}, nil)
			if got != want {
				t.Errorf("checkRetry(%d) = %v, want %v", status, got, want)
			}
		}
	})
	t.Run("cancelled context stops", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		got, err := RetryPolicy{}.checkRetry(nil)(ctx, &http.Response{StatusCode: 503}, nil)
		if got || !errors.Is(err, context.Canceled) {
			t.Errorf("got %v %v", got, err)
		}
	})
}

func TestRetryPolicy_Backoff(t *testing.T) {
	p := RetryPolicy{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for attempt, ceil := range []time.Duration{100, 200, 400, 800, 1600, 2000, 2000} {
		ceil *= time.Millisecond
		if attempt == 6 {
			attempt = 1000 // no overflow
		}
		for range 50 {
			d := p.Backoff(attempt)
			if d < ceil/2 || d > ceil {
				t.Fatalf("Backoff(%d) = %v, want in [%v, %v]", attempt, d, ceil/2, ceil)
			}
		}
	}
	t.Run("Retry-After honoured up to Max", func(t *testing.T) {
		resp := &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"60"}}}
		if got := p.backoff()(0, 0, 0, resp); got != 2*time.Second {
			t.Errorf("got %v", got)
		}
	})
}

func TestParseAckResponse(t *testing.T) {
	for _, tc := range []struct {
		body      string
		acked, ok bool
	}{
		{`{"acks":{"7":true}}`, true, true},
		{`{"acks":{"7":false}}`, false, true},
		{`{"acks":{"8":true}}`, false, true},
		{`{"acks":{"7":"yes"}}`, false, true},
		{`{"acks":[]}`, false, false},
		{`garbage`, false, false},
	} {
		acked, ok := parseAckResponse([]byte(tc.body), 7)
		if acked != tc.acked || ok != tc.ok {
			t.Errorf("%s: got %v %v, want %v %v", tc.body, acked, ok, tc.acked, tc.ok)
		}
	}
}

// FuzzParseHECResponse: never panics on garbage; unknown bodies are
// classified by status alone.
func FuzzParseHECResponse(f *testing.F) {
	for _, s := range []string{
		`{"text":"Success","code":0,"ackId":3}`,
		`{"text":"Invalid data format","code":6,"invalid-event-number":2}`,
		`{"code":"9","invalid-event-number":1e3}`,
		`{"code":1e400}`, `{"ackId":-1}`, `[]`, `null`, ``, `{"text":"` + string(make([]byte, 300)) + `"}`,
	} {
		f.Add(400, []byte(s))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		r, ok := parseHECResponse(body)
		if !ok && (r.HasCode || r.InvalidEvent != -1 || r.HasAckID) {
			t.Fatalf("unparsable body yielded %+v", r)
		}
		if len(r.Text) > 200+len("…") {
			t.Fatalf("text not truncated: %d bytes", len(r.Text))
		}
		e := classifyHEC(status, body)
		if status >= 200 && status <= 299 {
			if e != nil {
				t.Fatalf("2xx classified %v", e)
			}
			return
		}
		if e == nil || e.Kind < Transient || e.Kind > Config {
			t.Fatalf("status %d: got %v", status, e)
		}
		if e.EventIndex >= 0 && e.Kind != Permanent {
			t.Fatalf("event index on %v", e.Kind)
		}
		if !ok && e.Kind != classifyHEC(status, nil).Kind {
			t.Fatalf("garbage body changed the class")
		}
		parseAckResponse(body, 0) // must not panic either
	})
}
