package hectest_test

import (
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"

	"slsrelay/deliver/hectest"
)

// TestStickyProxy: without a cookie the event and ack paths go to
// different receivers; the answer sets the cookie, and a client keeping it
// stays on the receiver of its first request.
func TestStickyProxy(t *testing.T) {
	a := hectest.NewServer(t, hectest.Options{Token: token, AckEnabled: true})
	b := hectest.NewServer(t, hectest.Options{Token: token, AckEnabled: true})
	lb := hectest.NewStickyProxy(t, a, b)
	post := func(c *http.Client, path, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, lb.URL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Splunk "+token)
		req.Header.Set(hectest.ChannelHeader, channel)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	plain := &http.Client{}
	post(plain, hectest.PathEvent, `{"event":"x"}`)
	post(plain, hectest.PathAck, `{"acks":[0]}`)
	if per, byCookie := lb.Served(); per[0] != 1 || per[1] != 1 || byCookie != 0 {
		t.Fatalf("without cookies: per receiver %v, by cookie %d; want one each, none by cookie", per, byCookie)
	}
	jar, _ := cookiejar.New(nil)
	sticky := &http.Client{Jar: jar}
	resp := post(sticky, hectest.PathEvent, `{"event":"y"}`)
	if resp.Header.Get("Set-Cookie") == "" {
		t.Fatal("no cookie set")
	}
	post(sticky, hectest.PathAck, `{"acks":[1]}`)
	post(sticky, hectest.PathEvent, `{"event":"z"}`)
	per, byCookie := lb.Served()
	if byCookie != 2 {
		t.Errorf("with a cookie: per receiver %v, by cookie %d; want the ack poll and the second event by cookie", per, byCookie)
	}
	// Every event request went where the event path hashes: one receiver
	// took all three, and the sticky client's ack poll followed them.
	if ea, eb := a.Stats().Requests, b.Stats().Requests; ea*eb != 0 || ea+eb != 3 {
		t.Errorf("event requests %d/%d: want all three on one receiver", ea, eb)
	}
	if qa, qb := a.Stats().AckQueries, b.Stats().AckQueries; qa != 1 || qb != 1 {
		t.Errorf("ack queries %d/%d: want the plain one on one receiver and the sticky one on the other", qa, qb)
	}
}
