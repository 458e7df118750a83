package spool

// The archive: delivered segments kept for replay (Options.Retain,
// Options.RetainBytes).
//
// How the archive gets its files without patching go-diskqueue: go-diskqueue
// deletes a complete segment itself once its reader has moved past it (or
// renames it .bad when its reader was caught up at the segment's end, and
// the spool deletes that), and it tells nobody when. So the spool takes a
// hard link of every complete segment the moment go-diskqueue rolls its
// writer past it (Put sees the roll; Open and repair link the complete
// segments they find) into <spool dir>/archive-staging: the same inode, no
// byte copied, no extra disk while both names exist. Once neither the
// segment nor its .bad is left in the spool directory, go-diskqueue has
// read, and the spool acknowledged, every frame of it, and the link is
// renamed into the archive and indexed. The spool's own rotation would
// have meant a second writer of segment files; copying at delete time
// would have doubled the writes. Everything that knows go-diskqueue's
// file names stays in diskqueue.go. The files keep the spool's record
// format (CRC-framed, compressed), so the spool's frame reader reads them
// and names what is damaged. A staging link lost in a crash (not yet
// fsynced in its directory) costs that segment's archive copy, never a
// pending record.
//
// Layout, in <spool dir>/archive (shared by the two lanes of a sink):
//
//	NNNNNNNNNNNN.seg  an archived segment, numbered in archive order
//	NNNNNNNNNNNN.idx  its index (JSON, see ArchiveSegment), written after
//	                  the segment, by tmp file and rename
//
// A segment without its index is not yet part of the archive: readers skip
// it, and the next Open indexes it. Eviction removes the index first, so a
// reader never lists a segment that is being removed (one that has it open
// keeps reading it). Readers take no lock: the live relay only ever adds
// complete files and removes whole ones, so `slsrelay replay --from-spool`
// runs beside it.
//
// The archive is outside the spool's budget: MaxBytes counts only
// unacknowledged records, and when Put meets the free-disk floor the
// oldest archived segments are evicted before Put waits. Retain and
// RetainBytes evict oldest first too. Each eviction is counted and logged.
// Pending records are never in the archive, so nothing undelivered is ever
// evicted.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ArchiveDirName is the subdirectory of a sink's spool directory that
// holds its archive.
const ArchiveDirName = "archive"

const (
	archSegSuffix = ".seg"
	archIdxSuffix = ".idx"
)

// ArchiveSegment is the index of one archived segment: what a replay needs
// to decide whether to read it.
type ArchiveSegment struct {
	ID      int64  `json:"id"`
	Segment string `json:"segment"` // the spool segment it was (for logs)
	Bytes   int64  `json:"bytes"`
	Records int64  `json:"records"`
	Events  int64  `json:"events"`
	// Sources lists the logstores and their shards in the segment.
	Sources []ArchiveSource `json:"sources"`
	// LogMin, LogMax bound the logs' own time (__time__, unix seconds).
	LogMin int64 `json:"log_min"`
	LogMax int64 `json:"log_max"`
	// ReceivedMin, ReceivedMax bound the records' receive times.
	ReceivedMin time.Time `json:"received_min"`
	ReceivedMax time.Time `json:"received_max"`
	FirstSeq    uint64    `json:"first_seq"`
	LastSeq     uint64    `json:"last_seq"`
	// Damaged lists the regions that failed their check when the segment
	// was indexed (a reader finds later damage itself).
	Damaged  []ArchiveDamage `json:"damaged,omitempty"`
	Archived time.Time       `json:"archived"`
}

// ArchiveSource is one logstore's shards in an archived segment.
type ArchiveSource struct {
	Project  string `json:"project"`
	Logstore string `json:"logstore"`
	Shards   []int  `json:"shards"`
}

// ArchiveDamage is a region of an archived segment that does not read.
type ArchiveDamage struct {
	Segment string `json:"segment"` // archive file name
	Offset  int64  `json:"offset"`
	Length  int64  `json:"length"`
	Reason  string `json:"reason"`
	// After and Before are the receive times of the good records on
	// either side (zero when there is none): the damaged records were
	// received between them.
	After  time.Time `json:"after"`
	Before time.Time `json:"before"`
	// Data holds the damaged bytes (for Lanes.QuarantineArchived); not
	// kept in the index.
	Data []byte `json:"-"`
}

func (d ArchiveDamage) String() string {
	s := fmt.Sprintf("%s bytes [%d, %d): %s", d.Segment, d.Offset, d.Offset+d.Length, d.Reason)
	if !d.After.IsZero() || !d.Before.IsZero() {
		s += fmt.Sprintf(" (records received between %s and %s)", fmtTime(d.After), fmtTime(d.Before))
	}
	return s
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return t.UTC().Format(time.RFC3339)
}

// ArchiveStats summarises an archive.
type ArchiveStats struct {
	Segments int64
	Bytes    int64
	Events   int64
	// Oldest and Newest bound the receive times held (zero when empty).
	Oldest, Newest time.Time
	// Evictions and EvictedBytes count the segments evicted since Open
	// (retain, retain_bytes or the free-disk floor).
	Evictions    int64
	EvictedBytes int64
}

// archive is the archive of one sink (both lanes).
type archive struct {
	dir         string
	retain      time.Duration
	retainBytes int64
	maxRecord   int32
	syncFile    func(*os.File) error
	log         *slog.Logger

	evictMu sync.Mutex // one eviction at a time (both lanes evict)
	mu      sync.Mutex
	segs    []ArchiveSegment // by ID
	next    int64
	bytes   int64

	evictions, evictedBytes atomic.Int64
}

func archiveDir(spoolDir string) string { return filepath.Join(spoolDir, ArchiveDirName) }

func archSegPath(dir string, id int64) string {
	return filepath.Join(dir, fmt.Sprintf("%012d%s", id, archSegSuffix))
}

func archIdxPath(dir string, id int64) string {
	return filepath.Join(dir, fmt.Sprintf("%012d%s", id, archIdxSuffix))
}

// openArchive opens (creating) the archive in spoolDir/archive and indexes
// any segment a crash left without its index.
func openArchive(spoolDir string, opts Options, syncFile func(*os.File) error, log *slog.Logger) (*archive, error) {
	a := &archive{dir: archiveDir(spoolDir), retain: opts.Retain, retainBytes: opts.RetainBytes,
		maxRecord: opts.MaxRecordBytes, syncFile: syncFile, log: log.With("archive", archiveDir(spoolDir))}
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	segs, unindexed, err := listArchive(a.dir)
	if err != nil {
		return nil, err
	}
	for _, id := range unindexed {
		ix, err := a.index(id, "")
		if err != nil {
			return nil, err
		}
		segs = append(segs, ix)
	}
	slices.SortFunc(segs, func(x, y ArchiveSegment) int { return cmpInt(x.ID, y.ID) })
	a.segs = segs
	for _, s := range segs {
		a.bytes += s.Bytes
		a.next = max(a.next, s.ID+1)
	}
	return a, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// listArchive reads the indexes in dir, and the IDs of segments that have
// none. Temporaries are ignored.
func listArchive(dir string) (segs []ArchiveSegment, unindexed []int64, err error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list archive: %w", err)
	}
	have := map[int64]bool{}
	var ids []int64
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, archIdxSuffix):
			id, err := strconv.ParseInt(strings.TrimSuffix(name, archIdxSuffix), 10, 64)
			if err != nil {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, name))
			if errors.Is(err, fs.ErrNotExist) {
				continue // evicted meanwhile
			}
			var ix ArchiveSegment
			if err == nil {
				err = json.Unmarshal(b, &ix)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("archive index %s: %w", name, err)
			}
			have[id] = true
			segs = append(segs, ix)
		case strings.HasSuffix(name, archSegSuffix):
			if id, err := strconv.ParseInt(strings.TrimSuffix(name, archSegSuffix), 10, 64); err == nil {
				ids = append(ids, id)
			}
		}
	}
	for _, id := range ids {
		if !have[id] {
			unindexed = append(unindexed, id)
		}
	}
	slices.Sort(unindexed)
	slices.SortFunc(segs, func(x, y ArchiveSegment) int { return cmpInt(x.ID, y.ID) })
	return segs, unindexed, nil
}

// ReadArchive lists the indexed segments of the archive of the spool in
// spoolDir, oldest first. It takes no lock and writes nothing: it works
// while a relay has the spool open.
func ReadArchive(spoolDir string) ([]ArchiveSegment, error) {
	segs, _, err := listArchive(archiveDir(spoolDir))
	return segs, err
}

// InspectArchive summarises the archive of the spool in spoolDir without
// opening it (see ReadArchive).
func InspectArchive(spoolDir string) (ArchiveStats, error) {
	segs, err := ReadArchive(spoolDir)
	return summariseArchive(segs), err
}

func summariseArchive(segs []ArchiveSegment) ArchiveStats {
	var st ArchiveStats
	for _, s := range segs {
		st.Segments++
		st.Bytes += s.Bytes
		st.Events += s.Events
		if !s.ReceivedMin.IsZero() && (st.Oldest.IsZero() || s.ReceivedMin.Before(st.Oldest)) {
			st.Oldest = s.ReceivedMin
		}
		if s.ReceivedMax.After(st.Newest) {
			st.Newest = s.ReceivedMax
		}
	}
	return st
}

// add moves the fully read segment file path (a .bad go-diskqueue left, or
// one recovery found) into the archive and indexes it, then enforces the
// retention. An empty segment is removed instead.
func (a *archive) add(path, segment string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("archive segment: %w", err)
	}
	if st.Size() == 0 {
		return os.Remove(path)
	}
	a.mu.Lock()
	id := a.next
	a.next++
	a.mu.Unlock()
	if err := os.Rename(path, archSegPath(a.dir, id)); err != nil {
		return fmt.Errorf("archive segment: %w", err)
	}
	ix, err := a.index(id, segment)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.segs = append(a.segs, ix)
	a.bytes += ix.Bytes
	a.mu.Unlock()
	a.log.Debug("archived segment", logKeySegment, segment, "archive_id", id, "events", ix.Events, "bytes", ix.Bytes)
	a.enforce(time.Now())
	return nil
}

// index reads the record headers of archived segment id and writes its
// index durably. It hops from header to header (one small read per record:
// it runs on the delivery loop's path); only a segment whose headers do not
// chain up is read whole, verifying every frame, to find and name the
// damage. A reader checks every record's CRC anyway.
func (a *archive) index(id int64, segment string) (ArchiveSegment, error) {
	path := archSegPath(a.dir, id)
	ix, err := a.scanIndex(id, segment, path, true)
	if errors.Is(err, errHeadersBroken) {
		ix, err = a.scanIndex(id, segment, path, false)
	}
	if err != nil {
		return ix, fmt.Errorf("index archived segment %d: %w", id, err)
	}
	return ix, a.writeIndex(ix)
}

var errHeadersBroken = errors.New("record headers do not chain up")

// hopHeaders calls frame with the header (strings included) of each frame
// of path; errHeadersBroken when a header is not valid.
func hopHeaders(path string, maxRecord int32, frame func(hdr []byte, off int64) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	buf := make([]byte, 4+fixedHeaderBytes, 4+fixedHeaderBytes+4*65535)
	for off := int64(0); off < size; {
		if off+4+fixedHeaderBytes > size {
			return errHeadersBroken
		}
		buf = buf[:4+fixedHeaderBytes]
		if _, err := f.ReadAt(buf, off); err != nil {
			return fmt.Errorf("read header: %w", err)
		}
		l := int64(binary.BigEndian.Uint32(buf))
		h, herr := parseHeader(buf[4:])
		if herr != nil || l > int64(maxRecord) || int64(h.hdrLen+h.storedLen) != l || off+4+l > size {
			return errHeadersBroken
		}
		if h.hdrLen > fixedHeaderBytes { // the strings
			buf = buf[:4+h.hdrLen]
			if _, err := f.ReadAt(buf[4+fixedHeaderBytes:], off+4+fixedHeaderBytes); err != nil {
				return fmt.Errorf("read header: %w", err)
			}
		}
		if err := frame(buf[4:4+h.hdrLen], off); err != nil {
			return err
		}
		off += 4 + l
	}
	return nil
}

func (a *archive) scanIndex(id int64, segment, path string, hop bool) (ArchiveSegment, error) {
	ix := ArchiveSegment{ID: id, Segment: segment, Archived: time.Now().UTC(), LogMin: -1}
	srcs := map[[2]string]map[int]bool{}
	each := func(b []byte, off int64) error {
		h, err := parseHeader(b)
		if err != nil {
			return err
		}
		m := readMeta(b)
		ix.Records++
		ix.Events += m.count
		if ix.LogMin < 0 || m.minTime < ix.LogMin {
			ix.LogMin = m.minTime
		}
		ix.LogMax = max(ix.LogMax, m.maxTime)
		if !h.receivedAt.IsZero() {
			if ix.ReceivedMin.IsZero() || h.receivedAt.Before(ix.ReceivedMin) {
				ix.ReceivedMin = h.receivedAt.UTC()
			}
			if h.receivedAt.After(ix.ReceivedMax) {
				ix.ReceivedMax = h.receivedAt.UTC()
			}
		}
		if ix.FirstSeq == 0 {
			ix.FirstSeq = h.seq
		}
		ix.LastSeq = h.seq
		k := [2]string{m.project, m.logstore}
		if srcs[k] == nil {
			srcs[k] = map[int]bool{}
		}
		srcs[k][m.shard] = true
		return nil
	}
	var err error
	if hop {
		err = hopHeaders(path, a.maxRecord, each)
	} else {
		err = scanArchiveFrames(path, 0, a.maxRecord, each, func(d ArchiveDamage) {
			d.Data = nil
			ix.Damaged = append(ix.Damaged, d)
			a.log.Warn("archived segment has a damaged region; the replay skips it", "damage", d.String())
		})
	}
	if err != nil {
		return ix, err
	}
	if ix.LogMin < 0 {
		ix.LogMin = 0
	}
	if st, err := os.Stat(path); err == nil {
		ix.Bytes = st.Size()
	}
	for k, shards := range srcs {
		s := ArchiveSource{Project: k[0], Logstore: k[1]}
		for sh := range shards {
			s.Shards = append(s.Shards, sh)
		}
		slices.Sort(s.Shards)
		ix.Sources = append(ix.Sources, s)
	}
	slices.SortFunc(ix.Sources, func(x, y ArchiveSource) int {
		return strings.Compare(x.Project+"/"+x.Logstore, y.Project+"/"+y.Logstore)
	})
	return ix, nil
}

// writeIndex writes ix beside its segment: tmp file, fsync, rename,
// directory fsync.
func (a *archive) writeIndex(ix ArchiveSegment) error {
	id := ix.ID
	b, _ := json.Marshal(ix) // cannot fail
	tmp := archIdxPath(a.dir, id) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write archive index: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = a.syncFile(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, archIdxPath(a.dir, id))
	}
	if err == nil {
		err = syncDir(a.dir, a.syncFile)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write archive index: %w", err)
	}
	return nil
}

// recordMeta is the part of a record header the index needs.
type recordMeta struct {
	shard              int
	count              int64
	minTime, maxTime   int64
	project, logstore  string
	cursor, nextCursor string
}

// readMeta reads the fixed fields and the strings of a record whose
// header parseHeader accepted.
func readMeta(b []byte) recordMeta {
	be := binary.BigEndian
	m := recordMeta{shard: int(int64(be.Uint64(b[20:]))), count: int64(be.Uint64(b[28:])),
		minTime: int64(be.Uint64(b[36:])), maxTime: int64(be.Uint64(b[44:]))}
	off := fixedHeaderBytes
	var strs [4]string
	for i := range 4 {
		l := int(be.Uint16(b[68+2*i:]))
		if off+l > len(b) {
			break
		}
		strs[i] = string(b[off : off+l])
		off += l
	}
	m.project, m.logstore, m.cursor, m.nextCursor = strs[0], strs[1], strs[2], strs[3]
	return m
}

// scanArchiveFrames calls frame for each valid frame (the record bytes,
// CRC checked, and the frame's offset) of the archived segment at path from
// offset from, and damaged for each region that is not a valid frame,
// resuming at the next valid one.
func scanArchiveFrames(path string, from int64, maxRecord int32, frame func(b []byte, off int64) error, damaged func(ArchiveDamage)) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	name := filepath.Base(path)
	var last time.Time
	off := from
	for off < int64(len(data)) {
		h, n, err := frameAt(data, off, maxRecord)
		if err != nil {
			end := nextFrame(data, off+1, maxRecord)
			if end < 0 {
				end = int64(len(data))
			}
			d := ArchiveDamage{Segment: name, Offset: off, Length: end - off, After: last, Data: data[off:end]}
			var ce *CorruptError
			if errors.As(err, &ce) {
				d.Reason = ce.Reason
			} else {
				d.Reason = err.Error()
			}
			if end < int64(len(data)) {
				if nh, _, err := frameAt(data, end, maxRecord); err == nil {
					d.Before = nh.receivedAt.UTC()
				}
			}
			damaged(d)
			off = end
			continue
		}
		if err := frame(data[off+4:off+n], off); err != nil {
			return err
		}
		if !h.receivedAt.IsZero() {
			last = h.receivedAt.UTC()
		}
		off += n
	}
	return nil
}

// ArchivedRecord is one record read from the archive.
type ArchivedRecord struct {
	*Record
	// Offset is the frame's offset in the archived segment, Next the
	// offset after it (where a resumed read continues).
	Offset, Next int64
}

// ReadArchiveSegment reads archived segment seg of the spool in spoolDir
// from offset from, calling fn for each record whose logs' time range
// overlaps [logFrom, logTo) (unix seconds; the other records are skipped
// without being decompressed) and damaged for each region that does not
// read (a record that fails its CRC or does not decode). It takes no lock
// (see ReadArchive). A segment evicted before it was opened is reported as
// an error wrapping fs.ErrNotExist.
func ReadArchiveSegment(spoolDir string, seg ArchiveSegment, from, logFrom, logTo int64,
	fn func(ArchivedRecord) error, damaged func(ArchiveDamage)) error {
	path := archSegPath(archiveDir(spoolDir), seg.ID)
	return scanArchiveFrames(path, from, DefaultMaxRecordBytes, func(b []byte, off int64) error {
		next := off + 4 + int64(len(b))
		m := readMeta(b)
		if m.maxTime < logFrom || m.minTime >= logTo {
			return fn(ArchivedRecord{Offset: off, Next: next})
		}
		r, err := decodeRecord(b)
		if err != nil {
			h, _ := parseHeader(b)
			damaged(ArchiveDamage{Segment: filepath.Base(path), Offset: off, Length: next - off,
				Reason: fmt.Sprintf("record seq %d does not decode: %v", h.seq, err), After: h.receivedAt, Before: h.receivedAt, Data: b})
			return fn(ArchivedRecord{Offset: off, Next: next})
		}
		return fn(ArchivedRecord{Record: r, Offset: off, Next: next})
	}, damaged)
}

// enforce evicts the oldest segments while the archive is over RetainBytes
// or its oldest segment's newest record is older than Retain.
func (a *archive) enforce(now time.Time) {
	for {
		a.mu.Lock()
		if len(a.segs) == 0 {
			a.mu.Unlock()
			return
		}
		old := a.segs[0]
		why := ""
		switch {
		case a.retainBytes > 0 && a.bytes > a.retainBytes:
			why = "retain_bytes"
		case a.retain > 0 && !old.ReceivedMax.IsZero() && now.Sub(old.ReceivedMax) > a.retain:
			why = "retain"
		case a.retain > 0 && old.ReceivedMax.IsZero() && now.Sub(old.Archived) > a.retain:
			why = "retain"
		}
		a.mu.Unlock()
		if why == "" {
			return
		}
		if !a.evictOldest(why) {
			return
		}
	}
}

// evictOldest removes the oldest archived segment (index first); false if
// the archive is empty or the removal failed.
func (a *archive) evictOldest(why string) bool {
	a.evictMu.Lock()
	defer a.evictMu.Unlock()
	a.mu.Lock()
	if len(a.segs) == 0 {
		a.mu.Unlock()
		return false
	}
	old := a.segs[0]
	a.mu.Unlock()
	if err := os.Remove(archIdxPath(a.dir, old.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.log.Error("evict archived segment", logKeyErr, err)
		return false
	}
	if err := os.Remove(archSegPath(a.dir, old.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.log.Error("evict archived segment", logKeyErr, err)
		return false
	}
	a.mu.Lock()
	a.segs = a.segs[1:]
	a.bytes -= old.Bytes
	left := a.bytes
	a.mu.Unlock()
	a.evictions.Add(1)
	a.evictedBytes.Add(old.Bytes)
	a.log.Warn("evicted archived segment", "reason", why, "archive_id", old.ID, "bytes", old.Bytes,
		"events", old.Events, "received_from", fmtTime(old.ReceivedMin), "received_to", fmtTime(old.ReceivedMax),
		"archive_bytes_left", left)
	return true
}

// makeRoom evicts oldest archived segments until free() reports at least
// need bytes free or the archive is empty; it reports whether anything was
// evicted.
func (a *archive) makeRoom(need int64, free func() (int64, error)) bool {
	evicted := false
	for {
		f, err := free()
		if err != nil || f >= need {
			return evicted
		}
		if !a.evictOldest("free-disk floor") {
			return evicted
		}
		evicted = true
	}
}

func (a *archive) stats() ArchiveStats {
	a.enforce(time.Now())
	a.mu.Lock()
	st := summariseArchive(a.segs)
	a.mu.Unlock()
	st.Evictions = a.evictions.Load()
	st.EvictedBytes = a.evictedBytes.Load()
	return st
}

// QuarantineArchived stores the bytes of a damaged region of an archived
// segment (found by ReadArchiveSegment) in the dead-letter queue, as
// corrupt bytes of segment "archive/<name>" with the reason, counted like
// corruption found in the spool: evidence kept, the region named.
func (l *Lanes) QuarantineArchived(d ArchiveDamage) error {
	return l.lanes[0].quarantine(ArchiveDirName+"/"+d.Segment, d.Offset, d.Data, "archived segment: "+d.Reason)
}
