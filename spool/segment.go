package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"
)

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
