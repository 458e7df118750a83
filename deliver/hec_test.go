package deliver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver"
	"slsrelay/deliver/hectest"
)

const testToken = "00000000-1111-2222-3333-444444444444"

func itoa(i int) string { return strconv.Itoa(i) }

// eventN extracts the "n" field of a recorded HEC event.
func eventN(t testing.TB, e hectest.Event) string {
	var obj map[string]string
	if err := json.Unmarshal(e.Event, &obj); err != nil {
		t.Fatalf("event %s: %v", e.Event, err)
	}
	return obj["n"]
}

func hecHarness(t *testing.T, so hectest.Options, o deliver.HECOptions) (*hectest.Server, *deliver.HEC, *sinkHarness) {
	if so.Token == "" {
		so.Token = testToken
	}
	srv := hectest.NewServer(t, so)
	o.URL = srv.URL()
	if o.Token == "" && o.TokenFile == "" {
		o.Token = testToken
	}
	if o.Logger == nil {
		o.Logger = testLogger(t, nil)
	}
	if o.Retry == (deliver.RetryPolicy{}) {
		o.Retry = fastRetry
	}
	if o.AckPollInterval == 0 {
		o.AckPollInterval = 10 * time.Millisecond
	}
	h, err := deliver.NewHEC(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return srv, h, &sinkHarness{
		sink: h,
		received: func() []string {
			var out []string
			for _, e := range srv.Events() {
				out = append(out, eventN(t, e))
			}
			return out
		},
		attempts: func() int { return srv.Stats().Requests },
		fail: func(k deliver.ErrorKind) {
			switch k {
			case deliver.Transient:
				srv.SetFault(hectest.Fault{Status: 503, Code: hectest.CodeServerBusy})
			case deliver.Config:
				srv.SetFault(hectest.Fault{TokenDisabled: true})
			}
		},
		reject: func(n string) {
			srv.SetFault(hectest.Fault{RejectEvent: func(ev hectest.Event) (int, int, string, bool) {
				return 400, hectest.CodeInvalidDataFormat, "", eventN(t, ev) == n
			}})
		},
		heal: func() { srv.SetFault(hectest.Fault{}) },
		hold: func(b bool) {
			if so.AckEnabled {
				srv.SetFault(hectest.Fault{WithholdAcks: b})
			}
		},
	}
}

func TestHEC_Conformance(t *testing.T) {
	caFile, serverTLS := testCA(t)
	for _, tc := range []struct {
		name string
		so   hectest.Options
		o    deliver.HECOptions
	}{
		{"ack off gzip on", hectest.Options{}, deliver.HECOptions{}},
		{"ack off gzip off", hectest.Options{}, deliver.HECOptions{DisableGzip: true}},
		{"ack on gzip on", hectest.Options{AckEnabled: true}, deliver.HECOptions{AckEnabled: true}},
		{"ack on gzip off small requests", hectest.Options{AckEnabled: true}, deliver.HECOptions{AckEnabled: true, DisableGzip: true, MaxRequestBytes: 1200}},
		{"TLS with test CA, ack on", hectest.Options{AckEnabled: true, TLS: serverTLS}, deliver.HECOptions{AckEnabled: true, CAFile: caFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testSinkConformance(t, func(t *testing.T) *sinkHarness {
				_, _, h := hecHarness(t, tc.so, tc.o)
				if !tc.so.AckEnabled {
					h.hold = nil
				}
				return h
			})
		})
	}
}

// testCA writes a fresh CA to a temp file and returns it with a server TLS
// config for 127.0.0.1 signed by it.
func testCA(t *testing.T) (caFile string, cfg *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "slsrelay test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "hec"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}}}
}

func TestHEC_TLSUntrustedIsConfig(t *testing.T) {
	_, serverTLS := testCA(t)
	_, h, _ := hecHarness(t, hectest.Options{TLS: serverTLS}, deliver.HECOptions{})
	err := h.Send(context.Background(), batchOf(t, 1, 0, 1))
	if deliver.KindOf(err) != deliver.Config {
		t.Fatalf("got %v, want Config (unknown authority)", err)
	}
}

func TestHEC_SplitsRequestsUnderMaxRequestBytes(t *testing.T) {
	srv, h, hh := hecHarness(t, hectest.Options{}, deliver.HECOptions{MaxRequestBytes: 2000, Concurrency: 4})
	if err := h.Send(context.Background(), batchOf(t, 1, 0, 100)); err != nil {
		t.Fatal(err)
	}
	got := numericOrder(hh.received()) // pipelined: any order, each event once
	if strings.Join(got, ",") != seqString(0, 100) {
		t.Errorf("received %s", got)
	}
	reqs := srv.Requests()
	if len(reqs) < 10 {
		t.Errorf("%d requests, want the batch split", len(reqs))
	}
	for _, r := range reqs {
		if r.BodyBytes > 2000 || !r.Gzip {
			t.Errorf("request %d: %d bytes gzip=%v", r.ID, r.BodyBytes, r.Gzip)
		}
	}
}

func TestHEC_413SplitsAndDeadLettersOversizedEvent(t *testing.T) {
	srv, h, hh := hecHarness(t, hectest.Options{MaxContentLength: 4000}, deliver.HECOptions{DisableGzip: true})
	g := numbered(0, 40)
	g.logs[17].kv = append(g.logs[17].kv, "blob", strings.Repeat("x", 5000))
	q := newFakeQueue(record(t, 1, g))
	l := deliver.NewLoop(q, h, deliver.LoopOptions{Logger: testLogger(t, nil), Retry: fastRetry})
	runLoop(t, l)
	waitFor(t, "ack", func() bool { return len(q.Acked()) == 1 })
	want := strings.Replace(seqString(0, 40), ",17,", ",", 1)
	if got := strings.Join(hh.received(), ","); got != want {
		t.Errorf("received %s\nwant     %s", got, want)
	}
	d := q.Dead()
	if len(d) != 1 || !strings.Contains(d[0].reason, "413") {
		t.Fatalf("dead letters %+v", d)
	}
	if evs, _ := deliver.Decode(d[0].rec); len(evs) != 1 || fieldN(evs[0]) != "17" {
		t.Errorf("dead letter holds %v", evs)
	}
	if srv.Stats().ByStatus[413] == 0 {
		t.Error("receiver never answered 413")
	}
}

func TestHEC_AckTimeoutResends(t *testing.T) {
	srv, h, _ := hecHarness(t, hectest.Options{AckEnabled: true},
		deliver.HECOptions{AckEnabled: true, AckTimeout: 100 * time.Millisecond})
	srv.SetFault(hectest.Fault{LoseAcks: true})
	done := make(chan error, 1)
	go func() { done <- h.Send(context.Background(), batchOf(t, 1, 0, 3)) }()
	waitFor(t, "a resend", func() bool { return srv.Stats().Requests >= 2 })
	srv.SetFault(hectest.Fault{})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	evs := srv.Events()
	if len(evs) < 6 || !evs[len(evs)-1].Acked {
		t.Errorf("%d events recorded, last acked=%v; want the batch sent again and acked", len(evs), evs[len(evs)-1].Acked)
	}
}

// TestHEC_AckWaitsDoNotBlockPosts: with acks, requests waiting for their
// acks let the next ones POST, up to 4 (ackWindow) times Concurrency begun
// at once; once acks come, every event is confirmed exactly once.
func TestHEC_AckWaitsDoNotBlockPosts(t *testing.T) {
	srv, h, hh := hecHarness(t, hectest.Options{AckEnabled: true},
		deliver.HECOptions{AckEnabled: true, Concurrency: 2, MaxRequestBytes: 2000, AckPollInterval: 20 * time.Millisecond})
	srv.SetFault(hectest.Fault{WithholdAcks: true})
	done := make(chan error, 1)
	go func() { done <- h.Send(context.Background(), batchOf(t, 1, 0, 200)) }()
	waitFor(t, "8 requests posted while no ack comes", func() bool { return srv.Stats().Requests >= 8 })
	time.Sleep(200 * time.Millisecond) // ten polls: no more requests begin
	if n := srv.Stats().Requests; n != 8 {
		t.Errorf("%d requests posted while acks were withheld, want 4x Concurrency = 8", n)
	}
	srv.SetFault(hectest.Fault{})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := numericOrder(hh.received()); strings.Join(got, ",") != seqString(0, 200) {
		t.Errorf("received %s", got)
	}
	for _, e := range srv.Events() {
		if !e.Acked {
			t.Fatalf("event %s not acked", eventN(t, e))
		}
	}
}

// TestHEC_AnswerWakesBackedOffRequests: requests backing off from an
// outage (here for a minute) try again as soon as another request of the
// sink gets an answer, instead of sleeping out their backoff.
func TestHEC_AnswerWakesBackedOffRequests(t *testing.T) {
	srv, h, hh := hecHarness(t, hectest.Options{},
		deliver.HECOptions{Concurrency: 4, MaxRequestBytes: 2000, Retry: deliver.RetryPolicy{Min: time.Minute, Max: time.Minute}})
	srv.SetFault(hectest.Fault{Status: 503, Code: hectest.CodeServerBusy})
	done := make(chan error, 1)
	go func() { done <- h.Send(context.Background(), batchOf(t, 1, 0, 100)) }()
	waitFor(t, "4 requests refused", func() bool { return srv.Stats().ByStatus[503] >= 4 })
	srv.SetFault(hectest.Fault{})
	start := time.Now()
	if err := h.Send(context.Background(), batchOf(t, 2, 100, 1)); err != nil { // answered: wakes the others
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("backed-off batch delivered %v after the SIEM answered", time.Since(start).Round(time.Millisecond))
	case <-time.After(20 * time.Second): // each backoff is 30-60 s
		t.Fatal("the backed-off requests slept out their backoff")
	}
	if got := numericOrder(hh.received()); strings.Join(got, ",") != seqString(0, 101) {
		t.Errorf("received %s", got)
	}
}

// TestLoop_HECTokenFileRecovery: a wrong token pauses the sink; rewriting
// the token file resumes it; no token ever reaches the logs.
func TestLoop_HECTokenFileRecovery(t *testing.T) {
	tokFile := filepath.Join(t.TempDir(), "token")
	const wrong = "99999999-8888-7777-6666-555555555555"
	if err := os.WriteFile(tokFile, []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	srv, h, hh := hecHarness(t, hectest.Options{AckEnabled: true},
		deliver.HECOptions{TokenFile: tokFile, AckEnabled: true, Logger: testLogger(t, &logs)})
	q := newFakeQueue(record(t, 1, numbered(0, 3)), record(t, 2, numbered(3, 2)))
	l := deliver.NewLoop(q, h, deliver.LoopOptions{Logger: testLogger(t, &logs), Retry: fastRetry})
	runLoop(t, l)
	waitFor(t, "pause", func() bool { return l.Stats().Paused && srv.Stats().Requests >= 2 })
	if len(q.Acked()) != 0 || srv.EventCount() != 0 {
		t.Fatal("data moved with a wrong token")
	}
	// Replace the file atomically, as operators should: a rewrite in place
	// can be read half-done (empty), which is a config error of its own.
	tmp := tokFile + ".new"
	if err := os.WriteFile(tmp, []byte(testToken), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour)
	_ = os.Chtimes(tmp, future, future) // a new mtime even on coarse clocks
	if err := os.Rename(tmp, tokFile); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "acks", func() bool { return len(q.Acked()) == 2 })
	if got := strings.Join(hh.received(), ","); got != "0,1,2,3,4" {
		t.Errorf("received %s", got)
	}
	st := l.Stats()
	if st.Paused || !strings.Contains(st.LastError, "403") {
		t.Errorf("stats %+v", st)
	}
	for _, secret := range []string{testToken, wrong} {
		if strings.Contains(logs.String(), secret) || strings.Contains(st.LastError, secret) {
			t.Errorf("a token leaked into logs or stats")
		}
	}
	if !strings.Contains(logs.String(), "sink paused") || !strings.Contains(logs.String(), "sink resumed") {
		t.Errorf("logs:\n%s", logs.String())
	}
}

func TestLoop_HEC503WindowThenRecovery(t *testing.T) {
	srv, h, hh := hecHarness(t, hectest.Options{AckEnabled: true}, deliver.HECOptions{AckEnabled: true})
	srv.SetFault(hectest.Fault{Status: 503, Code: hectest.CodeServerBusy})
	q := newFakeQueue(record(t, 1, numbered(0, 10)))
	l := deliver.NewLoop(q, h, deliver.LoopOptions{Logger: testLogger(t, nil), Retry: fastRetry})
	runLoop(t, l)
	waitFor(t, "retries", func() bool { return l.Stats().TransportRetries >= 5 })
	if len(q.Acked()) != 0 {
		t.Fatal("acked during the outage")
	}
	srv.SetFault(hectest.Fault{})
	waitFor(t, "ack", func() bool { return len(q.Acked()) == 1 })
	if got := strings.Join(hh.received(), ","); got != seqString(0, 10) {
		t.Errorf("received %s", got)
	}
	if st := l.Stats(); st.Paused || len(q.Dead()) != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestHEC_SecretsStaySecret(t *testing.T) {
	var logs syncBuffer
	o := deliver.HECOptions{URL: "http://127.0.0.1:1", Token: testToken, Logger: testLogger(t, &logs)}
	js, _ := json.Marshal(o)
	for name, s := range map[string]string{
		"%v": fmt.Sprintf("%v", o), "%+v": fmt.Sprintf("%+v", o), "%#v": fmt.Sprintf("%#v", o),
		"%s": fmt.Sprintf("%s", o.Token), "%q": fmt.Sprintf("%q", o.Token), "%x": fmt.Sprintf("%x", o.Token), "json": string(js),
	} {
		if strings.Contains(s, testToken) || strings.Contains(s, "3333") {
			t.Errorf("%s shows the token: %s", name, s)
		}
	}
	o.Logger.Info("options", "token", o.Token, "opts", o)
	if strings.Contains(logs.String(), testToken) {
		t.Errorf("slog shows the token: %s", logs.String())
	}
	// An error answer carries no token either.
	_, h, _ := hecHarness(t, hectest.Options{}, deliver.HECOptions{Token: "wrong-token-value"})
	err := h.Send(context.Background(), batchOf(t, 1, 0, 1))
	if err == nil || strings.Contains(err.Error(), "wrong-token-value") {
		t.Errorf("err %v", err)
	}
}

func TestNewHEC_Errors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		o    deliver.HECOptions
		want string
	}{
		{"no URL", deliver.HECOptions{Token: "t"}, "URL"},
		{"bad scheme", deliver.HECOptions{URL: "ftp://x", Token: "t"}, "URL"},
		{"credentials in URL", deliver.HECOptions{URL: "https://u:secretpw@x", Token: "t"}, "credentials"},
		{"no token", deliver.HECOptions{URL: "https://x"}, "Token"},
		{"both tokens", deliver.HECOptions{URL: "https://x", Token: "t", TokenFile: "f"}, "not both"},
		{"missing token file", deliver.HECOptions{URL: "https://x", TokenFile: filepath.Join(dir, "nope")}, "token file"},
		{"bad template", deliver.HECOptions{URL: "https://x", Token: "t", Index: "{{nope}}"}, "Index"},
		{"cert without key", deliver.HECOptions{URL: "https://x", Token: "t", CertFile: "c"}, "KeyFile"},
		{"missing CA", deliver.HECOptions{URL: "https://x", Token: "t", CAFile: filepath.Join(dir, "ca")}, "CAFile"},
		{"gzip level", deliver.HECOptions{URL: "https://x", Token: "t", GzipLevel: 12}, "GzipLevel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := deliver.NewHEC(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want error mentioning %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "secretpw") {
				t.Errorf("error shows a password: %v", err)
			}
		})
	}
}
