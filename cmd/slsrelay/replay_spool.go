package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"slsrelay/checkpoint"
	"slsrelay/deliver"
	"slsrelay/spool"
)

// slsrelay replay --from-spool re-sends, from a sink's archive of delivered
// segments (sinks[].spool.retain), the events whose own log time is in
// [FROM, TO), without touching SLS. It is the same job as a replay from
// SLS (replay.go: its own data directory, lock, progress, resume, summary
// and exit status); only the reader differs: one "shard" of the job is one
// archived segment, its cursor the byte offset up to which the segment's
// records are durable in the job's spool. The archive is read without a
// lock: the live relay only adds complete segments and removes whole ones
// (spool/archive.go), so the replay runs beside it.

// archiveJobProject is the job's "project" in its checkpoint store for a
// replay from the archive (its logstore is the archived sink's name).
const archiveJobProject = "archive"

// archiveDamagedReason starts the reason of a gap for a damaged or
// evicted part of the archive.
const archiveDamagedReason = "archive: "

// archiveSource is the archive side of a job.
type archiveSource struct {
	sink              string
	dir               string // the sink's spool directory
	project, logstore string // --source filter, if any
}

func newArchiveSource(cfg *Config, a *replayArgs) (*archiveSource, error) {
	found := false
	for _, sc := range cfg.Sinks {
		found = found || sc.Name == a.sink
	}
	if !found {
		return nil, fmt.Errorf("--sink %q: the config has no such sink (it has %s)", a.sink, sinkNames(cfg))
	}
	s := &archiveSource{sink: a.sink, dir: spoolDir(cfg, a.sink), project: a.project, logstore: a.logstore}
	if _, err := os.Stat(s.dir + "/" + spool.ArchiveDirName); err != nil {
		return nil, fmt.Errorf("sink %s has no archive in %s (turn it on with sinks[].spool.retain or retain_bytes): %w",
			a.sink, s.dir, err)
	}
	return s, nil
}

// wants reports whether the job reads archived segment seg.
func (s *archiveSource) wants(seg spool.ArchiveSegment, from, to int64) bool {
	if seg.Events == 0 || seg.LogMax < from || seg.LogMin >= to {
		return false
	}
	if s.project == "" {
		return true
	}
	return slices.ContainsFunc(seg.Sources, func(src spool.ArchiveSource) bool {
		return src.Project == s.project && src.Logstore == s.logstore
	})
}

// planArchive adds every archived segment overlapping the window (once per
// job; a resumed job keeps its plan and adds segments archived since).
func (rr *replayRun) planArchive() error {
	done, err := rr.r.cps.ReplayShards(rr.job.ID)
	if err != nil {
		return err
	}
	segs, err := spool.ReadArchive(rr.arch.dir)
	if err != nil {
		return err
	}
	rr.shards = map[int]*replayShard{}
	for id, p := range done {
		rr.shards[id] = &replayShard{p: p}
	}
	rr.archSegs = map[int]spool.ArchiveSegment{}
	from, to := rr.job.From.Unix(), rr.job.To.Unix()
	for _, seg := range segs {
		id := int(seg.ID)
		rr.archSegs[id] = seg
		if _, ok := rr.shards[id]; ok || !rr.arch.wants(seg, from, to) {
			continue
		}
		p := checkpoint.ReplayShard{Shard: id, Start: "0", Cursor: "0", End: strconv.FormatInt(seg.Bytes, 10)}
		if err := rr.r.cps.CommitReplayShard(rr.job.ID, p); err != nil {
			return err
		}
		rr.shards[id] = &replayShard{p: p}
	}
	return nil
}

// readArchive reads the planned segments, oldest first, into the spools.
func (rr *replayRun) readArchive(ctx context.Context) error {
	for _, id := range sortedShards(rr.shards) {
		st := rr.shards[id]
		if st.p.Done {
			continue
		}
		if err := rr.readSegment(ctx, st); err != nil {
			return err
		}
	}
	return nil
}

// archiveBatch is how many records are spooled between progress commits
// (what a kill can make the resumed job send again): one, as live ingest
// commits every pull, so that a kill re-sends at most one archived record
// besides the one in flight.
const archiveBatch = 1

func (rr *replayRun) readSegment(ctx context.Context, st *replayShard) error {
	seg, ok := rr.archSegs[st.p.Shard]
	if !ok { // evicted before this run listed the archive
		return rr.segmentGone(st, spool.ArchiveSegment{ID: int64(st.p.Shard)})
	}
	from, _ := strconv.ParseInt(st.p.Cursor, 10, 64)
	lo, hi := rr.job.From.Unix(), rr.job.To.Unix()
	var pending checkpoint.ReplayShard // progress not yet committed
	rr.mu.Lock()
	pending = st.p
	rr.mu.Unlock()
	n := 0
	commit := func() error {
		for _, sp := range rr.r.spools {
			if err := sp.Sync(ctx); err != nil {
				return err
			}
		}
		rr.mu.Lock()
		st.p = pending
		if size := float64(seg.Bytes); size > 0 {
			off, _ := strconv.ParseFloat(pending.Cursor, 64)
			st.pos = rr.job.From.Add(time.Duration(off / size * float64(rr.job.To.Sub(rr.job.From))))
		}
		p := st.p
		rr.mu.Unlock()
		return rr.r.cps.CommitReplayShard(rr.job.ID, p)
	}
	err := spool.ReadArchiveSegment(rr.arch.dir, seg, from, lo, hi, func(ar spool.ArchivedRecord) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		pending.Cursor = strconv.FormatInt(ar.Next, 10)
		if ar.Record == nil || (rr.arch.project != "" && (ar.Project != rr.arch.project || ar.Logstore != rr.arch.logstore)) {
			return nil
		}
		out, kept, err := deliver.FilterRecord(ar.Record, func(e *deliver.Event) bool {
			t := e.Time.Unix()
			return t >= lo && t < hi
		})
		if err != nil {
			return err
		}
		pending.Skipped += int64(ar.Count - kept)
		if kept == 0 {
			return nil
		}
		out.Seq = 0
		for _, sp := range rr.r.spools {
			r := *out
			if err := sp.Put(ctx, &r); err != nil {
				return err
			}
		}
		pending.Events += int64(kept)
		pending.Bytes += int64(len(out.Payload))
		if n++; n%archiveBatch == 0 {
			return commit()
		}
		return nil
	}, func(d spool.ArchiveDamage) { rr.archiveDamaged(st.p.Shard, d) })
	if errors.Is(err, fs.ErrNotExist) {
		return rr.segmentGone(st, seg)
	}
	if err != nil {
		return err
	}
	pending.Cursor, pending.Done = pending.End, true
	return commit()
}

// archiveDamaged names a region of an archived segment that does not read,
// loudly and durably, and quarantines its bytes in the job's dead-letter
// queue (spool dump shows them); the rest of the segment is read on.
func (rr *replayRun) archiveDamaged(id int, d spool.ArchiveDamage) {
	rr.log.Error("DATA MISSING: an archived segment is damaged; its other records are replayed",
		slog.Int("archive_segment", id), slog.String("damage", d.String()))
	if len(d.Data) > 0 {
		for _, sp := range rr.r.spools {
			if err := sp.QuarantineArchived(d); err != nil {
				rr.log.Warn("could not quarantine the damaged bytes", slog.Any("err", err))
			}
		}
	}
	g := checkpoint.Gap{Key: checkpoint.ShardKey{Project: archiveJobProject, Logstore: rr.arch.sink, Shard: id},
		From: d.After, To: d.Before, Reason: archiveDamagedReason + "damaged: " + d.String()}
	if g.To.Before(g.From) {
		g.To = g.From
	}
	if err := rr.r.cps.RecordGap(g); err != nil {
		rr.log.Warn("could not record the gap", slog.Any("err", err))
	}
}

// segmentGone handles an archived segment evicted (retain, retain_bytes,
// the disk floor) before the job read it: named like damage, and done.
func (rr *replayRun) segmentGone(st *replayShard, seg spool.ArchiveSegment) error {
	rr.archiveDamaged(st.p.Shard, spool.ArchiveDamage{Segment: fmt.Sprintf("%012d.seg", seg.ID), Length: seg.Bytes,
		Reason: "evicted from the archive before the replay read it", After: seg.ReceivedMin, Before: seg.ReceivedMax})
	rr.mu.Lock()
	st.p.Cursor, st.p.Done = st.p.End, true
	p := st.p
	rr.mu.Unlock()
	return rr.r.cps.CommitReplayShard(rr.job.ID, p)
}

// archiveDamage lists the damaged or evicted parts the job met (every
// run of it), once each.
func (rr *replayRun) archiveDamage() ([]string, error) {
	gaps, err := rr.r.cps.Gaps()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, g := range gaps {
		if g.Key.Project != archiveJobProject || g.Key.Logstore != rr.arch.sink || !strings.HasPrefix(g.Reason, archiveDamagedReason) {
			continue
		}
		if _, ok := rr.shards[g.Key.Shard]; !ok {
			continue
		}
		if s := strings.TrimPrefix(g.Reason, archiveDamagedReason); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// sinkSpoolOptions are the spool options of sink sc: the relay's, plus the
// sink's archive (sc.Spool).
func sinkSpoolOptions(c *Config, sc SinkConfig, log *slog.Logger) spool.Options {
	o := spoolOptions(c, log)
	o.Retain = time.Duration(sc.Spool.Retain)
	o.RetainBytes = int64(sc.Spool.RetainBytes)
	return o
}
