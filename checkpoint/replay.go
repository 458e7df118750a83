package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Replay jobs: a historical replay re-reads a time range of a logstore
// into the sinks. Its progress lives in the replay bucket, one nested
// bucket per job: the job's definition under "job", and one entry per shard
// (4-byte big-endian shard number) with the cursor up to which that shard
// is durably spooled.

var (
	bucketReplay = []byte("replay")
	keyJob       = []byte("job")
)

// ReplayJob defines a replay: which logstore, which range, how.
type ReplayJob struct {
	// ID names the job (e.g. derived from its parameters); required.
	ID       string
	Project  string
	Logstore string
	// From and To bound the range by SLS receive time: [From, To).
	From, To time.Time
	// Query is the server-side filter (SPL), if any.
	Query string
	// LogTime keeps only logs whose __time__ is inside [From, To).
	LogTime bool
	// Created is when the job was first stored (set by PutReplayJob when
	// zero).
	Created time.Time
	// Completed is when every event of the range had been delivered or
	// dead-lettered; zero while the job is unfinished.
	Completed time.Time
}

// ReplayShard is one shard's progress in a replay job.
type ReplayShard struct {
	Shard int
	// Start is the shard's cursor at the range's start, End at its end.
	// Cursor is the next cursor to pull: everything before it is durable in
	// every spool.
	Start, Cursor, End string
	// Done is set once Cursor reached End.
	Done bool
	// Events and Bytes count what was spooled from the shard so far
	// (serialized LogGroupList bytes).
	Events, Bytes int64
	// Skipped counts logs pulled but left out (their own time outside the
	// range, with ReplayJob.LogTime).
	Skipped int64
	// Missing, when not zero, is the part of the range that had aged out of
	// the logstore's retention on this shard: [MissingFrom, MissingTo).
	MissingFrom, MissingTo time.Time
	Updated                time.Time // set by CommitReplayShard when zero
}

func (j ReplayJob) validate() error {
	switch {
	case j.ID == "" || strings.IndexByte(j.ID, 0) >= 0:
		return fmt.Errorf("checkpoint: invalid replay job id %q", j.ID)
	case j.Project == "" || j.Logstore == "":
		return fmt.Errorf("checkpoint: replay job %s: project and logstore are required", j.ID)
	case !j.From.Before(j.To):
		return fmt.Errorf("checkpoint: replay job %s: From %v is not before To %v", j.ID, j.From, j.To)
	}
	return nil
}

// PutReplayJob stores j, durably, replacing a job with the same ID but
// keeping its shards' progress.
func (s *Store) PutReplayJob(j ReplayJob) error {
	if err := j.validate(); err != nil {
		return err
	}
	if j.Created.IsZero() {
		j.Created = time.Now()
	}
	val, _ := json.Marshal(j) // cannot fail
	return s.update("put replay job", func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketReplay).CreateBucketIfNotExists([]byte(j.ID))
		if err != nil {
			return err
		}
		return b.Put(keyJob, val)
	})
}

// ReplayJob returns job id; ok is false if there is none.
func (s *Store) ReplayJob(id string) (j ReplayJob, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketReplay).Bucket([]byte(id))
		if b == nil || b.Get(keyJob) == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(b.Get(keyJob), &j)
	})
	return j, ok, err
}

// CommitReplayShard stores one shard's progress in job id, durably:
// when it returns nil the progress survives a crash. The job must exist.
// Concurrent commits are grouped into one transaction, as Commit's.
func (s *Store) CommitReplayShard(id string, p ReplayShard) error {
	if p.Shard < 0 || p.Shard > 1<<31-1 {
		return fmt.Errorf("checkpoint: replay job %s: invalid shard %d", id, p.Shard)
	}
	if p.Updated.IsZero() {
		p.Updated = time.Now()
	}
	val, _ := json.Marshal(p) // cannot fail
	key := binary.BigEndian.AppendUint32(nil, uint32(p.Shard))
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketReplay).Bucket([]byte(id))
		if b == nil {
			return fmt.Errorf("no replay job %q", id)
		}
		return b.Put(key, val)
	})
	if err != nil {
		return fmt.Errorf("checkpoint: commit replay job %s shard %d: %w", id, p.Shard, err)
	}
	return nil
}

// ReplayShards returns the progress of every shard of job id, by shard.
func (s *Store) ReplayShards(id string) (map[int]ReplayShard, error) {
	out := map[int]ReplayShard{}
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketReplay).Bucket([]byte(id))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if len(k) != 4 {
				return nil // the job itself
			}
			var p ReplayShard
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("replay job %s shard %x: %w", id, k, err)
			}
			out[int(binary.BigEndian.Uint32(k))] = p
			return nil
		})
	})
	return out, err
}

// DeleteReplayJob removes job id and its progress; a missing job is fine.
func (s *Store) DeleteReplayJob(id string) error {
	return s.update("delete replay job", func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketReplay).DeleteBucket([]byte(id))
		if errors.Is(err, bolt.ErrBucketNotFound) {
			return nil
		}
		return err
	})
}

func (s *Store) update(what string, fn func(*bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.db.Update(fn); err != nil {
		return fmt.Errorf("checkpoint: %s: %w", what, err)
	}
	return nil
}

// verifyReplay decodes every replay record (called by Open's verify).
func verifyReplay(tx *bolt.Tx) error {
	return tx.Bucket(bucketReplay).ForEachBucket(func(id []byte) error {
		return tx.Bucket(bucketReplay).Bucket(id).ForEach(func(k, v []byte) error {
			var err error
			if len(k) == 4 {
				err = json.Unmarshal(v, new(ReplayShard))
			} else {
				err = json.Unmarshal(v, new(ReplayJob))
			}
			if err != nil {
				return fmt.Errorf("replay job %q: %w", id, err)
			}
			return nil
		})
	})
}
