package slstest

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// maxSkew is how far a request's date may be from the server clock.
const maxSkew = 15 * time.Minute

// authenticate verifies a request signed as the SDK signs it: v1
// ("LOG id:base64(hmac-sha1)") or v4 ("SLS4-HMAC-SHA256 Credential=id/date/
// region/sls/aliyun_v4_request,Signature=hex"). An x-acs-security-token is
// accepted with any configured AccessKey id.
func (s *Server) authenticate(r *http.Request, body []byte) *apiError {
	auth := r.Header.Get("Authorization")
	switch {
	case auth == "":
		return errf(http.StatusUnauthorized, codeUnauthorized, "the Authorization header is missing")
	case strings.HasPrefix(auth, "LOG "):
		return s.verifyV1(r, body, strings.TrimPrefix(auth, "LOG "))
	case strings.HasPrefix(auth, "SLS4-HMAC-SHA256 "):
		return s.verifyV4(r, body, strings.TrimPrefix(auth, "SLS4-HMAC-SHA256 "))
	default:
		return errf(http.StatusUnauthorized, codeUnauthorized, "unsupported Authorization scheme")
	}
}

func (s *Server) secret(id string) (string, *apiError) {
	sec, ok := s.opts.AccessKeys[id]
	if !ok {
		return "", errf(http.StatusUnauthorized, codeUnauthorized, "AccessKeyId not found: %s", id)
	}
	return sec, nil
}

func checkSkew(t time.Time, now time.Time) *apiError {
	if d := now.Sub(t); d > maxSkew || d < -maxSkew {
		return errf(http.StatusBadRequest, codeTimeTooSkewed, "request time %s is too far from server time %s", t.UTC().Format(time.RFC1123), now.UTC().Format(time.RFC1123))
	}
	return nil
}

func (s *Server) verifyV1(r *http.Request, body []byte, cred string) *apiError {
	id, sig, ok := strings.Cut(cred, ":")
	if !ok {
		return errf(http.StatusUnauthorized, codeUnauthorized, "malformed Authorization header")
	}
	secret, aerr := s.secret(id)
	if aerr != nil {
		return aerr
	}
	date := r.Header.Get("Date")
	t, err := time.Parse(time.RFC1123, date)
	if err != nil {
		return errf(http.StatusBadRequest, "InvalidDateFormat", "invalid Date header %q", date)
	}
	if aerr := checkSkew(t, time.Now()); aerr != nil {
		return aerr
	}
	md5hdr := r.Header.Get("Content-MD5")
	if len(body) > 0 && !strings.EqualFold(md5hdr, fmt.Sprintf("%X", md5.Sum(body))) {
		return errf(http.StatusBadRequest, "InvalidContentMD5", "Content-MD5 does not match the body")
	}
	var b strings.Builder
	b.WriteString(r.Method + "\n" + md5hdr + "\n" + r.Header.Get("Content-Type") + "\n" + date + "\n")
	b.WriteString(canonicalV1Headers(r.Header))
	b.WriteString("\n" + canonicalV1Resource(r.URL))
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(b.String()))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return errf(http.StatusUnauthorized, codeSignatureNotMatch, "signature %s not match", sig)
	}
	return nil
}

func canonicalV1Headers(h http.Header) string {
	var keys []string
	vals := map[string]string{}
	for k, v := range h {
		l := strings.ToLower(strings.TrimSpace(k))
		if strings.HasPrefix(l, "x-log-") || strings.HasPrefix(l, "x-acs-") {
			keys = append(keys, l)
			vals[l] = strings.TrimSpace(v[0])
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ":" + vals[k]
	}
	return strings.Join(parts, "\n")
}

func canonicalV1Resource(u *url.URL) string {
	res := u.EscapedPath()
	if u.RawQuery == "" {
		return res
	}
	q := u.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	res += "?"
	for i, k := range keys {
		if i > 0 {
			res += "&"
		}
		for _, v := range q[k] {
			res += k + "=" + v
		}
	}
	return res
}

func (s *Server) verifyV4(r *http.Request, body []byte, rest string) *apiError {
	var credential, sig string
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			credential = v
		case "Signature":
			sig = v
		}
	}
	scope := strings.Split(credential, "/")
	if len(scope) != 5 || scope[3] != "sls" || scope[4] != "aliyun_v4_request" || sig == "" {
		return errf(http.StatusUnauthorized, codeUnauthorized, "malformed v4 Authorization header")
	}
	id, date, region := scope[0], scope[1], scope[2]
	secret, aerr := s.secret(id)
	if aerr != nil {
		return aerr
	}
	dateTime := r.Header.Get("x-log-date")
	t, err := time.Parse("20060102T150405Z", dateTime)
	if err != nil || !strings.HasPrefix(dateTime, date) {
		return errf(http.StatusBadRequest, "InvalidDateFormat", "invalid x-log-date header %q", dateTime)
	}
	if aerr := checkSkew(t, time.Now()); aerr != nil {
		return aerr
	}
	payload := r.Header.Get("x-log-content-sha256")
	if payload == "" {
		return errf(http.StatusUnauthorized, codeUnauthorized, "x-log-content-sha256 header is missing")
	}
	if len(body) > 0 && payload != emptySHA256 && payload != fmt.Sprintf("%x", sha256.Sum256(body)) {
		return errf(http.StatusBadRequest, codeSignatureNotMatch, "x-log-content-sha256 does not match the body")
	}
	canon := canonicalV4Request(r, payload)
	scopeStr := date + "/" + region + "/sls/aliyun_v4_request"
	toSign := "SLS4-HMAC-SHA256\n" + dateTime + "\n" + scopeStr + "\n" + fmt.Sprintf("%x", sha256.Sum256([]byte(canon)))
	key := []byte("aliyun_v4" + secret)
	for _, m := range []string{date, region, "sls", "aliyun_v4_request"} {
		key = hmacSHA256(key, m)
	}
	want := hex.EncodeToString(hmacSHA256(key, toSign))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return errf(http.StatusUnauthorized, codeSignatureNotMatch, "signature %s not match", sig)
	}
	return nil
}

const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func canonicalV4Request(r *http.Request, payload string) string {
	headers := map[string]string{"host": r.Host}
	for k, v := range r.Header {
		l := strings.ToLower(k)
		if strings.HasPrefix(l, "x-log-meta-") {
			continue
		}
		if strings.HasPrefix(l, "x-log-") || strings.HasPrefix(l, "x-acs-") || l == "content-type" {
			headers[l] = v[0]
		}
	}
	keys := make([]string, 0, len(headers))
	for k := range headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var canonHeaders strings.Builder
	for _, k := range keys {
		canonHeaders.WriteString(k + ":" + headers[k] + "\n")
	}
	q := r.URL.Query()
	qkeys := make([]string, 0, len(q))
	for k := range q {
		qkeys = append(qkeys, k)
	}
	sort.Strings(qkeys)
	var params strings.Builder
	for i, k := range qkeys {
		if i > 0 {
			params.WriteByte('&')
		}
		params.WriteString(k)
		if v := strings.ReplaceAll(url.QueryEscape(q.Get(k)), "+", "%20"); v != "" {
			params.WriteString("=" + v)
		}
	}
	return r.Method + "\n" + r.URL.EscapedPath() + "\n" + params.String() + "\n" +
		canonHeaders.String() + "\n" + strings.Join(keys, ";") + "\n" + payload
}
