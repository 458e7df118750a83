package deliver

// Repairing a file sink's newest file on open: a crash between write and
// fsync can leave a torn tail, never acknowledged (see file.go).

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"strings"
)

// repairTail cuts name after its last complete line (gzip: member) and
// fsyncs it; it returns the new size and how many bytes were cut.
func repairTail(name string, gz bool) (size, cut int64, err error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	if gz {
		if lastGzipMemberClean(f, st.Size()) {
			return st.Size(), 0, nil
		}
		size, err = lastGzipMemberEnd(f)
	} else {
		size, err = lastNewlineEnd(f, st.Size())
	}
	if err != nil {
		return 0, 0, err
	}
	if size == st.Size() {
		return size, 0, nil
	}
	if err := f.Truncate(size); err != nil {
		return 0, 0, err
	}
	return size, st.Size() - size, f.Sync()
}

// lastNewlineEnd returns the offset just after the last '\n' of f (0 if none).
func lastNewlineEnd(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil {
			return 0, err
		}
		if i := strings.LastIndexByte(string(b), '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// lastGzipMemberEnd returns the offset just after the last gzip member of f
// that decompresses completely with a good checksum.
func lastGzipMemberEnd(f *os.File) (int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	// gzip.Reader reads through a ByteReader without buffering ahead, so
	// the count is exactly where each member ends.
	cr := &countingReader{r: bufio.NewReaderSize(f, 256<<10)}
	var good int64
	zr := new(gzip.Reader)
	for {
		if err := zr.Reset(cr); err != nil {
			return good, nil // EOF, or a torn or foreign header
		}
		zr.Multistream(false)
		if _, err := io.Copy(io.Discard, zr); err != nil {
			return good, nil
		}
		good = cr.n
	}
}

// gzipHeader is how every member this sink writes begins (gzip.Writer at
// BestSpeed, no name or time).
var gzipHeader = func() []byte {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	_ = zw.Close()
	return b.Bytes()[:10]
}()

// lastGzipMemberClean is the fast path of the gzip repair: the file ends
// with a complete member, found by the last occurrence of the sink's
// member header and decoded to exactly the end of the file. Then only
// that member is read, not the whole file (up to MaxBytes); otherwise
// (after a crash) lastGzipMemberEnd scans from the start.
func lastGzipMemberClean(f *os.File, size int64) bool {
	if size == 0 {
		return true
	}
	const chunk = 1 << 20
	buf := make([]byte, chunk+len(gzipHeader))
	for end := size; end > 0; {
		start := max(0, end-chunk)
		n := min(int64(len(buf)), size-start)
		b := buf[:n]
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return false
		}
		if i := bytes.LastIndex(b, gzipHeader); i >= 0 {
			cr := &countingReader{r: bufio.NewReader(io.NewSectionReader(f, start+int64(i), size-start-int64(i)))}
			zr, err := gzip.NewReader(cr)
			if err != nil {
				return false
			}
			zr.Multistream(false)
			if _, err := io.Copy(io.Discard, zr); err != nil {
				return false
			}
			return start+int64(i)+cr.n == size
		}
		end = start
	}
	return false
}

type countingReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}
