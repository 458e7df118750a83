package slstest

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/gogo/protobuf/proto"
)

// maxPullRaw bounds one PullLogs answer's uncompressed size; at least one
// group is always returned.
const maxPullRaw = 10 << 20

func (s *Server) lookup(rq *request) (*logstore, bool) {
	ls, err := s.logstore(rq.project, rq.logstore)
	if err != nil {
		what := rq.logstore
		if errors.Is(err, ErrProjectNotExist) {
			what = rq.project
		}
		s.writeError(rq, toAPIError(err, what))
		return nil, false
	}
	return ls, true
}

// putLogs serves PutLogs and PostLogStoreLogs (hash-key routed).
func (s *Server) putLogs(rq *request, hashKey string) {
	ls, ok := s.lookup(rq)
	if !ok {
		return
	}
	h := rq.r.Header
	raw, err := DecodePutBody(rq.body, h.Get("x-log-compresstype"), h.Get("x-log-bodyrawsize"))
	if err != nil {
		if errors.Is(err, errUncompress) {
			s.writeError(rq, errf(http.StatusBadRequest, codeUncompressError, "%v", err))
		} else {
			s.writeError(rq, toAPIError(err, ""))
		}
		return
	}
	if hashKey == "" {
		hashKey = h.Get("x-log-hashkey")
	}
	g, err := makeGroup(raw, time.Now())
	if err != nil {
		s.writeError(rq, toAPIError(err, ""))
		return
	}
	ls.write(func() {
		var sh *shard
		if sh, err = ls.route(hashKey); err == nil {
			g.recv = time.Now().UnixNano()
			appendLocked(sh, g)
		}
	})
	if err != nil {
		s.writeError(rq, toAPIError(err, hashKey))
		return
	}
	s.stats.puts.Add(1)
	s.stats.logsWritten.Add(int64(g.logs))
	s.writeOK(rq)
}

func (s *Server) listShards(rq *request) {
	ls, ok := s.lookup(rq)
	if !ok {
		return
	}
	var out []shardJSON
	ls.read(func() { out = toShardJSON(ls.shards) })
	s.writeJSON(rq, out)
}

// shardAction serves SplitShard (?action=split&key=K or &shardCount=N) and
// MergeShards (?action=merge).
func (s *Server) shardAction(rq *request) {
	id, err := strconv.Atoi(rq.parts[3])
	if err != nil {
		s.writeError(rq, errf(http.StatusBadRequest, codeParameterInvalid, "invalid shard id %q", rq.parts[3]))
		return
	}
	if _, ok := s.lookup(rq); !ok {
		return
	}
	q := rq.r.URL.Query()
	var out []shardJSON
	switch q.Get("action") {
	case "split":
		n := 2
		if c := q.Get("shardCount"); c != "" {
			if n, err = strconv.Atoi(c); err != nil {
				s.writeError(rq, errf(http.StatusBadRequest, codeParameterInvalid, "invalid shardCount %q", c))
				return
			}
		}
		out, err = s.splitShard(rq.project, rq.logstore, id, q.Get("key"), n)
	case "merge":
		out, err = s.mergeShards(rq.project, rq.logstore, id)
	default:
		s.writeError(rq, errf(http.StatusBadRequest, codeParameterInvalid, "invalid action %q", q.Get("action")))
		return
	}
	if err != nil {
		s.writeError(rq, toAPIError(err, rq.parts[3]))
		return
	}
	s.writeJSON(rq, out)
}

// shardGet serves GetCursor (type=cursor), GetCursorTime (type=cursor_time)
// and PullLogs (type=logs, or the older type=log).
func (s *Server) shardGet(rq *request) {
	id, err := strconv.Atoi(rq.parts[3])
	if err != nil {
		s.writeError(rq, errf(http.StatusBadRequest, codeParameterInvalid, "invalid shard id %q", rq.parts[3]))
		return
	}
	ls, ok := s.lookup(rq)
	if !ok {
		return
	}
	switch t := rq.r.URL.Query().Get("type"); t {
	case "cursor":
		s.getCursor(rq, ls, id)
	case "cursor_time":
		s.getCursorTime(rq, ls, id)
	case "logs", "log":
		s.pullLogs(rq, ls, id)
	default:
		s.writeError(rq, errf(http.StatusBadRequest, codeParameterInvalid, "invalid type %q", t))
	}
}

func (s *Server) getCursor(rq *request, ls *logstore, id int) {
	from := rq.r.URL.Query().Get("from")
	var cursor string
	var aerr *apiError
	ls.read(func() {
		sh, err := ls.shard(id)
		if err != nil {
			aerr = toAPIError(err, strconv.Itoa(id))
			return
		}
		switch from {
		case "begin":
			cursor = sh.cursor(sh.first)
		case "end":
			cursor = sh.cursor(sh.endSeq())
		default:
			t, err := strconv.ParseInt(from, 10, 64)
			if err != nil || t < 0 {
				aerr = errf(http.StatusBadRequest, codeParameterInvalid, "from %q must be begin, end or a unix time in seconds", from)
				return
			}
			cursor = sh.cursor(sh.seqAtTime(t))
		}
	})
	if aerr != nil {
		s.writeError(rq, aerr)
		return
	}
	s.writeJSON(rq, map[string]string{"cursor": cursor})
}

func (s *Server) getCursorTime(rq *request, ls *logstore, id int) {
	c := rq.r.URL.Query().Get("cursor")
	var sec int64
	var aerr *apiError
	ls.read(func() {
		sh, err := ls.shard(id)
		if err != nil {
			aerr = toAPIError(err, strconv.Itoa(id))
			return
		}
		seq, e := sh.seqOf(c)
		if e != nil {
			aerr = e
			return
		}
		switch i := seq - sh.first; {
		case i < int64(len(sh.groups)):
			sec = sh.groups[i].recv / 1e9
		case len(sh.groups) > 0:
			sec = sh.groups[len(sh.groups)-1].recv / 1e9
		default:
			sec = time.Now().Unix()
		}
	})
	if aerr != nil {
		s.writeError(rq, aerr)
		return
	}
	s.writeJSON(rq, map[string]int64{"cursor_time": sec})
}

// pullLogs serves PullLogs by concatenating stored LogGroup bytes into a
// LogGroupList, without decoding them unless a query filters them; an lz4
// answer without a query is stitched from the stored lz4 blocks.
func (s *Server) pullLogs(rq *request, ls *logstore, id int) {
	q := rq.r.URL.Query()
	count, err := strconv.Atoi(q.Get("count"))
	if err != nil || count < 1 || count > 1000 {
		s.writeError(rq, errf(http.StatusBadRequest, codeParameterInvalid, "count %q must be within 1..1000", q.Get("count")))
		return
	}
	var flt filter
	if qs := q.Get("query"); qs != "" {
		if flt, err = parseQuery(qs); err != nil {
			s.writeError(rq, errf(http.StatusBadRequest, codeInvalidQuery, "query %q: %v", qs, err))
			return
		}
	}
	var (
		groups    []storedGroup
		sh        *shard
		seq, stop int64
		aerr      *apiError
	)
	ls.read(func() {
		if sh, err = ls.shard(id); err != nil {
			aerr = toAPIError(err, strconv.Itoa(id))
			return
		}
		if seq, aerr = sh.seqOf(q.Get("cursor")); aerr != nil {
			return
		}
		stop = sh.endSeq()
		if ec := q.Get("end_cursor"); ec != "" {
			var e int64
			if e, aerr = sh.seqOf(ec); aerr != nil {
				return
			}
			stop = max(seq, min(stop, e))
		}
		n := min(stop-seq, int64(count))
		groups = sh.groups[seq-sh.first : seq-sh.first+n]
	})
	if aerr != nil {
		s.writeError(rq, aerr)
		return
	}
	accept := rq.r.Header.Get("Accept-Encoding")
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	op := bufPool.Get().(*[]byte)
	defer bufPool.Put(op)
	raw := (*bp)[:0]
	var (
		n, logs, rawCount, rawLines int
		rawSize                     int // x-log-bodyrawsize: the LogGroupList's size
		out                         []byte
		ctype                       string
		stitched                    bool
	)
	if flt == nil && pickEncoding(accept) == "lz4" {
		// The common case: the answer is the stored lz4 blocks stitched
		// together (stitch.go), nothing decompressed or compressed.
		n, rawSize = pullExtent(groups)
		if stitched = allStitchable(groups[:n]); stitched {
			out, ctype = appendStitched((*op)[:0], groups[:n], rawSize), "lz4"
			for i := range groups[:n] {
				logs += int(groups[i].logs)
			}
			*op = out
		}
	}
	if !stitched {
		n = 0
		var scratch []byte
		for i := range groups {
			if n > 0 && len(raw) >= maxPullRaw {
				break
			}
			g := &groups[i]
			n++
			rawCount++
			rawLines += int(g.logs)
			if flt == nil {
				raw = appendGroupHeader(raw, int(g.raw))
				if raw, err = g.appendTo(raw); err != nil {
					s.writeError(rq, errf(http.StatusInternalServerError, codeInternal, "%v", err))
					return
				}
				logs += int(g.logs)
				continue
			}
			var kept int
			if scratch, raw, kept, err = filterGroup(g, flt, scratch[:0], raw); err != nil {
				s.writeError(rq, errf(http.StatusInternalServerError, codeInternal, "%v", err))
				return
			}
			logs += kept
		}
		if out, ctype, err = compressResponse((*op)[:0], raw, accept); err != nil {
			s.writeError(rq, errf(http.StatusInternalServerError, codeInternal, "%v", err))
			return
		}
		*bp, *op = raw, out
		rawSize = len(raw)
	}
	rawBytesBefore := 0
	for i := 0; i < n; i++ {
		rawBytesBefore += int(groups[i].raw)
	}

	next := seq + int64(n)
	h := rq.w.Header()
	h.Set("Content-Type", "application/x-protobuf")
	h.Set("Content-Length", strconv.Itoa(len(out)))
	h.Set("x-log-cursor", sh.cursor(next))
	h.Set("x-log-bodyrawsize", strconv.Itoa(rawSize))
	if ctype != "" {
		h.Set("x-log-compresstype", ctype)
	}
	returned := n
	if flt != nil {
		returned = countGroups(raw)
		h.Set("x-log-rawdatasize", strconv.Itoa(rawBytesBefore))
		h.Set("x-log-rawdatacount", strconv.Itoa(rawCount))
		h.Set("x-log-rawdatalines", strconv.Itoa(rawLines))
		h.Set("x-log-resultlines", strconv.Itoa(logs))
		h.Set("x-log-failedlines", "0")
	}
	h.Set("x-log-count", strconv.Itoa(returned))
	if n > 0 {
		h.Set("x-log-read-last-cursor", strconv.FormatInt(sh.base+next-1, 10))
		h.Set("x-log-cursor-time", strconv.FormatInt(groups[n-1].recv/1e9, 10))
	}
	end := "0"
	if next >= stop {
		end = "1"
	}
	h.Set("x-log-end-of-cursor", end)
	rq.w.WriteHeader(http.StatusOK)
	writeBody(rq.r.Context(), rq.w, out, rq.faults)

	c := &s.stats
	c.pulls.Add(1)
	c.groupsServed.Add(int64(returned))
	c.logsServed.Add(int64(logs))
	c.rawBytesServed.Add(int64(rawSize))
	if stitched {
		c.stitchedPulls.Add(1)
	}
	c.bytesServed.Add(int64(len(out)))
}

// pullExtent returns how many of groups one answer holds, at least one and
// up to maxPullRaw of LogGroupList bytes, and the size of their list.
func pullExtent(groups []storedGroup) (n, size int) {
	for n < len(groups) && (n == 0 || size < maxPullRaw) {
		size += 1 + uvarintLen(groups[n].raw) + int(groups[n].raw)
		n++
	}
	return n, size
}

func allStitchable(groups []storedGroup) bool {
	for i := range groups {
		if !groups[i].stitchable {
			return false
		}
	}
	return true
}

// filterGroup decodes one stored group, keeps the logs flt matches and, if
// any remain, appends the re-encoded group to raw.
func filterGroup(g *storedGroup, flt filter, scratch, raw []byte) ([]byte, []byte, int, error) {
	scratch, err := g.appendTo(scratch)
	if err != nil {
		return scratch, raw, 0, err
	}
	var lg sls.LogGroup
	if err := proto.Unmarshal(scratch, &lg); err != nil {
		return scratch, raw, 0, err
	}
	kept := lg.Logs[:0]
	for _, l := range lg.Logs {
		if flt.match(l) {
			kept = append(kept, l)
		}
	}
	if len(kept) == 0 {
		return scratch, raw, 0, nil
	}
	lg.Logs = kept
	b, err := proto.Marshal(&lg)
	if err != nil {
		return scratch, raw, 0, err
	}
	raw = appendGroupHeader(raw, len(b))
	return scratch, append(raw, b...), len(kept), nil
}

// countGroups counts the top-level entries of a serialized LogGroupList.
func countGroups(b []byte) int {
	n := 0
	for len(b) > 0 {
		l, k := uvarint(b[1:])
		b = b[1+k+int(l):]
		n++
	}
	return n
}
