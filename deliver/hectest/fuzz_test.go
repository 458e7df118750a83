package hectest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"slsrelay/deliver/hectest"
)

// FuzzServer_Events feeds arbitrary bodies to the event endpoint: the
// receiver must never panic, must answer 200, 400 or 413 with HEC JSON
// (413 excepted), and on 400 must keep exactly the events before
// invalid-event-number.
func FuzzServer_Events(f *testing.F) {
	for _, seed := range []string{
		`{"event":"a"}`,
		`{"time":1714567040.123,"host":"h","event":{"k":"v"},"fields":{"a":["b",1]}}{"event":"b"}`,
		`{"event":""}`, `{"event":"x",}`, `[{"event":"x"}]`, `{"time":"x","event":1}`,
		`{"event":"x","fields":{"a":{"b":1}}}`, `{"event":"x","index":"nope"}`, "",
	} {
		f.Add([]byte(seed))
	}
	s, err := hectest.New(hectest.Options{Token: token, Indexes: []string{"main"}, MaxContentLength: 1 << 16})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, body []byte) {
		before := s.EventCount()
		req := httptest.NewRequest(http.MethodPost, hectest.PathEvent, bytes.NewReader(body))
		req.Header.Set("Authorization", "Splunk "+token)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		kept := s.EventCount() - before
		var r reply
		switch rec.Code {
		case 413:
			if kept != 0 {
				t.Fatalf("413 kept %d events", kept)
			}
			return
		case 200, 400:
			if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
				t.Fatalf("answer %q: %v", rec.Body, err)
			}
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		if rec.Code == 400 && r.InvalidEvent != nil && *r.InvalidEvent != kept {
			t.Fatalf("invalid-event-number %d but %d events kept", *r.InvalidEvent, kept)
		}
		if rec.Code == 200 && (r.Code != 0 || kept == 0) {
			t.Fatalf("200 %+v with %d events kept", r, kept)
		}
	})
}
