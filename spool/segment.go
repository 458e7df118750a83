package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"slsrelay/internal/failpoint"
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

// listSegments returns the numbers of the segment files and of the .bad
// files in dir, sorted. It writes nothing: it runs beside an open spool
// (Sync) and in inspection tools (Inspect), where a temporary file belongs
// to whoever is writing it; recovery removes leftovers (removeTemporaries).
func listSegments(dir string) (segs, bads []int64, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("list segments: %w", err)
	}
	for _, e := range ents {
		n, bad, ok := parseSegName(e.Name())
		switch {
		case !ok:
		case bad:
			bads = append(bads, n)
		default:
			segs = append(segs, n)
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })
	sort.Slice(bads, func(i, j int) bool { return bads[i] < bads[j] })
	return segs, bads, nil
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

func syncDir(dir string, syncFile func(*os.File) error) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	err = syncFile(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

// frameAt reports whether a valid frame (length, record with good CRC)
// starts at off in data, and its total length including the 4-byte prefix.
func frameAt(data []byte, off int64, maxRecord int32) (recordHeader, int64, error) {
	if off+4 > int64(len(data)) {
		return recordHeader{}, 0, corrupt("truncated frame length (%d bytes left)", int64(len(data))-off)
	}
	l := int64(binary.BigEndian.Uint32(data[off:]))
	if l < fixedHeaderBytes || l > int64(maxRecord) {
		return recordHeader{}, 0, corrupt("frame length %d out of range", l)
	}
	if off+4+l > int64(len(data)) {
		return recordHeader{}, 0, corrupt("truncated frame: %d of %d bytes", int64(len(data))-off-4, l)
	}
	h, err := verifyRecord(data[off+4 : off+4+l])
	return h, 4 + l, err
}

// nextFrame returns the offset of the first valid frame at or after from,
// or -1, by searching for the record magic.
func nextFrame(data []byte, from int64, maxRecord int32) int64 {
	for from+4 < int64(len(data)) {
		i := bytes.Index(data[from+4:], []byte(recordMagic))
		if i < 0 {
			return -1
		}
		q := from + int64(i)
		if _, _, err := frameAt(data, q, maxRecord); err == nil {
			return q
		}
		from = q + 1
	}
	return -1
}

// segScan summarises the frames of one segment from some offset on.
type segScan struct {
	end    int64 // end of the last good frame
	badAt  int64 // offset of the first bad frame, -1 if none
	reason string
	torn   bool // the bad frame runs past the end of the file
	size   int64

	frames   int64 // all frames
	unacked  int64 // frames with seq > acked
	bytes    int64 // their bytes
	maxSeq   uint64
	oldest   time.Time // ReceivedAt of the first unacked frame
	hasFirst bool
}

// scanSegment walks the frames of file from offset from. With verify it
// reads every frame and checks its CRC; without, it hops from header to
// header (cheap: one small read per record).
func scanSegment(path string, from int64, verify bool, acked uint64, maxRecord int32) (segScan, error) {
	sc := segScan{end: from, badAt: -1}
	f, err := os.Open(path)
	if err != nil {
		return sc, fmt.Errorf("scan segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return sc, fmt.Errorf("scan segment: %w", err)
	}
	sc.size = st.Size()
	var buf []byte
	hdr := make([]byte, 4+fixedHeaderBytes)
	off := from
	for off < sc.size {
		bad := func(reason string) (segScan, error) { sc.badAt, sc.reason = off, reason; return sc, nil }
		if off+4+fixedHeaderBytes > sc.size {
			sc.torn = true
			return bad("truncated frame at end of file")
		}
		if _, err := f.ReadAt(hdr, off); err != nil {
			return sc, fmt.Errorf("scan segment: %w", err)
		}
		l := int64(binary.BigEndian.Uint32(hdr))
		if l < fixedHeaderBytes || l > int64(maxRecord) {
			return bad(fmt.Sprintf("frame length %d invalid", l))
		}
		if off+4+l > sc.size {
			sc.torn = true
			return bad(fmt.Sprintf("frame of %d bytes truncated by end of file", l))
		}
		h, err := parseHeader(hdr[4:])
		if err != nil {
			return bad(err.Error())
		}
		if int64(h.hdrLen+h.storedLen) != l {
			return bad("frame length disagrees with record header")
		}
		if verify {
			if int64(cap(buf)) < l {
				buf = make([]byte, l)
			}
			buf = buf[:l]
			if _, err := f.ReadAt(buf, off+4); err != nil && !errors.Is(err, io.EOF) {
				return sc, fmt.Errorf("scan segment: %w", err)
			}
			if _, err := verifyRecord(buf); err != nil {
				return bad(err.(*CorruptError).Reason)
			}
		}
		sc.frames++
		if h.seq > acked {
			if !sc.hasFirst {
				sc.oldest, sc.hasFirst = h.receivedAt, true
			}
			sc.unacked++
			sc.bytes += 4 + l
		}
		sc.maxSeq = max(sc.maxSeq, h.seq)
		off += 4 + l
		sc.end = off
	}
	return sc, nil
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
