package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	diskqueue "github.com/nsqio/go-diskqueue"

	"slsrelay/internal/failpoint"
)

// Everything the spool knows about go-diskqueue's internals lives in this
// file. go-diskqueue (pinned in go.mod) writes and reads the segment files,
// but it reports what it does to them (a read error that renames a segment
// .bad and skips the rest of it, a failed fsync, a jump of its write
// position) only through printf-style log lines, and it keeps its
// positions in a text metadata file with its own naming. The spool needs
// both: it recognises the log lines by their format strings (classify),
// names and parses the segment, .bad and metadata files as go-diskqueue
// does, rewrites the metadata before go-diskqueue opens (recover.go), and
// knows which .bad renames are go-diskqueue's normal end-of-segment step
// (segmentEnd). None of that is public API, so an upgrade of go-diskqueue
// could silently change it and disable recovery: TestDiskqueuePinnedSource
// reads the pinned module's source and fails if any string recognised here
// (dqRecognised) or any file-name or metadata format is no longer in it.
// Upgrading go-diskqueue means checking this file against its new source.

// dqRecognised lists the go-diskqueue source fragments this file depends
// on; TestDiskqueuePinnedSource checks each is in the pinned module's
// diskqueue.go.
var dqRecognised = []string{
	// log format strings (classify)
	dqLogReadError, dqLogSyncFailed, dqLogJump, dqLogSkipWrite, dqLogSkipNew,
	// file names and the metadata format
	`"%s.diskqueue.%06d.dat"`, `"%s.diskqueue.meta.dat"`, `badFn + ".bad"`,
	`"%d\n%d,%d\n%d,%d\n"`, `"%s.%d.tmp"`,
	// the read error that renames the segment .bad (segmentEnd)
	"d.handleReadError()", "os.Rename(badFn, badRenameFn)",
	// persistMetaData: the metadata temporary, written then renamed
	"tmpFileName := fmt.Sprintf(", "os.Rename(tmpFileName, fileName)",
	// moveForward deletes a segment once its reader has passed it: the
	// archive (archive.go) takes a segment whose name is gone as read
	"oldReadFileNum != d.nextReadFileNum", "err := os.Remove(fn)",
}

// Fragments of go-diskqueue's log format strings (classify).
const (
	dqLogReadError  = "reading at %d of %s"
	dqLogSyncFailed = "failed to sync"
	dqLogJump       = "jump to next file"
	dqLogSkipWrite  = "skipping to next writeFileNum"
	dqLogSkipNew    = "skipping to new file"
)

// Segment files are go-diskqueue's: <dqName>.diskqueue.NNNNNN.dat, each a
// sequence of frames (4-byte big-endian length, then one encoded record),
// plus its metadata file <dqName>.diskqueue.meta.dat.
const (
	dqName    = "spool"
	segPrefix = dqName + ".diskqueue."
	segSuffix = ".dat"
	badSuffix = ".bad"
)

func segName(n int64) string             { return fmt.Sprintf("%s%06d%s", segPrefix, n, segSuffix) }
func segPath(dir string, n int64) string { return filepath.Join(dir, segName(n)) }
func metaPath(dir string) string         { return filepath.Join(dir, segPrefix+"meta.dat") }

// parseSegName returns the number of a segment (or .bad segment) file name.
func parseSegName(name string) (n int64, bad, ok bool) {
	if strings.HasSuffix(name, badSuffix) {
		name, bad = strings.TrimSuffix(name, badSuffix), true
	}
	if !strings.HasPrefix(name, segPrefix) || !strings.HasSuffix(name, segSuffix) {
		return 0, false, false
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(name, segPrefix), segSuffix), 10, 64)
	return n, bad, err == nil && n >= 0
}

// dqMeta mirrors go-diskqueue's metadata file.
type dqMeta struct {
	depth, readFile, readPos, writeFile, writePos int64
}

func readDQMeta(dir string) (dqMeta, error) {
	var m dqMeta
	b, err := os.ReadFile(metaPath(dir))
	if err != nil {
		return m, err
	}
	_, err = fmt.Sscanf(string(b), "%d\n%d,%d\n%d,%d\n", &m.depth, &m.readFile, &m.readPos, &m.writeFile, &m.writePos)
	if err != nil {
		return m, fmt.Errorf("parse diskqueue metadata: %w", err)
	}
	return m, nil
}

// writeDQMeta replaces go-diskqueue's metadata file durably (tmp, fsync,
// rename, directory fsync).
func writeDQMeta(dir string, m dqMeta, syncFile func(*os.File) error) error {
	tmp := metaPath(dir) + ".spool.tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write diskqueue metadata: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d\n%d,%d\n%d,%d\n", m.depth, m.readFile, m.readPos, m.writeFile, m.writePos)
	if err == nil {
		err = syncFile(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	failpoint.Hit(failpoint.SpoolMeta)
	if err == nil {
		err = os.Rename(tmp, metaPath(dir))
	}
	if err == nil {
		err = syncDir(dir, syncFile)
	}
	if err != nil {
		return fmt.Errorf("write diskqueue metadata: %w", err)
	}
	return nil
}

func (s *Spool) newDQ() diskqueue.Interface {
	l := newDQLogger(s.log, s.onDQEvent)
	return diskqueue.New(dqName, s.dir, s.opts.SegmentBytes, fixedHeaderBytes, s.opts.MaxRecordBytes,
		1<<62, 2*time.Second, l.logf)
}

// dqEvent is something go-diskqueue only reports through its log callback
// and that the spool must act on.
type dqEvent struct {
	kind   dqEventKind
	file   string // segment path
	offset int64
	err    string
	meta   bool // evSyncError: only the metadata file failed (isMetaError)
}

type dqEventKind int

const (
	// evReadError: diskqueue could not read a frame at file:offset and
	// has renamed the file to .bad and skipped the rest of it.
	evReadError dqEventKind = iota + 1
	// evSyncError: diskqueue's own fsync failed; pages may be lost.
	evSyncError
	// evDiverged: diskqueue moved its write position on its own.
	evDiverged
	// evJump: diskqueue renamed its read segment .bad and jumped to the
	// next one (always right after an evReadError); it moved its write
	// position too unless the segment was complete.
	evJump
)

// classify recognises the go-diskqueue messages (pinned version) that carry
// state the spool must know about, and reports whether onEvent found the
// message benign.
func (l *dqLogger) classify(f string, args []any) bool {
	if l.onEvent == nil {
		return false
	}
	switch {
	case strings.Contains(f, dqLogReadError):
		ev := dqEvent{kind: evReadError}
		if len(args) >= 4 {
			ev.offset, _ = args[1].(int64)
			ev.file, _ = args[2].(string)
			ev.err = fmt.Sprint(args[3])
		}
		return l.onEvent(ev)
	case strings.Contains(f, dqLogSyncFailed):
		ev := dqEvent{kind: evSyncError}
		if len(args) >= 2 {
			ev.err = fmt.Sprint(args[1])
			ev.meta = isMetaError(args[1])
		}
		return l.onEvent(ev)
	case strings.Contains(f, dqLogJump):
		return l.onEvent(dqEvent{kind: evJump})
	case strings.Contains(f, dqLogSkipWrite),
		strings.Contains(f, dqLogSkipNew):
		return l.onEvent(dqEvent{kind: evDiverged})
	}
	return false
}

// isMetaError reports whether err, from go-diskqueue's sync, concerns only
// its metadata file: persistMetaData writes "<meta>.<random>.tmp", fsyncs
// it and renames it over "<meta>" (an *os.PathError or *os.LinkError
// naming those). The spool does not depend on that file (recovery rebuilds
// it from the segments), so such a failure — typically ENOSPC on a full
// disk — puts no record at risk and need not stop writes.
func isMetaError(v any) bool {
	err, ok := v.(error)
	if !ok {
		return false
	}
	meta := dqName + ".diskqueue.meta.dat"
	var pe *os.PathError
	if errors.As(err, &pe) {
		return strings.HasPrefix(filepath.Base(pe.Path), meta)
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return strings.HasPrefix(filepath.Base(le.Old), meta) && filepath.Base(le.New) == meta
	}
	return false
}

// onDQEvent runs in diskqueue's ioLoop goroutine, synchronously, so the
// files are as diskqueue left them just before the logged action. It
// returns true for an expected, harmless event.
func (s *Spool) onDQEvent(ev dqEvent) bool {
	switch ev.kind {
	case evSyncError:
		if ev.meta {
			// Its metadata only: recovery does not read it (see
			// isMetaError). Logged (rate-limited) by dqLogger; diskqueue
			// retries it at its next sync.
			return false
		}
		s.setSyncErr(fmt.Errorf("diskqueue: %s: %w", ev.err, ErrSyncFailed))
	case evDiverged:
		s.diverged.Store(true)
	case evJump:
		s.evMu.Lock()
		clean := s.cleanJump
		s.cleanJump = false
		s.evMu.Unlock()
		if clean {
			return true
		}
		s.diverged.Store(true)
	case evReadError:
		if end, ok := s.segmentEnd(ev); ok {
			s.evMu.Lock()
			s.ended = append(s.ended, end)
			s.cleanJump = true
			s.evMu.Unlock()
			return true
		}
		s.diverged.Store(true)
		s.evMu.Lock()
		s.events = append(s.events, ev)
		s.evMu.Unlock()
		select {
		case s.evCh <- struct{}{}:
		default:
		}
	}
	return false
}

// segEnd is a complete segment that diskqueue read to its end.
type segEnd struct{ n, size int64 }

// segmentEnd recognises the read "error" of go-diskqueue (pinned version)
// when its reader is caught up at the end of the segment being written and
// the writer rolls to the next segment: writeOne then leaves readFileNum <
// writeFileNum with readPos at the end of the old file, and the next
// readOne meets io.EOF there. diskqueue's handleReadError then renames the
// old segment .bad and moves the reader to the start of the next one, which
// is exactly right: every frame of the old segment has been read (and,
// since the spool consumes only on Ack, acknowledged). It is the same for
// an empty complete segment. The test: io.EOF (a clean end, not
// io.ErrUnexpectedEOF) exactly at the file's size, in a segment that has a
// successor (so the writer has left it; diskqueue creates the next segment
// before reading again).
func (s *Spool) segmentEnd(ev dqEvent) (segEnd, bool) {
	if ev.err != io.EOF.Error() {
		return segEnd{}, false
	}
	n, bad, ok := parseSegName(filepath.Base(ev.file))
	if !ok || bad || filepath.Dir(ev.file) != filepath.Clean(s.dir) {
		return segEnd{}, false
	}
	st, err := os.Stat(ev.file)
	if err != nil || st.Size() != ev.offset {
		return segEnd{}, false
	}
	if _, err := os.Stat(segPath(s.dir, n+1)); err != nil {
		return segEnd{}, false
	}
	return segEnd{n, ev.offset}, true
}

// dropEnded removes the .bad files diskqueue left for segments it read to
// their end (segmentEnd). Called only when diskqueue has finished renaming
// them: after receiving from PeekChan (diskqueue cannot read further, hence
// meet an end, before the previous frame was consumed, and it renames
// before it sends again) or once it is closed. A .bad left by a crash is
// removed at recovery (it holds only acknowledged frames).
func (s *Spool) dropEnded() {
	s.evMu.Lock()
	ended := s.ended
	s.ended = nil
	s.evMu.Unlock()
	for _, e := range ended {
		bad := segPath(s.dir, e.n) + badSuffix
		st, err := os.Stat(bad)
		if err != nil || st.Size() != e.size {
			s.log.Warn("fully read segment not found as diskqueue renamed it; leaving it to recovery",
				logKeySegment, segName(e.n), logKeyErr, err)
			continue
		}
		if s.arch != nil {
			s.stageSegment(e.n) // normally linked already, when Put rolled
		}
		failpoint.Hit(failpoint.SpoolDelete)
		if err := os.Remove(bad); err != nil {
			s.log.Warn("remove fully read segment", logKeySegment, segName(e.n), logKeyErr, err)
			continue
		}
		s.log.Debug("removed fully read segment", logKeySegment, segName(e.n))
	}
	if s.arch != nil {
		s.promote()
	}
}

// removeTemporaries removes the temporary files a crash may have left:
// diskqueue's metadata temporaries and a salvage's (segment name + ".tmp").
// Only while the spool holds the directory lock and diskqueue is closed
// (recovery): anywhere else a temporary belongs to a writer at work.
func removeTemporaries(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	meta := filepath.Base(metaPath(dir)) + "."
	for _, e := range ents {
		name := e.Name()
		tmp, ok := strings.CutSuffix(name, ".tmp")
		if !ok {
			continue
		}
		if _, bad, ok := parseSegName(tmp); (ok && !bad) || strings.HasPrefix(name, meta) {
			os.Remove(filepath.Join(dir, name))
		}
	}
}

// Archive staging (archive.go). go-diskqueue deletes a complete segment
// itself once its reader moves past it (moveForward), or renames it .bad
// when its reader was caught up at the segment's end (segmentEnd, then
// dropEnded deletes it). Either way the spool does not get to move the
// file, so it takes a hard link of every complete segment as soon as
// go-diskqueue has rolled past it for writing: <dir>/archiveStagingDir/
// <segment name>, the same inode, no bytes copied. Once neither the segment
// nor its .bad is left in dir, go-diskqueue has read (and the spool
// acknowledged) every frame of it and the link moves into the archive.
const archiveStagingDir = "archive-staging"

func stagePath(dir string, n int64) string { return filepath.Join(dir, archiveStagingDir, segName(n)) }

// stageSegment links complete segment n for the archive.
func (s *Spool) stageSegment(n int64) {
	if err := os.MkdirAll(filepath.Join(s.dir, archiveStagingDir), 0o700); err != nil {
		s.log.Warn("archive: create staging directory", logKeyErr, err)
		return
	}
	err := os.Link(segPath(s.dir, n), stagePath(s.dir, n))
	if errors.Is(err, os.ErrNotExist) { // renamed .bad at its end (segmentEnd)
		err = os.Link(segPath(s.dir, n)+badSuffix, stagePath(s.dir, n))
	}
	if err != nil && !errors.Is(err, os.ErrExist) {
		s.log.Warn("archive: link complete segment", logKeySegment, segName(n), logKeyErr, err)
		return
	}
	s.stageMu.Lock()
	if !slices.Contains(s.staged, n) {
		s.staged = append(s.staged, n)
		slices.Sort(s.staged)
	}
	s.stageMu.Unlock()
}

// restage links every complete segment in dir not yet staged (Open and
// repair: the write segment is the highest) and lists what is staged.
func (s *Spool) restage() {
	segs, _, err := listSegments(s.dir)
	if err != nil {
		return
	}
	if ents, err := os.ReadDir(filepath.Join(s.dir, archiveStagingDir)); err == nil {
		s.stageMu.Lock()
		for _, e := range ents {
			if n, bad, ok := parseSegName(e.Name()); ok && !bad && !slices.Contains(s.staged, n) {
				s.staged = append(s.staged, n)
			}
		}
		slices.Sort(s.staged)
		s.stageMu.Unlock()
	}
	for i, n := range segs {
		if i < len(segs)-1 {
			s.stageSegment(n)
		}
	}
	s.promote()
}

// promote moves into the archive the staged segments go-diskqueue is done
// with (neither the segment nor its .bad is left in dir), oldest first.
func (s *Spool) promote() {
	s.stageMu.Lock()
	defer s.stageMu.Unlock()
	for len(s.staged) > 0 {
		n := s.staged[0]
		if _, err := os.Stat(segPath(s.dir, n)); err == nil {
			return
		}
		if _, err := os.Stat(segPath(s.dir, n) + badSuffix); err == nil {
			return
		}
		if err := s.arch.add(stagePath(s.dir, n), segName(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("archive delivered segment", logKeySegment, segName(n), logKeyErr, err)
			return
		}
		s.staged = s.staged[1:]
	}
}
