package deliver_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver"
	"slsrelay/deliver/hectest"
	"slsrelay/deliver/syslogtest"
)

// mutualTLS is a HEC receiver's TLS configuration that demands a client
// certificate signed by the test CA.
func mutualTLS(t *testing.T, c *syslogtest.Certs) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA in " + c.CAFile)
	}
	srv := c.Server.Clone()
	srv.ClientAuth = tls.RequireAndVerifyClientCert
	srv.ClientCAs = pool
	return srv
}

// TestHEC_MutualTLS: a receiver that requires a client certificate accepts
// the sink configured with CertFile/KeyFile, and every event arrives; without
// the certificate the handshake fails and the send is not reported as done.
func TestHEC_MutualTLS(t *testing.T) {
	certs := syslogtest.NewCerts(t, t.TempDir())
	srv, h, hh := hecHarness(t, hectest.Options{TLS: mutualTLS(t, certs)},
		deliver.HECOptions{CAFile: certs.CAFile, CertFile: certs.ClientCert, KeyFile: certs.ClientKey})
	if err := h.Send(context.Background(), batchOf(t, 1, 0, 50)); err != nil {
		t.Fatalf("send with a client certificate: %v", err)
	}
	if got := strings.Join(numericOrder(hh.received()), ","); got != seqString(0, 50) {
		t.Errorf("received %s", got)
	}
	if n := len(srv.Requests()); n == 0 {
		t.Error("the receiver saw no request")
	}

	// The same receiver, a sink without a client certificate.
	noCert, err := deliver.NewHEC(deliver.HECOptions{URL: srv.URL(), Token: testToken, CAFile: certs.CAFile,
		Retry: fastRetry, Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer noCert.Close()
	before := len(srv.Events())
	// A refused handshake is retried (the certificate may be fixed or
	// rotated); the send ends only with its context.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = noCert.Send(ctx, batchOf(t, 2, 100, 5))
	if err == nil {
		t.Fatal("send without a client certificate succeeded")
	}
	if k := deliver.KindOf(err); k == deliver.Permanent {
		t.Errorf("a missing client certificate is %v (%v): the data would be dead-lettered", k, err)
	}
	if len(srv.Events()) != before {
		t.Error("events arrived without a client certificate")
	}
}

// TestHEC_InsecureSkipVerifyWarns: verification switched off explicitly lets
// the sink talk to a receiver with an untrusted certificate, and says so in
// the log, once, at construction.
func TestHEC_InsecureSkipVerifyWarns(t *testing.T) {
	certs := syslogtest.NewCerts(t, t.TempDir())
	var logs syncBuffer
	_, h, hh := hecHarness(t, hectest.Options{TLS: certs.Server},
		deliver.HECOptions{InsecureSkipVerify: true, Logger: testLogger(t, &logs)})
	if err := h.Send(context.Background(), batchOf(t, 1, 0, 10)); err != nil {
		t.Fatalf("send with verification disabled: %v", err)
	}
	if got := strings.Join(numericOrder(hh.received()), ","); got != seqString(0, 10) {
		t.Errorf("received %s", got)
	}
	out := logs.String()
	if n := strings.Count(out, "verification is disabled"); n != 1 {
		t.Errorf("want one warning that verification is disabled, got %d in:\n%s", n, out)
	}
	if !strings.Contains(out, "level=WARN") {
		t.Errorf("the warning is not at WARN level:\n%s", out)
	}
}

// numericOrder sorts event numbers as numbers (the sink pipelines requests).
func numericOrder(s []string) []string {
	slices.SortFunc(s, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
	return s
}
