package slstest

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"time"
)

func (s *Server) getProject(rq *request) {
	s.mu.RLock()
	p, ok := s.projects[rq.project]
	s.mu.RUnlock()
	if !ok {
		s.writeError(rq, errf(http.StatusNotFound, codeProjectNotExist, "The Project does not exist : %s", rq.project))
		return
	}
	ct := time.Unix(p.createTime, 0).Format("2006-01-02 15:04:05")
	s.writeJSON(rq, map[string]any{
		"projectName": p.name, "status": "Normal", "owner": "", "description": "slstest emulator",
		"region": "local", "createTime": ct, "lastModifyTime": ct,
	})
}

func (s *Server) listLogstores(rq *request) {
	s.mu.RLock()
	p, ok := s.projects[rq.project]
	var names []string
	if ok {
		for n := range p.logstores {
			names = append(names, n)
		}
	}
	s.mu.RUnlock()
	if !ok {
		s.writeError(rq, errf(http.StatusNotFound, codeProjectNotExist, "The Project does not exist : %s", rq.project))
		return
	}
	sort.Strings(names)
	s.writeJSON(rq, map[string]any{"count": len(names), "total": len(names), "logstores": names})
}

type logstoreJSON struct {
	Name           string `json:"logstoreName"`
	TTL            int    `json:"ttl"`
	ShardCount     int    `json:"shardCount"`
	AutoSplit      bool   `json:"autoSplit"`
	MaxSplitShard  int    `json:"maxSplitShard"`
	AppendMeta     bool   `json:"appendMeta"`
	TelemetryType  string `json:"telemetryType"`
	CreateTime     int64  `json:"createTime"`
	LastModifyTime int64  `json:"lastModifyTime"`
}

func (s *Server) createLogstore(rq *request) {
	var body logstoreJSON
	if err := json.Unmarshal(rq.body, &body); err != nil || body.Name == "" {
		s.writeError(rq, errf(http.StatusBadRequest, codePostBodyInvalid, "invalid logstore body"))
		return
	}
	o := LogstoreOptions{Name: body.Name, Shards: body.ShardCount, TTL: time.Duration(body.TTL) * 24 * time.Hour}
	if err := s.CreateLogstore(rq.project, o); err != nil {
		s.writeError(rq, toAPIError(err, body.Name))
		return
	}
	s.writeOK(rq)
}

func (s *Server) getLogstore(rq *request) {
	ls, ok := s.lookup(rq)
	if !ok {
		return
	}
	var out logstoreJSON
	ls.read(func() {
		rw := 0
		for _, sh := range ls.shards {
			if sh.status == statusReadWrite {
				rw++
			}
		}
		ttl := int(ls.ttl / (24 * time.Hour))
		if ls.ttl == 0 {
			ttl = 3650
		} else if ttl == 0 {
			ttl = 1
		}
		out = logstoreJSON{Name: ls.name, TTL: ttl, ShardCount: rw, MaxSplitShard: 64, TelemetryType: "None",
			CreateTime: ls.createTime, LastModifyTime: ls.createTime}
	})
	s.writeJSON(rq, out)
}

func (s *Server) deleteLogstore(rq *request) {
	if _, ok := s.lookup(rq); !ok {
		return
	}
	s.mu.Lock()
	delete(s.projects[rq.project].logstores, rq.logstore)
	s.mu.Unlock()
	s.writeOK(rq)
}

type groupJSON struct {
	Name    string `json:"name"`
	Timeout int    `json:"timeout"`
	Order   bool   `json:"order"`
}

// consumerGroups serves ListConsumerGroup (GET) and CreateConsumerGroup (POST).
func (s *Server) consumerGroups(rq *request) {
	ls, ok := s.lookup(rq)
	if !ok {
		return
	}
	switch rq.r.Method {
	case http.MethodGet:
		out := []groupJSON{}
		ls.mu.RLock()
		for _, g := range ls.groups {
			out = append(out, groupJSON{g.name, g.timeout, g.inOrder})
		}
		ls.mu.RUnlock()
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		s.writeJSON(rq, out)
	case http.MethodPost:
		var body struct {
			Name    string `json:"consumerGroup"`
			Timeout int    `json:"timeout"`
			Order   bool   `json:"order"`
		}
		if err := json.Unmarshal(rq.body, &body); err != nil || body.Name == "" || body.Timeout <= 0 {
			s.writeError(rq, errf(http.StatusBadRequest, codeJSONInfoInvalid, "consumerGroup or timeout is of error format"))
			return
		}
		var aerr *apiError
		ls.write(func() {
			if _, ok := ls.groups[body.Name]; ok {
				aerr = errf(http.StatusBadRequest, codeGroupExist, "consumer group already exist")
				return
			}
			ls.groups[body.Name] = newConsumerGroup(body.Name, body.Timeout, body.Order)
		})
		if aerr != nil {
			s.writeError(rq, aerr)
			return
		}
		s.writeOK(rq)
	default:
		s.writeError(rq, errf(http.StatusMethodNotAllowed, "InvalidMethod", "invalid request method : %s", rq.r.URL.Path))
	}
}

// consumerGroup serves UpdateConsumerGroup (PUT), DeleteConsumerGroup
// (DELETE), GetCheckPoint (GET) and, by POST, ConsumerGroupHeartBeat
// (type=heartbeat) and ConsumerGroupUpdateCheckPoint (type=checkpoint).
func (s *Server) consumerGroup(rq *request) {
	ls, ok := s.lookup(rq)
	if !ok {
		return
	}
	name, q := rq.parts[3], rq.r.URL.Query()
	lastRead := s.lastRead(rq.project, rq.logstore, name+"_"+q.Get("consumer"))
	var (
		aerr *apiError
		resp any
	)
	ls.write(func() {
		g, ok := ls.groups[name]
		if !ok {
			aerr = errf(http.StatusNotFound, codeGroupNotExist, "consumer group not exist")
			return
		}
		now := time.Now()
		switch m, t := rq.r.Method, q.Get("type"); {
		case m == http.MethodPut:
			var body struct {
				Order   *bool `json:"order"`
				Timeout *int  `json:"timeout"`
			}
			if err := json.Unmarshal(rq.body, &body); err != nil || (body.Timeout != nil && *body.Timeout <= 0) {
				aerr = errf(http.StatusBadRequest, codeJSONInfoInvalid, "timeout is of error value type")
				return
			}
			if body.Order != nil {
				g.inOrder = *body.Order
			}
			if body.Timeout != nil {
				g.timeout = *body.Timeout
			}
		case m == http.MethodDelete:
			delete(ls.groups, name)
		case m == http.MethodGet:
			shard := -1
			if v := q.Get("shard"); v != "" {
				shard, _ = strconv.Atoi(v)
			}
			resp = g.checkpointList(ls, shard)
		case m == http.MethodPost && t == "heartbeat":
			var held []int
			if err := json.Unmarshal(rq.body, &held); err != nil {
				aerr = errf(http.StatusBadRequest, codeParameterInvalid, "heartbeat body must be a JSON array of shard ids")
				return
			}
			resp = g.heartbeat(ls, q.Get("consumer"), held, now, lastRead)
		case m == http.MethodPost && t == "checkpoint":
			var body struct {
				Shard      int    `json:"shard"`
				Checkpoint string `json:"checkpoint"`
			}
			if err := json.Unmarshal(rq.body, &body); err != nil {
				aerr = errf(http.StatusBadRequest, codeParameterInvalid, "invalid checkpoint body")
				return
			}
			aerr = g.updateCheckpoint(ls, q.Get("consumer"), body.Shard, body.Checkpoint, q.Get("forceSuccess") == "true", now)
		default:
			aerr = errf(http.StatusBadRequest, codeParameterInvalid, "invalid consumer group call %s type=%q", m, t)
		}
	})
	switch {
	case aerr != nil:
		s.writeError(rq, aerr)
	case resp != nil:
		s.writeJSON(rq, resp)
	default:
		s.writeOK(rq)
	}
}
