package deliver

// A sink writing events to local files, one per line: for an auditor's
// export (slsrelay replay into files), for debugging a pipeline, for tests.
//
// Files are numbered: Path "/x/audit.jsonl" is written as
// /x/audit-000001.jsonl, /x/audit-000002.jsonl, … (".gz" appended with
// Gzip). The highest number is the file being written; a new one is started
// when the next piece would take the current one past MaxBytes. No file is
// ever renamed, so a reader never sees one change its name.
//
// Durability: Send returns nil only after every byte of the batch was
// written and fsynced, and after a new file's directory entry was fsynced.
// The delivery loop acks the spool record only then.
//
// A crash (SIGKILL, power loss) between write and fsync leaves the batch's
// bytes partly on disk: complete lines of an unacknowledged batch (sent
// again after the restart: duplicates, as every sink allows) and possibly
// a torn last line. On open the sink repairs the newest file before writing:
// plain files are cut after their last newline, gzip files after their last
// complete gzip member. Everything cut was never acknowledged (an
// acknowledged batch always ends with a newline, and with Gzip a complete
// member). Until the sink opens the directory again, a torn tail stays: in
// plain files a last line without its newline, which is not valid JSON, so
// a line reader skips it; in gzip files a member cut short, after which
// gzip readers report an unexpected end having returned every complete
// member (zcat prints them, Go's gzip.Reader returns them before
// io.ErrUnexpectedEOF).

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults of FileOptions.
const (
	DefaultFileMaxBytes = 1 << 30
	DefaultFileName     = "file"
	// MinFileMaxBytes is the smallest FileOptions.MaxBytes accepted.
	MinFileMaxBytes = 4096
)

// File formats (FileOptions.Format).
const (
	// FileJSON writes the event object the HEC sink would send.
	FileJSON = "json"
	// FileRaw writes the log's fields as a JSON object.
	FileRaw = "raw"
)

// FileOptions configure a file sink. Zero values mean the defaults.
type FileOptions struct {
	// Name of the sink in logs and metrics (default "file").
	Name string
	// Path names the files: a sequence number goes before the extension
	// ("/x/audit.jsonl" → "/x/audit-000001.jsonl"). Its directory is
	// created if missing. Required.
	Path string
	// Format is FileJSON (default) or FileRaw.
	Format string
	// MaxBytes is the size at which a new file is started (default 1 GiB);
	// a file exceeds it only by a single line larger than it.
	MaxBytes int64
	// Gzip compresses the files; each batch (and each part of a batch that
	// starts a new file) is one complete gzip member.
	Gzip bool
	// Routing templates of the json format, as HECOptions' (same defaults).
	Host, Source, Sourcetype, Index string
	// Fields are indexed fields added to every json event, as HECOptions'.
	Fields map[string]string
	// Retry paces retries of transient failures (zero: DefaultRetryMin/Max).
	Retry RetryPolicy
	// Logger (default slog.Default()); a "sink" attribute is added.
	Logger *slog.Logger
}

// fileIO is what the sink needs of an open file; a test swaps in a fake.
type fileIO interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	Close() error
}

// File is a Sink writing newline-delimited JSON to numbered files. Safe for
// concurrent use (Sends are serialized).
type File struct {
	opts   FileOptions
	log    *slog.Logger
	dir    string
	stem   string // file name before the number
	ext    string // after it, ".gz" included
	format hecFormatter

	// Seams for tests: create a new file, sync a directory.
	create  func(name string) (fileIO, error)
	syncDir func(dir string) error

	lock *os.File // flock held while the sink is open

	mu      sync.Mutex
	f       fileIO // nil: the next Send starts file num+1
	num     int    // number of the current (or last) file
	size    int64  // bytes of the current file known synced
	written int64  // bytes of the current file written (synced or not)
	buf     []byte
	cuts    []int // ends of the pieces of buf
	gzbuf   bytes.Buffer
	gz      *gzip.Writer
	closed  bool

	retryLog logEvery
}

var _ Sink = (*File)(nil)

// OpenFile validates opts, creates the directory if missing, repairs the
// newest existing file's torn tail (see the package comment above) and
// opens it for appending when it has room.
func OpenFile(opts FileOptions) (*File, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	s := &File{opts: opts, create: createFile, syncDir: syncDirectory, retryLog: logEvery{every: 10 * time.Second}}
	s.log = opts.Logger.With(slog.String(attrSink, opts.Name))
	s.dir, s.stem, s.ext = splitFilePath(opts.Path, opts.Gzip)
	for _, t := range []struct {
		name, src string
		dst       **template
	}{
		{"Host", opts.Host, &s.format.host}, {"Source", opts.Source, &s.format.source},
		{"Sourcetype", opts.Sourcetype, &s.format.sourcetype}, {"Index", opts.Index, &s.format.index},
	} {
		src := t.src
		if src == "-" {
			src = ""
		}
		var err error
		if *t.dst, err = parseTemplate(src); err != nil {
			return nil, fmt.Errorf("file: %s: %w", t.name, err)
		}
	}
	s.format.setFields(opts.Fields)
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return nil, fmt.Errorf("file: create directory: %w", err)
	}
	if err := s.takeLock(); err != nil {
		return nil, err
	}
	if err := s.openLast(); err != nil {
		s.lock.Close()
		return nil, err
	}
	return s, nil
}

// takeLock stops two sinks (a relay and a replay on one config, say) from
// writing the same files: each would cut the other's unsynced tail as torn.
// The lock is a flock(2) on .<name>.lock beside the files, released by the
// kernel however the process ends.
func (s *File) takeLock() error {
	name := filepath.Join(s.dir, "."+strings.TrimSuffix(s.stem, "-")+s.ext+".lock")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("file: open lock %s: %w", name, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := io.ReadAll(io.LimitReader(f, 16))
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("file: the files of %s are being written by another process (pid %s); give this sink another path",
				s.opts.Path, strings.TrimSpace(string(pid)))
		}
		return fmt.Errorf("file: lock %s: %w", name, err)
	}
	if err := f.Truncate(0); err == nil { // the pid is a hint for the error above
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	s.lock = f
	return nil
}

func (o *FileOptions) setDefaults() error {
	if o.Name == "" {
		o.Name = DefaultFileName
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Format == "" {
		o.Format = FileJSON
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultFileMaxBytes
	}
	o.Retry = o.Retry.withDefaults()
	if o.Host == "" {
		o.Host = DefaultHECHost
	}
	if o.Source == "" {
		o.Source = DefaultHECSource
	}
	switch {
	case o.Path == "":
		return errors.New("file: Path is required")
	case strings.HasSuffix(o.Path, "/") || filepath.Base(o.Path) == "." || filepath.Base(o.Path) == "..":
		return fmt.Errorf("file: Path %q names a directory, want a file name", o.Path)
	case o.Format != FileJSON && o.Format != FileRaw:
		return fmt.Errorf("file: Format %q: want json or raw", o.Format)
	case o.MaxBytes < MinFileMaxBytes:
		return fmt.Errorf("file: MaxBytes %d: want at least %d", o.MaxBytes, MinFileMaxBytes)
	}
	return nil
}

// splitFilePath turns "/x/audit.jsonl" into "/x", "audit-", ".jsonl"
// (".jsonl.gz" with gzip): the number goes before the first extension.
func splitFilePath(path string, gz bool) (dir, stem, ext string) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	base = strings.TrimSuffix(base, ".gz")
	if i := strings.IndexByte(base[1:], '.'); i >= 0 {
		stem, ext = base[:i+1], base[i+1:]
	} else {
		stem = base
	}
	if gz {
		ext += ".gz"
	}
	return filepath.Clean(dir), stem + "-", ext
}

// FileName returns the path of file number n (for tools and tests).
func (s *File) FileName(n int) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s%06d%s", s.stem, n, s.ext))
}

// Files returns the paths of the sink's files, oldest first.
func (s *File) Files() ([]string, error) {
	nums, err := s.numbers()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(nums))
	for i, n := range nums {
		out[i] = s.FileName(n)
	}
	return out, nil
}

// numbers lists the numbers of the sink's existing files, ascending.
func (s *File) numbers() ([]int, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("file: list %s: %w", s.dir, err)
	}
	var nums []int
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, s.stem) || !strings.HasSuffix(name, s.ext) {
			continue
		}
		digits := name[len(s.stem) : len(name)-len(s.ext)]
		if len(digits) < 6 {
			continue
		}
		n, err := strconv.Atoi(digits)
		if err != nil || n <= 0 {
			continue
		}
		nums = append(nums, n)
	}
	sort.Ints(nums)
	return nums, nil
}

// openLast repairs the newest file and reopens it for appending if it has
// room; otherwise the first Send starts the next one.
func (s *File) openLast() error {
	nums, err := s.numbers()
	if err != nil {
		return err
	}
	if len(nums) == 0 {
		return nil
	}
	s.num = nums[len(nums)-1]
	name := s.FileName(s.num)
	size, cut, err := repairTail(name, s.opts.Gzip)
	if err != nil {
		return fmt.Errorf("file: repair %s: %w", name, err)
	}
	if cut > 0 {
		s.log.Warn("cut a torn tail left by a crash (never acknowledged; its records are sent again)",
			slog.String("file", name), slog.Int64("bytes", cut), slog.Int64("size", size))
	}
	if size >= s.opts.MaxBytes {
		return nil
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("file: open %s: %w", name, err)
	}
	s.f, s.size, s.written = f, size, size
	return nil
}

func createFile(name string) (fileIO, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
}

func syncDirectory(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Name implements Sink.
func (s *File) Name() string { return s.opts.Name }

// Close implements Sink; it is idempotent.
func (s *File) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.f != nil {
		err = s.f.Close()
		s.f = nil
	}
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

// Send implements Sink: it appends one line per event and returns once
// every byte is fsynced. A failed write or fsync cuts the file back to what
// was synced before and abandons it (the next attempt starts a new file:
// after a failed fsync the page cache can no longer be trusted). Transient
// failures (a full disk, an I/O error) are retried with backoff until ctx
// ends; a permission problem returns a Config *Error.
func (s *File) Send(ctx context.Context, b *Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("file: send after close")
	}
	if len(b.Events) == 0 {
		return nil
	}
	s.encode(b.Events)
	for attempt := 0; ; attempt++ {
		err := s.writeBatch()
		if err == nil || KindOf(err) != Transient {
			return err
		}
		if ok, n := s.retryLog.allow(); ok {
			s.log.Warn("writing failed, retrying", slog.Uint64(attrSeq, b.Seq), slog.String(attrErr, err.Error()),
				slog.Int("suppressed", n))
		}
		if err := sleepCtx(ctx, s.opts.Retry.Backoff(attempt)); err != nil {
			return err
		}
	}
}

// encode renders evs into s.buf, one line each, and cuts it into pieces of
// at most MaxBytes (a single larger line is a piece of its own).
func (s *File) encode(evs []Event) {
	s.buf, s.cuts = s.buf[:0], s.cuts[:0]
	var c metaCache
	start := 0
	for i := range evs {
		n := len(s.buf)
		if s.opts.Format == FileRaw {
			s.buf = appendRawEvent(s.buf, &evs[i])
		} else {
			s.buf = s.format.appendEvent(s.buf, &evs[i], &c)
		}
		if n > start && int64(len(s.buf)-start) > s.opts.MaxBytes {
			s.cuts = append(s.cuts, n)
			start = n
		}
	}
	s.cuts = append(s.cuts, len(s.buf))
}

// writeBatch writes the encoded pieces and fsyncs.
func (s *File) writeBatch() error {
	start := 0
	for _, end := range s.cuts {
		if err := s.writePiece(s.buf[start:end]); err != nil {
			return err
		}
		start = end
	}
	if err := s.f.Sync(); err != nil {
		return s.fail("fsync", err)
	}
	s.size = s.written
	return nil
}

// appendRawEvent appends the log's fields as a JSON object and a newline.
func appendRawEvent(dst []byte, e *Event) []byte {
	dst = append(dst, '{')
	for i, fl := range e.Fields {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, fl.Key)
		dst = append(dst, ':')
		dst = appendJSONString(dst, fl.Value)
	}
	return append(dst, '}', '\n')
}

// writePiece writes p (one gzip member of it with Gzip) to the current
// file, first starting a new one if there is none or p would take it past
// MaxBytes.
func (s *File) writePiece(p []byte) error {
	data := p
	if s.opts.Gzip {
		data = s.compress(p)
	}
	if s.f == nil || s.written > 0 && s.written+int64(len(data)) > s.opts.MaxBytes {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	if _, err := s.f.Write(data); err != nil {
		return s.fail("write", err)
	}
	s.written += int64(len(data))
	return nil
}

// compress returns p as one complete gzip member (valid until the next call).
func (s *File) compress(p []byte) []byte {
	s.gzbuf.Reset()
	if s.gz == nil {
		s.gz, _ = gzip.NewWriterLevel(&s.gzbuf, gzip.BestSpeed) // valid level
	} else {
		s.gz.Reset(&s.gzbuf)
	}
	_, _ = s.gz.Write(p) // writes to memory
	_ = s.gz.Close()
	return s.gzbuf.Bytes()
}

// rotate fsyncs and closes the current file, creates the next one and
// fsyncs the directory so that its entry survives a crash.
func (s *File) rotate() error {
	if s.f != nil {
		if err := s.f.Sync(); err != nil {
			return s.fail("fsync", err)
		}
		s.size = s.written
		err := s.f.Close()
		s.f = nil
		if err != nil {
			return fileError("close", s.FileName(s.num), err)
		}
	}
	name := s.FileName(s.num + 1)
	f, err := s.create(name)
	if err != nil {
		return fileError("create", name, err)
	}
	s.num++
	s.f, s.size, s.written = f, 0, 0
	if err := s.syncDir(s.dir); err != nil {
		return s.fail("fsync directory of", err)
	}
	return nil
}

// fail cuts the current file back to its synced size, abandons it (an
// empty one is removed) and returns the error for the loop to retry.
func (s *File) fail(op string, cause error) error {
	name := s.FileName(s.num)
	if s.f != nil {
		if err := s.f.Truncate(s.size); err == nil && s.size == 0 {
			_ = os.Remove(name)
		}
		_ = s.f.Close()
		s.f = nil
	}
	s.written = s.size
	return fileError(op, name, cause)
}

// fileError classifies a file-system failure: a permission problem needs
// an operator (Config), anything else (a full disk, an I/O error) is
// retried (Transient). Data is never dropped for either.
func fileError(op, name string, err error) error {
	kind := Transient
	if errors.Is(err, fs.ErrPermission) {
		kind = Config
	}
	return &Error{Kind: kind, EventIndex: -1, Err: fmt.Errorf("file: %s %s: %w", op, name, err)}
}
