package slstest

import (
	"fmt"
	"maps"
	"sort"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/gogo/protobuf/proto"
)

// CreateProject adds an empty project.
func (s *Server) CreateProject(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty project name", ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.projects[name]; ok {
		return fmt.Errorf("%w: project %s", ErrAlreadyExist, name)
	}
	s.projects[name] = &project{name: name, createTime: time.Now().Unix(), logstores: map[string]*logstore{}}
	return nil
}

// CreateLogstore adds a logstore with o.Shards readwrite shards (default 4).
func (s *Server) CreateLogstore(projectName string, o LogstoreOptions) error {
	if o.Name == "" {
		return fmt.Errorf("%w: empty logstore name", ErrInvalidArgument)
	}
	if o.Shards == 0 {
		o.Shards = DefaultShards
	}
	if o.Shards < 0 || o.Shards > 256 {
		return fmt.Errorf("%w: shard count %d", ErrInvalidArgument, o.Shards)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[projectName]
	if !ok {
		return fmt.Errorf("%w: %s", ErrProjectNotExist, projectName)
	}
	if _, ok := p.logstores[o.Name]; ok {
		return fmt.Errorf("%w: logstore %s", ErrAlreadyExist, o.Name)
	}
	p.logstores[o.Name] = newLogstore(o, time.Now())
	return nil
}

func (s *Server) logstore(projectName, name string) (*logstore, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.projects[projectName]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrProjectNotExist, projectName)
	}
	ls, ok := p.logstores[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrLogstoreNotExist, name)
	}
	return ls, nil
}

// Append stores lg in a shard directly, as PutLogs would (receive time now).
// shard < 0 routes round robin over readwrite shards.
func (s *Server) Append(projectName, logstoreName string, shardID int, lg *sls.LogGroup) error {
	raw, err := proto.Marshal(lg)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidBody, err)
	}
	return s.appendRaw(projectName, logstoreName, shardID, "", raw)
}

// AppendRaw stores a serialized LogGroup in a shard directly, as PutLogs
// would (receive time now). It lets a caller build its data ahead of time
// so that only the store itself happens at the moment of writing.
func (s *Server) AppendRaw(projectName, logstoreName string, shardID int, raw []byte) error {
	return s.appendRaw(projectName, logstoreName, shardID, "", raw)
}

// appendRaw stores a serialized LogGroup in shardID, or routes it by
// hashKey (or round robin) when shardID < 0.
func (s *Server) appendRaw(projectName, logstoreName string, shardID int, hashKey string, raw []byte) error {
	ls, err := s.logstore(projectName, logstoreName)
	if err != nil {
		return err
	}
	g, err := makeGroup(raw, time.Now())
	if err != nil {
		return err
	}
	ls.write(func() {
		var sh *shard
		if shardID >= 0 {
			sh, err = ls.shard(shardID)
			if err == nil && sh.status != statusReadWrite {
				err = fmt.Errorf("%w: %d", ErrShardReadOnly, shardID)
			}
		} else {
			sh, err = ls.route(hashKey)
		}
		if err != nil {
			return
		}
		g.recv = time.Now().UnixNano()
		appendLocked(sh, g)
	})
	if err == nil {
		s.stats.logsWritten.Add(int64(g.logs))
	}
	return err
}

// SetTTL changes a logstore's retention; data received more than ttl ago
// expires at once. 0 keeps data for ever.
func (s *Server) SetTTL(projectName, logstoreName string, ttl time.Duration) error {
	ls, err := s.logstore(projectName, logstoreName)
	if err != nil {
		return err
	}
	ls.write(func() { ls.ttl = ttl; ls.expireLocked(time.Now()) })
	return nil
}

// SplitShard splits a readwrite shard at splitKey (hex, up to 32 digits,
// strictly inside the shard's range; "" = the middle). The shard becomes
// read-only, its data stays readable, and two new readwrite shards are
// added; their ids are returned.
func (s *Server) SplitShard(projectName, logstoreName string, shardID int, splitKey string) ([]int, error) {
	shs, err := s.splitShard(projectName, logstoreName, shardID, splitKey, 2)
	if err != nil {
		return nil, err
	}
	ids := make([]int, 0, len(shs)-1)
	for _, sh := range shs[1:] {
		ids = append(ids, sh.ShardID)
	}
	return ids, nil
}

func (s *Server) splitShard(projectName, logstoreName string, shardID int, splitKey string, n int) (out []shardJSON, err error) {
	ls, err := s.logstore(projectName, logstoreName)
	if err != nil {
		return nil, err
	}
	ls.write(func() {
		var sh *shard
		if sh, err = ls.shard(shardID); err != nil {
			return
		}
		var keys []string
		if splitKey != "" {
			k, ok := normalizeKey(splitKey)
			if !ok {
				err = fmt.Errorf("%w: split key %q is not hex", ErrInvalidArgument, splitKey)
				return
			}
			keys = []string{k}
		} else {
			if n < 2 {
				err = fmt.Errorf("%w: shard count %d", ErrInvalidArgument, n)
				return
			}
			keys = splitRange(sh.begin, sh.end, n)
			keys = keys[1 : len(keys)-1]
		}
		var shs []*shard
		if shs, err = ls.split(sh, keys, time.Now()); err == nil {
			out = toShardJSON(shs)
		}
	})
	return out, err
}

// MergeShards merges a readwrite shard with its right neighbour; both
// become read-only. It returns the new shard's id.
func (s *Server) MergeShards(projectName, logstoreName string, shardID int) (int, error) {
	out, err := s.mergeShards(projectName, logstoreName, shardID)
	if err != nil {
		return 0, err
	}
	return out[0].ShardID, nil
}

func (s *Server) mergeShards(projectName, logstoreName string, shardID int) (out []shardJSON, err error) {
	ls, err := s.logstore(projectName, logstoreName)
	if err != nil {
		return nil, err
	}
	ls.write(func() {
		var sh *shard
		if sh, err = ls.shard(shardID); err != nil {
			return
		}
		var shs []*shard
		if shs, err = ls.merge(sh, time.Now()); err == nil {
			out = toShardJSON(shs)
		}
	})
	return out, err
}

// ShardInfo describes one shard for tests.
type ShardInfo struct {
	ID          int
	ReadOnly    bool
	BeginKey    string
	EndKey      string
	Groups      int       // log groups retained
	Logs        int64     // logs retained
	OldestTime  time.Time // receive time of the oldest retained group; zero if none
	BeginCursor string
	EndCursor   string
}

// Shards lists a logstore's shards, ordered by id.
func (s *Server) Shards(projectName, logstoreName string) ([]ShardInfo, error) {
	ls, err := s.logstore(projectName, logstoreName)
	if err != nil {
		return nil, err
	}
	var out []ShardInfo
	ls.read(func() {
		for _, sh := range ls.shards {
			si := ShardInfo{
				ID: sh.id, ReadOnly: sh.status == statusReadOnly, BeginKey: sh.begin, EndKey: sh.end,
				Groups: len(sh.groups), Logs: sh.logs,
				BeginCursor: sh.cursor(sh.first), EndCursor: sh.cursor(sh.endSeq()),
			}
			if len(sh.groups) > 0 {
				si.OldestTime = time.Unix(0, sh.groups[0].recv)
			}
			out = append(out, si)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// LogCount is the number of logs a logstore retains over all shards.
func (s *Server) LogCount(projectName, logstoreName string) (int64, error) {
	shs, err := s.Shards(projectName, logstoreName)
	var n int64
	for _, sh := range shs {
		n += sh.Logs
	}
	return n, err
}

// readGroup calls f with a consumer group under its logstore's read lock
// and returns what f returns; the zero T if the logstore or the group does
// not exist.
func readGroup[T any](s *Server, projectName, logstoreName, group string, f func(g *consumerGroup) T) T {
	var zero T
	ls, err := s.logstore(projectName, logstoreName)
	if err != nil {
		return zero
	}
	ls.mu.RLock()
	defer ls.mu.RUnlock()
	g, ok := ls.groups[group]
	if !ok {
		return zero
	}
	return f(g)
}

// Checkpoints returns a consumer group's checkpoints by shard; shards
// without a checkpoint are absent. Nil if the group does not exist.
func (s *Server) Checkpoints(projectName, logstoreName, group string) map[int]string {
	return readGroup(s, projectName, logstoreName, group, func(g *consumerGroup) map[int]string {
		out := map[int]string{}
		for id, cp := range g.checkpoints {
			out[id] = cp.cursor
		}
		return out
	})
}

// Assignments returns which consumer each shard is assigned to in a group.
func (s *Server) Assignments(projectName, logstoreName, group string) map[int]string {
	return readGroup(s, projectName, logstoreName, group, func(g *consumerGroup) map[int]string {
		return maps.Clone(g.owner)
	})
}

// Held returns which consumer holds each shard of a group, as the consumers
// said in their last heartbeats: a shard assigned to a consumer (see
// Assignments) is held once the consumer was told and works on it.
func (s *Server) Held(projectName, logstoreName, group string) map[int]string {
	return readGroup(s, projectName, logstoreName, group, func(g *consumerGroup) map[int]string {
		out := map[int]string{}
		for name, c := range g.consumers {
			for id := range c.held {
				out[id] = name
			}
		}
		return out
	})
}

// CheckpointUpdates returns every UpdateCheckpoint the group accepted, in
// order, so that tests can check that no shard's checkpoint ever moved
// backwards (CheckpointUpdate.Backwards). Nil if the group does not exist.
func (s *Server) CheckpointUpdates(projectName, logstoreName, group string) []CheckpointUpdate {
	return readGroup(s, projectName, logstoreName, group, func(g *consumerGroup) []CheckpointUpdate {
		return append([]CheckpointUpdate(nil), g.updates...)
	})
}
