package slstest_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/ingest/slstest"
)

func TestServer_Authenticate(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{AccessKeys: map[string]string{"ak1": "secret1", "ak2": "secret2"}})
	client := func(id, secret, token string, v4 bool) *sls.Client {
		c := sls.CreateNormalInterface(s.Endpoint(), id, secret, token).(*sls.Client)
		c.SetHTTPClient(s.HTTPClient())
		if v4 {
			c.SetAuthVersion(sls.AuthV4)
			c.SetRegion("cn-hangzhou")
		}
		return c
	}
	call := func(c *sls.Client) error {
		if _, err := c.ListShards(project, logstore); err != nil {
			return err
		}
		// a call with a body and a query string
		return c.PostLogStoreLogs(project, logstore, slstest.NewGenerator(slstest.KindOdd, 1).LogGroup(6), nil)
	}
	for _, tc := range []struct {
		name   string
		c      *sls.Client
		status int32
		code   string
	}{
		{"v1", client("ak1", "secret1", "", false), 0, ""},
		{"v4", client("ak2", "secret2", "", true), 0, ""},
		{"sts token", client("ak1", "secret1", "CAIS-sts-token", false), 0, ""},
		{"v1 wrong secret", client("ak1", "secret2", "", false), 401, "SignatureNotMatch"},
		{"v4 wrong secret", client("ak1", "nope", "", true), 401, "SignatureNotMatch"},
		{"unknown id", client("ak9", "secret1", "", false), 401, "Unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := call(tc.c)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			var se *sls.Error
			if !errors.As(err, &se) || se.HTTPCode != tc.status || se.Code != tc.code {
				t.Fatalf("err = %v, want %d %s", err, tc.status, tc.code)
			}
		})
	}
	t.Run("no signature", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+project+"."+s.Endpoint()+"/logstores/"+logstore+"/shards", nil)
		resp, err := s.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var body struct{ ErrorCode, ErrorMessage string }
		if err := json.Unmarshal(b, &body); err != nil || resp.StatusCode != 401 || body.ErrorCode != "Unauthorized" || resp.Header.Get("x-log-requestid") == "" {
			t.Fatalf("got %d %s (%v)", resp.StatusCode, b, err)
		}
	})
}
