package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Recovery.
//
// Before go-diskqueue opens, the spool scans the segment files itself and
// rewrites diskqueue's metadata to match them, so diskqueue's own restart
// logic (which, when its metadata is older than the data, skips to a new
// write file that may already exist and overwrites it) never runs on stale
// state:
//
//   - read position: the first existing segment, at diskqueue's persisted
//     read offset when that offset is in that file and a frame starts there,
//     else at 0. Frames with Seq <= the persisted acknowledged Seq are
//     skipped by Peek, so a stale offset costs re-reading, never loss.
//   - write position: the end of the last valid frame of the last segment.
//     A frame cut short by the end of the file (a write interrupted by the
//     crash, so never synced) is truncated away; any other invalid bytes are
//     salvaged (below).
//   - every segment and the directory are fsynced, so the recovered state
//     is durable before new writes build on it.
//
// Salvage: a segment with invalid bytes is rewritten keeping every valid
// frame (length, magic, CRC) found by scanning for the record magic, and
// each invalid region is stored in the dead-letter queue with the reason
// (a single record whose bytes are bad costs that record; bytes that break
// framing cost only the records they overlap). The same salvage runs when,
// while reading, a record fails its CRC or diskqueue reports a read error
// and renames a segment to .bad (it would skip the rest of the file).
// A salvage that keeps nothing removes the segment unless it is the last
// one (an empty segment would be an end of file for diskqueue to trip on).
// If a repair meets the same failure again without Peek having returned a
// record since, salvage cannot fix it: after maxRepairRuns Peek returns a
// sticky error instead of looping.
//
// Not a read error: go-diskqueue (pinned version) reports io.EOF when its
// reader was caught up at the end of the write segment and the writer rolled
// to the next one; it then renames the old segment .bad and moves on, which
// is right. The spool recognises that case (segmentEnd), logs it at Debug,
// deletes the .bad file (dropEnded) and does not repair; a .bad file of
// valid, acknowledged frames found at Open (a crash before the delete) is
// deleted too.

type layout struct {
	readFile, readPos, writeFile, writePos int64
	frames, depth, bytes                   int64
	maxSeq                                 uint64
	oldest                                 time.Time
	hasOldest                              bool
}

// reload rebuilds diskqueue from the files. diskqueue must be closed (or
// not yet opened); caller holds putSem and fileMu, or is Open.
func (s *Spool) reload(hint *dqMeta) error {
	if hint == nil {
		if m, err := readDQMeta(s.dir); err == nil {
			hint = &m
		}
	}
	acked, floor := s.state.values()
	lay, err := s.recoverLayout(acked, hint)
	if err != nil {
		return err
	}
	m := dqMeta{depth: lay.frames, readFile: lay.readFile, readPos: lay.readPos, writeFile: lay.writeFile, writePos: lay.writePos}
	if err := writeDQMeta(s.dir, m, s.h.syncFile); err != nil {
		return err
	}
	s.mu.Lock()
	s.wFile, s.wPos, s.dirDirty = lay.writeFile, lay.writePos, false
	s.depth, s.bytes = lay.depth, lay.bytes
	s.oldest, s.hasOldest = lay.oldest, lay.hasOldest
	s.idx, s.idxOff = s.idx[:0], 0 // positions may have moved (salvage rewrites segments)
	s.nextSeq = max(s.nextSeq, lay.maxSeq+1, acked+1, floor)
	written := s.written
	s.mu.Unlock()
	s.smu.Lock()
	s.syncedWritten = max(s.syncedWritten, written)
	s.smu.Unlock()
	s.closeFDs()
	s.syncedFile = lay.writeFile
	s.diverged.Store(false)
	s.head = nil
	s.ahead = s.ahead[:0]
	s.closeReadAhead()
	s.dq = s.newDQ()
	return nil
}

func (s *Spool) recoverLayout(acked uint64, hint *dqMeta) (layout, error) {
	var lay layout
	segs, bads, err := listSegments(s.dir)
	if err != nil {
		return lay, err
	}
	removeTemporaries(s.dir)
	for _, n := range bads {
		bad := segPath(s.dir, n) + badSuffix
		if slices.Contains(segs, n) { // already salvaged
			if err := os.Remove(bad); err != nil {
				return lay, fmt.Errorf("remove salvaged segment: %w", err)
			}
			continue
		}
		// A segment diskqueue read to its end (see segmentEnd) and whose
		// removal a crash prevented: every frame valid and acknowledged.
		if sc, err := scanSegment(bad, 0, true, acked, s.opts.MaxRecordBytes); err == nil && sc.badAt < 0 && sc.unacked == 0 {
			if s.arch != nil {
				s.stageSegment(n)
			}
			s.log.Info("removing fully read segment", logKeySegment, filepath.Base(bad), "frames", sc.frames)
			if err := os.Remove(bad); err != nil {
				return lay, fmt.Errorf("remove fully read segment: %w", err)
			}
			continue
		}
		if err := s.salvage(n, 0, false); err != nil {
			return lay, err
		}
		if _, err := os.Stat(segPath(s.dir, n)); err == nil {
			segs = append(segs, n)
		}
	}
	slices.Sort(segs)
	if len(segs) == 0 {
		n := int64(0)
		if hint != nil && hint.writeFile >= 0 {
			n = hint.writeFile
		}
		f, err := os.OpenFile(segPath(s.dir, n), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return lay, fmt.Errorf("create segment: %w", err)
		}
		f.Close()
		segs = []int64{n}
	}
	// diskqueue reads segments by consecutive numbers: close any gap.
	for i := 1; i < len(segs); i++ {
		if want := segs[0] + int64(i); segs[i] != want {
			s.log.Warn("renumbering segment to close a gap", logKeySegment, segName(segs[i]), "to", segName(want))
			if err := os.Rename(segPath(s.dir, segs[i]), segPath(s.dir, want)); err != nil {
				return lay, fmt.Errorf("renumber segment: %w", err)
			}
			segs[i] = want
		}
	}
	first := segs[0]
	start := int64(0)
	if hint != nil && hint.readFile == first && hint.readPos > 0 && frameHeaderAt(segPath(s.dir, first), hint.readPos) {
		start = hint.readPos
	}
	lay.readFile, lay.readPos = first, start
	for i, n := range segs {
		from := int64(0)
		if i == 0 {
			from = start
		}
		last := i == len(segs)-1
		path := segPath(s.dir, n)
		sc, err := scanSegment(path, from, last, acked, s.opts.MaxRecordBytes)
		if err != nil {
			return lay, err
		}
		if sc.badAt >= 0 {
			if err := s.fixSegment(n, from, sc, last); err != nil {
				return lay, err
			}
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				// Nothing in it survived and salvage removed it: start
				// over, so that the gap it leaves is closed and the read
				// position found again. Each pass removes a segment.
				return s.recoverLayout(acked, hint)
			}
			if i == 0 {
				lay.readPos = 0
				from = 0
			}
			if sc, err = scanSegment(path, from, last, acked, s.opts.MaxRecordBytes); err != nil {
				return lay, err
			}
			if sc.badAt >= 0 {
				return lay, fmt.Errorf("recover segment %s: still invalid at %d after salvage: %s", segName(n), sc.badAt, sc.reason)
			}
		}
		lay.frames += sc.frames
		lay.depth += sc.unacked
		lay.bytes += sc.bytes
		lay.maxSeq = max(lay.maxSeq, sc.maxSeq)
		if sc.hasFirst && !lay.hasOldest {
			lay.oldest, lay.hasOldest = sc.oldest, !sc.oldest.IsZero()
		}
		if last {
			lay.writeFile, lay.writePos = n, sc.size
		}
		if err := syncPath(path, s.h.syncFile); err != nil {
			return lay, err
		}
	}
	if err := syncDir(s.dir, s.h.syncFile); err != nil {
		return lay, err
	}
	return lay, nil
}

// fixSegment repairs segment n whose scan from offset from stopped at an
// invalid frame: a torn last frame of the last segment is truncated,
// anything else salvaged.
func (s *Spool) fixSegment(n, from int64, sc segScan, last bool) error {
	path := segPath(s.dir, n)
	if last && sc.torn {
		// Only the bytes from the torn frame on (one record at most), not
		// the whole segment (up to SegmentBytes, 64 MiB by default).
		tail, err := readFrom(path, sc.badAt)
		if err != nil {
			return fmt.Errorf("recover segment: %w", err)
		}
		if nextFrame(tail, 1, s.opts.MaxRecordBytes) < 0 {
			// A write cut short by a crash, most likely, but it may be a
			// damaged last frame: its bytes go to the dead-letter queue,
			// counted, before they are cut.
			if err := s.quarantine(segName(n), sc.badAt, tail, "torn write at end of segment: "+sc.reason); err != nil {
				return err
			}
			if err := os.Truncate(path, sc.badAt); err != nil {
				return fmt.Errorf("truncate torn segment: %w", err)
			}
			return nil
		}
	}
	return s.salvage(n, from, last)
}

// salvage rewrites segment n (reading n, or n.bad if n is gone) keeping the
// valid frames from offset from on and dead-lettering the invalid regions.
func (s *Spool) salvage(n, from int64, last bool) error {
	path := segPath(s.dir, n)
	src := path
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		src = path + badSuffix
	}
	data, err := os.ReadFile(src)
	if errors.Is(err, os.ErrNotExist) {
		s.log.Error("segment to salvage is missing", logKeySegment, segName(n))
		return nil
	}
	if err != nil {
		return fmt.Errorf("salvage segment: %w", err)
	}
	tmp := path + ".tmp"
	out, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("salvage segment: %w", err)
	}
	defer os.Remove(tmp)
	defer out.Close()
	size := int64(len(data))
	var kept, lost int64
	for off := min(from, size); off < size; {
		_, l, err := frameAt(data, off, s.opts.MaxRecordBytes)
		if err == nil {
			if _, err := out.Write(data[off : off+l]); err != nil {
				return fmt.Errorf("salvage segment: %w", err)
			}
			kept++
			off += l
			continue
		}
		end := nextFrame(data, off+1, s.opts.MaxRecordBytes)
		if end < 0 {
			end = size
			if last && tornAt(data, off, s.opts.MaxRecordBytes) {
				if err := s.quarantine(filepath.Base(src), off, data[off:], "torn write at end of segment: "+err.(*CorruptError).Reason); err != nil {
					return err
				}
				lost++
				break
			}
		}
		reason := err.(*CorruptError).Reason
		if end-off > l {
			reason = fmt.Sprintf("%s; %d bytes up to the next valid frame", reason, end-off)
		}
		if err := s.quarantine(filepath.Base(src), off, data[off:end], reason); err != nil {
			return err
		}
		lost++
		off = end
	}
	if err := s.h.syncFile(out); err != nil {
		return fmt.Errorf("salvage segment: sync: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("salvage segment: %w", err)
	}
	if kept == 0 && !last {
		// An empty segment that is not the write segment would only be an
		// end of file for diskqueue's reader to trip on.
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("salvage segment: remove empty segment: %w", err)
		}
	} else if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("salvage segment: %w", err)
	}
	if err := syncDir(s.dir, s.h.syncFile); err != nil {
		return err
	}
	if src != path {
		if err := os.Remove(src); err != nil {
			return fmt.Errorf("salvage segment: remove bad file: %w", err)
		}
	}
	s.log.Warn("salvaged segment", logKeySegment, segName(n), "records_kept", kept, "regions_dead_lettered", lost)
	return nil
}

// readFrom reads path from offset off to its end.
func readFrom(path string, off int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, max(0, st.Size()-off))
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}

// tornAt reports whether the frame at off runs past the end of data (a
// write cut short), as opposed to bytes that are wrong.
func tornAt(data []byte, off int64, maxRecord int32) bool {
	if off+4 > int64(len(data)) {
		return true
	}
	l := int64(binary.BigEndian.Uint32(data[off:]))
	return l >= fixedHeaderBytes && l <= int64(maxRecord) && off+4+l > int64(len(data))
}

// quarantine stores corrupt bytes in the dead-letter queue, counts and
// logs the event.
func (s *Spool) quarantine(segment string, off int64, region []byte, reason string) error {
	raw := region[:min(len(region), int(s.opts.MaxRecordBytes))]
	if err := s.dlq.add(dlKindRaw, time.Now(), segment, off, int64(len(region)), reason, raw); err != nil {
		return fmt.Errorf("quarantine corrupt bytes: %w", err)
	}
	s.corrupt.Add(1)
	s.log.Error("corrupt record moved to dead-letter queue", logKeySegment, segment, logKeyOffset, off,
		"bytes", len(region), logKeyReason, reason)
	return nil
}

// frameHeaderAt reports whether a plausible frame starts at off in path.
func frameHeaderAt(path string, off int64) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 4+fixedHeaderBytes)
	if _, err := f.ReadAt(b, off); err != nil {
		return false
	}
	h, err := parseHeader(b[4:])
	return err == nil && int64(h.hdrLen+h.storedLen) == int64(binary.BigEndian.Uint32(b))
}

func syncPath(path string, syncFile func(*os.File) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync segment: %w", err)
	}
	err = syncFile(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("sync segment %s: %w", filepath.Base(path), err)
	}
	return nil
}

// maxRepairRuns is how many repairs in a row may target the same place
// before Peek fails instead.
const maxRepairRuns = 2

// repair runs when Peek meets a record that fails its CRC (headErr) or
// diskqueue reported a read error: it stops diskqueue, salvages the
// affected segments from the failing offset on, and reopens diskqueue from
// the files. Called from Peek.
func (s *Spool) repair(ctx context.Context, headErr error) error {
	select {
	case s.putSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closedCh:
		return ErrClosed
	}
	defer func() { <-s.putSem }()
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if err := s.dq.Close(); err != nil {
		s.log.Warn("close diskqueue for repair", logKeyErr, err)
	}
	s.dq = nil // closing twice would panic
	s.dropEnded()
	meta, merr := readDQMeta(s.dir)
	type target struct{ n, from int64 }
	var targets []target
	if headErr != nil {
		if merr == nil {
			targets = append(targets, target{meta.readFile, meta.readPos})
		} else if segs, _, err := listSegments(s.dir); err == nil && len(segs) > 0 {
			targets = append(targets, target{segs[0], 0})
		}
	}
	for _, ev := range s.takeEvents() {
		n, _, ok := parseSegName(filepath.Base(ev.file))
		if !ok {
			continue
		}
		s.log.Warn("diskqueue could not read segment; salvaging", logKeySegment, filepath.Base(ev.file),
			logKeyOffset, ev.offset, logKeyErr, ev.err)
		targets = append(targets, target{n, ev.offset})
	}
	// Salvage is deterministic: if the same targets come back with no
	// record delivered since, another round would fail the same way, for
	// ever. Stop and say so.
	key := fmt.Sprint(targets)
	if headErr != nil {
		key += " " + headErr.Error()
	}
	if key == s.lastRepair {
		s.repairRuns++
	} else {
		s.lastRepair, s.repairRuns = key, 1
	}
	if s.repairRuns > maxRepairRuns {
		s.broken = fmt.Errorf("repair: the same read failure (segment, offset: %v) came back after %d repairs; giving up instead of looping (head error: %v)",
			targets, maxRepairRuns, headErr)
		// diskqueue stays closed (Put fails, see Put); the files are left
		// as they are for an operator and the next Open.
		s.log.Error("spool repair does not make progress; delivery stops", logKeyErr, s.broken)
		return s.broken
	}
	segs, _, _ := listSegments(s.dir)
	highest := int64(-1)
	if len(segs) > 0 {
		highest = segs[len(segs)-1]
	}
	for _, t := range targets {
		if err := s.salvage(t.n, t.from, t.n >= highest); err != nil {
			s.setSyncErr(err)
			s.broken = fmt.Errorf("repair: %w", err)
			return s.broken
		}
	}
	if err := s.reload(&dqMeta{readFile: -1, writeFile: -1}); err != nil {
		s.setSyncErr(err)
		s.broken = fmt.Errorf("repair: %w", err)
		return s.broken
	}
	if s.arch != nil {
		s.restage()
	}
	return nil
}
