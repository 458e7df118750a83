package slstest

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// request is one parsed API call.
type request struct {
	r        *http.Request
	w        http.ResponseWriter
	id       string
	project  string
	logstore string
	parts    []string // path segments
	body     []byte
	faults   *faultScope
	fail     FailMode
	write    bool // the call changes data (PutLogs)
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.stats.requests.Add(1)
	rq := &request{r: r, w: w, id: s.requestID(), project: s.projectFromHost(r.Host)}
	path := strings.Trim(r.URL.Path, "/")
	if path != "" {
		rq.parts = strings.Split(path, "/")
	}
	if len(rq.parts) >= 2 && rq.parts[0] == "logstores" {
		rq.logstore = rq.parts[1]
	}
	if r.Method == http.MethodGet && len(rq.parts) == 4 && rq.parts[0] == "logstores" && rq.parts[2] == "shards" {
		s.noteReader(rq.project, rq.logstore, r.UserAgent())
	}
	w.Header().Set("x-log-requestid", rq.id)
	w.Header().Set("Server", "slstest")

	rq.faults = s.faultsFor(rq.project, rq.logstore)
	if sc := rq.faults; sc != nil {
		if sc.f.Unreachable {
			hijackClose(w)
			return
		}
		if sc.f.Latency > 0 {
			t := time.NewTimer(sc.f.Latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		rq.fail = sc.roll()
	}
	body, err := readBody(r)
	if err != nil {
		s.writeError(rq, toAPIError(err, ""))
		return
	}
	rq.body = body
	rq.write = r.Method == http.MethodPost && len(rq.parts) >= 2 && rq.parts[0] == "logstores" &&
		(len(rq.parts) == 2 || (len(rq.parts) == 4 && rq.parts[2] == "shards" && rq.parts[3] == "route"))
	// A garbled or truncated answer still carries a 2xx status line: the
	// server did the work and only the answer is damaged on the way back.
	// So a call that changes state is carried out before its answer is.
	damaged := (rq.fail == FailGarbage || rq.fail == FailTruncated) && r.Method != http.MethodGet
	if rq.fail != "" && !damaged {
		s.stats.faults.Add(1)
		s.injectFailure(rq)
		return
	}
	if aerr := s.authenticate(r, body); aerr != nil {
		s.stats.authFailures.Add(1)
		s.log.Debug("auth failed", "code", aerr.code, "path", r.URL.Path)
		s.writeError(rq, aerr)
		return
	}
	if rq.project == "" {
		s.writeError(rq, errf(http.StatusBadRequest, codeNotSupported, "slstest: calls without a project in the Host header are not emulated (%s %s)", r.Method, r.URL.Path))
		return
	}
	if damaged {
		w, fail := rq.w, rq.fail
		rq.w, rq.fail = discardWriter{http.Header{}}, ""
		s.route(rq)
		rq.w, rq.fail = w, fail
		s.stats.faults.Add(1)
		s.injectFailure(rq)
		return
	}
	s.route(rq)
}

// discardWriter swallows an answer whose delivery a fault damages.
type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d discardWriter) WriteHeader(int)             {}

// route dispatches an authenticated request.
func (s *Server) route(rq *request) {
	m, p, q := rq.r.Method, rq.parts, rq.r.URL.Query()
	switch {
	case len(p) == 0 && m == http.MethodGet:
		s.getProject(rq)
	case len(p) == 1 && p[0] == "logstores" && m == http.MethodGet:
		s.listLogstores(rq)
	case len(p) == 1 && p[0] == "logstores" && m == http.MethodPost:
		s.createLogstore(rq)
	case len(p) == 2 && p[0] == "logstores" && m == http.MethodGet && q.Get("type") == "":
		s.getLogstore(rq)
	case len(p) == 2 && p[0] == "logstores" && m == http.MethodDelete:
		s.deleteLogstore(rq)
	case len(p) == 2 && p[0] == "logstores" && m == http.MethodPost:
		s.putLogs(rq, "")
	case len(p) == 3 && p[0] == "logstores" && p[2] == "shards" && m == http.MethodGet:
		s.listShards(rq)
	case len(p) == 4 && p[0] == "logstores" && p[2] == "shards" && p[3] == "route" && m == http.MethodPost:
		s.putLogs(rq, q.Get("key"))
	case len(p) == 4 && p[0] == "logstores" && p[2] == "shards" && m == http.MethodGet:
		s.shardGet(rq)
	case len(p) == 4 && p[0] == "logstores" && p[2] == "shards" && m == http.MethodPost:
		s.shardAction(rq)
	case len(p) == 3 && p[0] == "logstores" && p[2] == "consumergroups":
		s.consumerGroups(rq)
	case len(p) == 4 && p[0] == "logstores" && p[2] == "consumergroups":
		s.consumerGroup(rq)
	default:
		s.writeError(rq, errf(http.StatusBadRequest, codeNotSupported, "slstest does not emulate %s %s", m, rq.r.URL.Path))
	}
}

func (s *Server) writeError(rq *request, e *apiError) {
	h := rq.w.Header()
	h.Set("Content-Type", "application/json")
	rq.w.WriteHeader(e.status)
	b, _ := json.Marshal(map[string]string{"errorCode": e.code, "errorMessage": e.message})
	rq.w.Write(b)
}

func (s *Server) writeJSON(rq *request, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.writeError(rq, errf(http.StatusInternalServerError, codeInternal, "%v", err))
		return
	}
	h := rq.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("x-log-bodyrawsize", strconv.Itoa(len(b)))
	rq.w.WriteHeader(http.StatusOK)
	writeBody(rq.r.Context(), rq.w, b, rq.faults)
}

func (s *Server) writeOK(rq *request) {
	rq.w.Header().Set("Content-Length", "0")
	rq.w.WriteHeader(http.StatusOK)
}

// injectFailure answers rq the way its rolled FailMode says.
func (s *Server) injectFailure(rq *request) {
	s.log.Debug("fault injected", "mode", rq.fail, "path", rq.r.URL.Path)
	switch rq.fail {
	case Fail500:
		s.writeError(rq, errf(http.StatusInternalServerError, codeInternal, "internal server error (injected)"))
	case Fail503:
		s.writeError(rq, errf(http.StatusServiceUnavailable, codeServerBusy, "server is busy, please try again later (injected)"))
	case Fail403:
		code := codeReadQuota
		if rq.write {
			code = codeWriteQuota
		}
		s.writeError(rq, errf(http.StatusForbidden, code, "quota exceeded (injected)"))
	case FailReset:
		hijackClose(rq.w)
	case FailTruncated:
		conn, buf, err := hijack(rq.w)
		if err != nil {
			return
		}
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 4096\r\nx-log-requestid: %s\r\n\r\n", rq.id)
		junk := make([]byte, 512)
		rand.Read(junk)
		buf.Write(junk)
		buf.Flush()
		resetConn(conn)
	case FailGarbage:
		s.writeGarbage(rq)
	}
}

// writeGarbage answers 200 with random bytes and the content headers the
// call would carry, except x-log-cursor.
func (s *Server) writeGarbage(rq *request) {
	junk := make([]byte, 256)
	rand.Read(junk)
	h := rq.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("x-log-bodyrawsize", "1024")
	h.Set("x-log-compresstype", "lz4")
	h.Set("x-log-count", "1")
	rq.w.WriteHeader(http.StatusOK)
	rq.w.Write(junk)
}

func hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("response writer cannot hijack")
	}
	c, buf, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	return c, buf, nil
}

// hijackClose drops the connection without an answer.
func hijackClose(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	c, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	resetConn(c)
}
