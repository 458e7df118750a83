package ingest

import (
	"net"
	"net/http"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/ingest/slstest"
)

// sdkClient is the unmodified SDK pointed at endpoint, with the SDK's own
// retries bounded short so an answerless request returns quickly.
func sdkClient(endpoint, secret string, hc *http.Client) *sls.Client {
	c := sls.CreateNormalInterface(endpoint, slstest.DefaultAKID, secret, "").(*sls.Client)
	c.SetHTTPClient(hc)
	c.SetRetryTimeout(300 * time.Millisecond)
	return c
}

// refusedAddr is a loopback address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Each class is what the SDK really returns for that failure: the worker's
// requests are the SDK's (a read, ListShards, which the SDK retries, and a
// write, HeartBeat), against the emulator with faults or a closed port.
func TestClassify_SDKErrors(t *testing.T) {
	srv := slstest.NewServer(t, slstest.Options{})
	ok := sdkClient(srv.Endpoint(), slstest.DefaultAKSecret, srv.HTTPClient())
	if _, err := ok.ListShards(slstest.DefaultProject, slstest.DefaultLogstore); err != nil {
		t.Fatalf("healthy emulator: %v", err)
	}
	calls := map[string]func(c *sls.Client) error{
		"read": func(c *sls.Client) error {
			_, err := c.ListShards(slstest.DefaultProject, slstest.DefaultLogstore)
			return err
		},
		"write": func(c *sls.Client) error {
			_, err := c.HeartBeat(slstest.DefaultProject, slstest.DefaultLogstore, "no-such-group", "c1", nil)
			return err
		},
	}
	cases := []struct {
		name   string
		want   string
		client func(t *testing.T) *sls.Client
		faults slstest.Faults
	}{
		{name: "refused", want: "unreachable", client: func(t *testing.T) *sls.Client {
			return sdkClient(refusedAddr(t), slstest.DefaultAKSecret, &http.Client{Timeout: 5 * time.Second})
		}},
		{name: "timeout", want: "unreachable", client: func(t *testing.T) *sls.Client {
			hc := srv.HTTPClient()
			hc = &http.Client{Transport: hc.Transport, Timeout: 50 * time.Millisecond}
			return sdkClient(srv.Endpoint(), slstest.DefaultAKSecret, hc)
		}, faults: slstest.Faults{Latency: 2 * time.Second}},
		{name: "reset", want: "unreachable", faults: slstest.Faults{Fail: map[slstest.FailMode]float64{slstest.FailReset: 1}}},
		{name: "wrong secret", want: "auth", client: func(t *testing.T) *sls.Client {
			return sdkClient(srv.Endpoint(), "not-the-secret", srv.HTTPClient())
		}},
		{name: "quota 403", want: "throttled", faults: slstest.Faults{Fail: map[slstest.FailMode]float64{slstest.Fail403: 1}}},
		{name: "500", want: "server", faults: slstest.Faults{Fail: map[slstest.FailMode]float64{slstest.Fail500: 1}}},
		{name: "503", want: "server", faults: slstest.Faults{Fail: map[slstest.FailMode]float64{slstest.Fail503: 1}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			if tc.client != nil {
				c = tc.client(t)
			}
			srv.SetFaults("", "", tc.faults)
			defer srv.SetFaults("", "", slstest.Faults{})
			for kind, call := range calls {
				err := call(c)
				if err == nil {
					t.Fatalf("%s: no error", kind)
				}
				if got := classify(err, DefaultGapCodes); got != tc.want {
					t.Errorf("%s: class %q, want %q; error: %v", kind, got, tc.want, err)
				}
			}
		})
	}
}

// Answers the emulator does not make, in the shapes the SDK builds them.
func TestClassify_Answers(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{&sls.Error{HTTPCode: 429, Code: "ReadQuotaExceed"}, "throttled"},
		{&sls.Error{HTTPCode: 403, Code: "ProjectQuotaExceed"}, "throttled"},
		{&sls.Error{HTTPCode: 401, Code: "Unauthorized"}, "auth"},
		{&sls.Error{HTTPCode: 403, Code: "SignatureNotMatch"}, "auth"},
		{&sls.Error{HTTPCode: 401, Code: "InvalidAccessKeyId"}, "auth"},
		{&sls.Error{HTTPCode: 502, Code: "BadGateway"}, "server"},
		{&sls.Error{HTTPCode: 400, Code: "InvalidCursor"}, "cursor_expired"},
		{&sls.Error{HTTPCode: 400, Code: "ParameterInvalid"}, "other"},
		{&sls.BadResponseError{HTTPCode: 429}, "throttled"},
		{&sls.BadResponseError{HTTPCode: 504}, "server"},
		{&sls.BadResponseError{HTTPCode: 403}, "auth"},
		// The SDK's client-side errors (httpCode -1) carry only text.
		{sls.NewClientError(&net.DNSError{Err: "no such host", Name: "p.example.invalid", IsNotFound: true}), "unreachable"},
		{sls.NewClientError(errTLS{}), "unreachable"},
		{sls.NewClientError(errText("Can't find 'x-log-bodyrawsize' header")), "other"},
	}
	for _, tc := range cases {
		if got := classify(tc.err, DefaultGapCodes); got != tc.want {
			t.Errorf("%v: class %q, want %q", tc.err, got, tc.want)
		}
	}
}

type errText string

func (e errText) Error() string { return string(e) }

type errTLS struct{}

func (errTLS) Error() string {
	return `Get "https://p.example.com/logstores": tls: failed to verify certificate: x509: certificate signed by unknown authority`
}
