package hectest_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
)

const (
	token   = "00000000-1111-2222-3333-444444444444"
	channel = "0aecf6d5-8e5c-4b6d-9b7e-0123456789ab"
)

// reply is a HEC JSON answer.
type reply struct {
	Text         string `json:"text"`
	Code         int    `json:"code"`
	InvalidEvent *int   `json:"invalid-event-number"`
	AckID        *int64 `json:"ackId"`
}

type call struct {
	method  string // default POST
	path    string // default /services/collector/event
	query   string
	headers map[string]string // Authorization defaults to the right token; "" removes it
	body    []byte
	gzip    bool
}

func do(t *testing.T, client *http.Client, base string, c call) (int, reply, []byte) {
	t.Helper()
	if c.method == "" {
		c.method = http.MethodPost
	}
	if c.path == "" {
		c.path = hectest.PathEvent
	}
	body := c.body
	if c.gzip {
		body = gz(t, body)
	}
	url := base + c.path
	if c.query != "" {
		url += "?" + c.query
	}
	req, err := http.NewRequest(c.method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Splunk "+token)
	if c.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range c.headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r reply
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("answer %q: %v", raw, err)
		}
	}
	return resp.StatusCode, r, raw
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func events(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"time":1714567040.%09d,"host":"h","source":"s","sourcetype":"st","index":"main","event":{"n":%d},"fields":{"project":"p","shard":3}}`+"\n", i, i)
	}
	return b.Bytes()
}

func intp(i int) *int { return &i }

func TestServer_Protocol(t *testing.T) {
	s := hectest.NewServer(t, hectest.Options{Token: token, Indexes: []string{"main", "audit"}, MaxContentLength: 4096})
	for _, tc := range []struct {
		name       string
		call       call
		status     int
		code       int
		invalid    *int // invalid-event-number
		kept       int  // events recorded
		jsonAnswer bool
	}{
		{"success", call{body: events(1)}, 200, 0, nil, 1, true},
		{"concatenated with whitespace", call{body: []byte(` {"event":"a"}  {"event":"b"}` + "\r\n\t" + `{"event":{"c":1}}`)}, 200, 0, nil, 3, true},
		{"path /services/collector", call{path: hectest.PathCollector, body: events(2)}, 200, 0, nil, 2, true},
		{"path event/1.0", call{path: hectest.PathEvent10, body: events(2)}, 200, 0, nil, 2, true},
		{"gzip", call{body: events(5), gzip: true}, 200, 0, nil, 5, true},
		{"time as string", call{body: []byte(`{"time":"1714567040.500","event":"x"}`)}, 200, 0, nil, 1, true},
		{"no token", call{headers: map[string]string{"Authorization": ""}, body: events(1)}, 401, 2, nil, 0, true},
		{"query-string token", call{headers: map[string]string{"Authorization": ""}, query: "token=" + token, body: events(1)}, 400, 16, nil, 0, true},
		{"other scheme", call{headers: map[string]string{"Authorization": "Bearer " + token}, body: events(1)}, 401, 3, nil, 0, true},
		{"wrong token", call{headers: map[string]string{"Authorization": "Splunk nope"}, body: events(1)}, 403, 4, nil, 0, true},
		{"empty body", call{body: nil}, 400, 5, nil, 0, true},
		{"whitespace body", call{body: []byte("\n \n")}, 400, 5, nil, 0, true},
		{"malformed third event", call{body: append(events(2), `{"event":"x",}`...)}, 400, 6, intp(2), 2, true},
		{"truncated second event", call{body: append(events(1), `{"event":"x"`...)}, 400, 6, intp(1), 1, true},
		{"array", call{body: []byte(`[{"event":"x"}]`)}, 400, 6, intp(0), 0, true},
		{"bad time", call{body: []byte(`{"time":"soon","event":"x"}`)}, 400, 6, intp(0), 0, true},
		{"host not a string", call{body: []byte(`{"host":1,"event":"x"}`)}, 400, 6, intp(0), 0, true},
		{"bad gzip", call{headers: map[string]string{"Content-Encoding": "gzip"}, body: []byte("not gzip")}, 400, 6, intp(0), 0, true},
		{"event missing", call{body: append(events(1), `{"time":1,"host":"h"}`...)}, 400, 12, intp(1), 1, true},
		{"event blank", call{body: []byte(`{"event":""}`)}, 400, 13, intp(0), 0, true},
		{"event null", call{body: []byte(`{"event":null}`)}, 400, 13, intp(0), 0, true},
		{"nested field", call{body: []byte(`{"event":"x","fields":{"a":{"b":1}}}`)}, 400, 15, intp(0), 0, true},
		{"fields not an object", call{body: []byte(`{"event":"x","fields":"a"}`)}, 400, 15, intp(0), 0, true},
		{"field array of strings", call{body: []byte(`{"event":"x","fields":{"a":["b","c",1]}}`)}, 200, 0, nil, 1, true},
		{"index not allowed", call{body: []byte(`{"event":"x","index":"main"}{"event":"y","index":"secret"}`)}, 400, 7, intp(1), 1, true},
		{"over max_content_length", call{body: events(40)}, 413, 0, nil, 0, false},
		{"over max_content_length decompressed", call{body: bytes.Repeat([]byte(`{"event":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`), 200), gzip: true}, 413, 0, nil, 0, false},
		{"unknown encoding", call{headers: map[string]string{"Content-Encoding": "br"}, body: events(1)}, 415, 6, nil, 0, true},
		{"GET on event endpoint", call{method: http.MethodGet}, 405, 405, nil, 0, true},
		{"unknown path", call{path: "/services/collector/raw", body: []byte("x")}, 404, 404, nil, 0, true},
		{"ack when disabled", call{path: hectest.PathAck, body: []byte(`{"acks":[0]}`)}, 400, 14, nil, 0, true},
		{"health", call{method: http.MethodGet, path: hectest.PathHealth}, 200, 17, nil, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.Reset()
			status, r, raw := do(t, http.DefaultClient, s.URL(), tc.call)
			if status != tc.status {
				t.Fatalf("status %d %s, want %d", status, raw, tc.status)
			}
			if tc.jsonAnswer {
				if r.Code != tc.code {
					t.Errorf("code %d, want %d (%s)", r.Code, tc.code, raw)
				}
				if want, ok := hectest.Texts[tc.code]; ok && r.Text != want {
					t.Errorf("text %q, want %q", r.Text, want)
				}
				switch {
				case tc.invalid == nil && r.InvalidEvent != nil:
					t.Errorf("invalid-event-number %d, want none", *r.InvalidEvent)
				case tc.invalid != nil && (r.InvalidEvent == nil || *r.InvalidEvent != *tc.invalid):
					t.Errorf("invalid-event-number in %s, want %d", raw, *tc.invalid)
				}
				if r.AckID != nil {
					t.Errorf("ackId %d without acks enabled", *r.AckID)
				}
			}
			if got := s.EventCount(); got != tc.kept {
				t.Errorf("recorded %d events, want %d", got, tc.kept)
			}
		})
	}
}

func TestServer_RecordsEvents(t *testing.T) {
	s := hectest.NewServer(t, hectest.Options{Token: token})
	body := `{"time":1714567040.123456789,"host":"web-1","source":"proj/audit","sourcetype":"sls:audit","index":"main","event":{"msg":"hi","n":1},"fields":{"shard":"3","tags":["a","b"]}}`
	if status, _, raw := do(t, http.DefaultClient, s.URL(), call{body: []byte(body), gzip: true}); status != 200 {
		t.Fatalf("status %d %s", status, raw)
	}
	evs := s.Events()
	if len(evs) != 1 {
		t.Fatalf("got %d events", len(evs))
	}
	e := evs[0]
	if e.RawTime != "1714567040.123456789" || e.Host != "web-1" || e.Source != "proj/audit" || e.Sourcetype != "sls:audit" || e.Index != "main" {
		t.Errorf("metadata: %+v", e)
	}
	if string(e.Event) != `{"msg":"hi","n":1}` {
		t.Errorf("event %s", e.Event)
	}
	if e.Fields["shard"] != "3" || e.AckID != -1 || e.Acked {
		t.Errorf("fields/ack: %+v", e)
	}
	reqs := s.Requests()
	if len(reqs) != 1 || !reqs[0].Gzip || reqs[0].BodyBytes != int64(len(body)) || reqs[0].WireBytes >= reqs[0].BodyBytes+50 || reqs[0].Events != 1 {
		t.Errorf("request record: %+v", reqs)
	}
	st := s.Stats()
	if st.Requests != 1 || st.Events != 1 || st.GzipRequests != 1 || st.ByStatus[200] != 1 {
		t.Errorf("stats: %+v", st)
	}
}

func ackQuery(t *testing.T, s *hectest.Server, ch string, ids ...int64) map[string]bool {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"acks": ids})
	status, _, raw := do(t, http.DefaultClient, s.URL(), call{path: hectest.PathAck, headers: map[string]string{hectest.ChannelHeader: ch}, body: b})
	if status != 200 {
		t.Fatalf("ack query: %d %s", status, raw)
	}
	var r struct{ Acks map[string]bool }
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	return r.Acks
}

func TestServer_Acks(t *testing.T) {
	s := hectest.NewServer(t, hectest.Options{Token: token, AckEnabled: true, AckDelay: 50 * time.Millisecond})
	send := func(t *testing.T, c call) (int, reply) {
		t.Helper()
		c.body = events(2)
		status, r, _ := do(t, http.DefaultClient, s.URL(), c)
		return status, r
	}
	t.Run("channel missing", func(t *testing.T) {
		if status, r := send(t, call{}); status != 400 || r.Code != 10 || r.Text != "Data channel is missing" {
			t.Errorf("got %d %+v", status, r)
		}
	})
	t.Run("channel not a GUID", func(t *testing.T) {
		if status, r := send(t, call{headers: map[string]string{hectest.ChannelHeader: "abc"}}); status != 400 || r.Code != 11 {
			t.Errorf("got %d %+v", status, r)
		}
	})
	t.Run("ack ids per channel", func(t *testing.T) {
		for i, c := range []call{
			{headers: map[string]string{hectest.ChannelHeader: channel}},
			{query: "channel=" + channel},
		} {
			status, r := send(t, c)
			if status != 200 || r.Code != 0 || r.AckID == nil || *r.AckID != int64(i) {
				t.Fatalf("request %d: %d %+v", i, status, r)
			}
		}
	})
	t.Run("true after delay, once", func(t *testing.T) {
		if got := ackQuery(t, s, channel, 0, 1, 99); got["0"] || got["1"] || got["99"] || len(got) != 3 {
			t.Errorf("before delay: %v", got)
		}
		time.Sleep(60 * time.Millisecond)
		if got := ackQuery(t, s, channel, 0, 99); !got["0"] || got["99"] {
			t.Errorf("after delay: %v", got)
		}
		if got := ackQuery(t, s, channel, 0, 1); got["0"] || !got["1"] {
			t.Errorf("second query: %v (0 was already answered true)", got)
		}
		for _, e := range s.Events() {
			if e.Channel != channel || !e.Acked {
				t.Errorf("event not acked: %+v", e)
			}
		}
	})
	t.Run("ack query without channel", func(t *testing.T) {
		status, r, _ := do(t, http.DefaultClient, s.URL(), call{path: hectest.PathAck, body: []byte(`{"acks":[0]}`)})
		if status != 400 || r.Code != 10 {
			t.Errorf("got %d %+v", status, r)
		}
	})
	t.Run("ack query malformed", func(t *testing.T) {
		status, r, _ := do(t, http.DefaultClient, s.URL(), call{path: hectest.PathAck, headers: map[string]string{hectest.ChannelHeader: channel}, body: []byte(`{"acks":`)})
		if status != 400 || r.Code != 6 {
			t.Errorf("got %d %+v", status, r)
		}
	})
	t.Run("withhold", func(t *testing.T) {
		s.SetFault(hectest.Fault{WithholdAcks: true})
		_, r := send(t, call{headers: map[string]string{hectest.ChannelHeader: channel}})
		id := *r.AckID
		time.Sleep(60 * time.Millisecond)
		if got := ackQuery(t, s, channel, id); got[fmt.Sprint(id)] {
			t.Errorf("withheld ack answered true")
		}
		s.SetFault(hectest.Fault{})
		if got := ackQuery(t, s, channel, id); !got[fmt.Sprint(id)] {
			t.Errorf("ack still false after the fault was cleared")
		}
	})
	t.Run("lose", func(t *testing.T) {
		_, r := send(t, call{headers: map[string]string{hectest.ChannelHeader: channel}})
		id := *r.AckID
		time.Sleep(60 * time.Millisecond)
		s.SetFault(hectest.Fault{LoseAcks: true})
		ackQuery(t, s, channel, id)
		s.SetFault(hectest.Fault{})
		if got := ackQuery(t, s, channel, id); got[fmt.Sprint(id)] {
			t.Errorf("lost ack answered true")
		}
	})
}

func TestServer_Faults(t *testing.T) {
	s := hectest.NewServer(t, hectest.Options{Token: token})
	client := &http.Client{Timeout: 2 * time.Second}
	t.Run("busy", func(t *testing.T) {
		s.SetFault(hectest.Fault{Status: 503, Code: hectest.CodeServerBusy})
		defer s.SetFault(hectest.Fault{})
		if status, r, _ := do(t, client, s.URL(), call{body: events(1)}); status != 503 || r.Code != 9 || r.Text != "Server is busy" {
			t.Errorf("event: %d %+v", status, r)
		}
		if status, r, _ := do(t, client, s.URL(), call{method: http.MethodGet, path: hectest.PathHealth}); status != 503 || r.Code != 18 {
			t.Errorf("health: %d %+v", status, r)
		}
		if s.EventCount() != 0 {
			t.Error("events recorded while busy")
		}
	})
	t.Run("429", func(t *testing.T) {
		s.SetFault(hectest.Fault{Status: 429, Code: 9, Text: "Too many requests"})
		defer s.SetFault(hectest.Fault{})
		if status, r, _ := do(t, client, s.URL(), call{body: events(1)}); status != 429 || r.Text != "Too many requests" {
			t.Errorf("got %d %+v", status, r)
		}
	})
	t.Run("token disabled", func(t *testing.T) {
		s.SetFault(hectest.Fault{TokenDisabled: true})
		defer s.SetFault(hectest.Fault{})
		if status, r, _ := do(t, client, s.URL(), call{body: events(1)}); status != 403 || r.Code != 1 || r.Text != "Token disabled" {
			t.Errorf("got %d %+v", status, r)
		}
	})
	t.Run("delay", func(t *testing.T) {
		s.SetFault(hectest.Fault{Delay: time.Second})
		defer s.SetFault(hectest.Fault{})
		c := &http.Client{Timeout: 100 * time.Millisecond}
		if _, err := c.Post(s.URL()+hectest.PathEvent, "application/json", bytes.NewReader(events(1))); err == nil {
			t.Error("slow answer did not time out")
		}
	})
	t.Run("drop connections", func(t *testing.T) {
		s.Reset()
		s.SetFault(hectest.Fault{DropConnections: true})
		defer s.SetFault(hectest.Fault{})
		req, _ := http.NewRequest(http.MethodPost, s.URL()+hectest.PathEvent, bytes.NewReader(events(1)))
		req.Header.Set("Authorization", "Splunk "+token)
		resp, err := client.Do(req)
		t.Logf("client error: %v", err)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got an answer %d", resp.StatusCode)
		}
		if st := s.Stats(); st.Dropped == 0 || st.Events != 0 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("down and up", func(t *testing.T) {
		s.SetFault(hectest.Fault{Down: true})
		if _, err := client.Get(s.URL() + hectest.PathHealth); err == nil {
			t.Error("connected while down")
		}
		s.SetFault(hectest.Fault{})
		if status, r, _ := do(t, client, s.URL(), call{method: http.MethodGet, path: hectest.PathHealth}); status != 200 || r.Code != 17 {
			t.Errorf("after down: %d %+v", status, r)
		}
	})
	t.Run("reject event", func(t *testing.T) {
		s.Reset()
		s.SetFault(hectest.Fault{RejectEvent: func(ev hectest.Event) (int, int, string, bool) {
			return 400, hectest.CodeInvalidDataFormat, "", strings.Contains(string(ev.Event), "poison")
		}})
		defer s.SetFault(hectest.Fault{})
		body := []byte(`{"event":"ok"}{"event":"ok"}{"event":"poison"}{"event":"ok"}`)
		status, r, _ := do(t, client, s.URL(), call{body: body})
		if status != 400 || r.Code != 6 || r.Text != "Invalid data format" || r.InvalidEvent == nil || *r.InvalidEvent != 2 {
			t.Errorf("got %d %+v", status, r)
		}
		if n := s.EventCount(); n != 2 {
			t.Errorf("kept %d events, want the 2 before the rejected one", n)
		}
	})
}

func TestServer_TLS(t *testing.T) {
	// Borrow httptest's self-signed certificate and a client trusting it.
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	cfg, client := ts.TLS, ts.Client()
	ts.Close()
	s := hectest.NewServer(t, hectest.Options{Token: token, TLS: cfg})
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("URL %s", s.URL())
	}
	if status, r, _ := do(t, client, s.URL(), call{body: events(3)}); status != 200 || r.Code != 0 {
		t.Errorf("got %d %+v", status, r)
	}
}

func TestServer_Concurrent(t *testing.T) {
	s := hectest.NewServer(t, hectest.Options{Token: token, AckEnabled: true})
	const workers, requests, per = 8, 25, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch := fmt.Sprintf("%08x-0000-0000-0000-000000000000", w)
			for range requests {
				req, _ := http.NewRequest(http.MethodPost, s.URL()+hectest.PathEvent, bytes.NewReader(events(per)))
				req.Header.Set("Authorization", "Splunk "+token)
				req.Header.Set(hectest.ChannelHeader, ch)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		}()
	}
	go func() { // readers race with writers
		for range 20 {
			s.Events()
			s.Stats()
			s.Requests()
		}
	}()
	wg.Wait()
	if n := s.EventCount(); n != workers*requests*per {
		t.Errorf("recorded %d events, want %d", n, workers*requests*per)
	}
}

func TestNew_BadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts hectest.Options
	}{
		{"no token", hectest.Options{}},
		{"negative limit", hectest.Options{Token: "t", MaxContentLength: -1}},
		{"bad address", hectest.Options{Token: "t", Listen: "256.0.0.1:x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := hectest.New(tc.opts); err == nil {
				s.Close()
				t.Error("New succeeded")
			}
		})
	}
}

func TestServer_CloseIdempotent(t *testing.T) {
	s, err := hectest.New(hectest.Options{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	s.SetFault(hectest.Fault{Down: true})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s.SetFault(hectest.Fault{}) // must not listen again after Close
	if _, err := http.Get(s.URL() + hectest.PathHealth); err == nil {
		t.Error("server answers after Close")
	}
}

func BenchmarkServer_Events(b *testing.B) {
	for _, per := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", per), func(b *testing.B) {
			s := hectest.NewServer(b, hectest.Options{Token: token})
			body := events(per)
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req, _ := http.NewRequest(http.MethodPost, s.URL()+hectest.PathEvent, bytes.NewReader(body))
				req.Header.Set("Authorization", "Splunk "+token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if i%100 == 99 {
					s.Reset() // keep memory flat
				}
			}
			b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func TestServer_Consume(t *testing.T) {
	var (
		mu  sync.Mutex
		got []string
	)
	s := hectest.NewServer(t, hectest.Options{Token: token, AckEnabled: true, Consume: func(evs []hectest.Event) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			got = append(got, string(e.Event))
		}
	}})
	body := `{"event":"a"}{"event":{"n":2}}`
	hdr := map[string]string{hectest.ChannelHeader: channel}
	if status, r, raw := do(t, http.DefaultClient, s.URL(), call{body: []byte(body), gzip: true, headers: hdr}); status != 200 || r.AckID == nil {
		t.Fatalf("status %d %s", status, raw)
	}
	// A rejected event: the prefix before it is consumed, as it is recorded
	// without Consume.
	if status, _, raw := do(t, http.DefaultClient, s.URL(), call{body: []byte(`{"event":"c"}{"nope":1}`), headers: hdr}); status != 400 {
		t.Fatalf("status %d %s", status, raw)
	}
	mu.Lock()
	if want := []string{`"a"`, `{"n":2}`, `"c"`}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("consumed %q, want %q", got, want)
	}
	mu.Unlock()
	if evs := s.Events(); evs != nil {
		t.Errorf("Events kept %d events with Consume set", len(evs))
	}
	if n := s.EventCount(); n != 3 {
		t.Errorf("EventCount %d, want 3", n)
	}
	if st := s.Stats(); st.Events != 3 || st.Requests != 2 {
		t.Errorf("stats %+v", st)
	}
	if acks := ackQuery(t, s, channel, 0); !acks["0"] {
		t.Errorf("ack 0 not true with Consume: %v", acks)
	}
}
