// Package checkpoint keeps what the relay must remember across restarts
// besides the spool itself: per SLS shard, the cursor up to which logs are
// durably spooled, the data-loss gaps that were detected, and the progress
// of historical replay jobs (replay.go). It also owns the
// data directory's lock, which stops two relays from sharing one directory.
//
// The store is a bbolt file, dir/checkpoint.db; no bbolt type leaks out.
package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DBFile is the name of the checkpoint database inside the data directory.
const DBFile = "checkpoint.db"

// DefaultTimeout is the default for Options.Timeout.
const DefaultTimeout = time.Second

// CorruptPolicy says what Open does when checkpoint.db cannot be read.
type CorruptPolicy int

const (
	// CorruptFail makes Open return an error wrapping ErrCorrupt that names
	// the file. The relay does not start until an operator acts: move the
	// file aside (or delete it) and start again, which is safe (see
	// CorruptMoveAside). This is the default.
	CorruptFail CorruptPolicy = iota

	// CorruptMoveAside renames the bad file to checkpoint.db.corrupt-<UTC
	// time>, logs at error level with both paths, and starts with an empty
	// store. Safe: with no local cursor, ingest resumes from the SLS
	// consumer-group checkpoint, which never runs ahead of the local one
	// (docs/DESIGN.md, invariant 1), so the cost is duplicates, not loss. Recorded
	// gaps are lost with the file; they were also logged when recorded.
	CorruptMoveAside
)

// Options configure Open. The zero value is valid.
type Options struct {
	// Logger receives the store's rare log lines (corrupt file moved
	// aside). Nil discards them.
	Logger *slog.Logger

	// Timeout bounds how long Open waits for bbolt's own lock on
	// checkpoint.db. The directory lock is taken first and never waits, so
	// this only matters if something else opened the file. Zero means
	// DefaultTimeout.
	Timeout time.Duration

	// OnCorrupt chooses what Open does with an unreadable checkpoint.db.
	// Zero means CorruptFail.
	OnCorrupt CorruptPolicy
}

// ShardKey names one SLS shard.
//
// There is no consumer group in the key: a cursor here means "everything
// before it is in this relay's spools", a property of the data directory,
// not of the group. A relay reads each logstore through one consumer group;
// configuring the same project/logstore twice in one relay is a config error
// for cmd to reject, since both would share these keys.
type ShardKey struct {
	Project  string
	Logstore string
	Shard    int
}

func (k ShardKey) validate() error {
	switch {
	case k.Project == "" || strings.IndexByte(k.Project, 0) >= 0:
		return fmt.Errorf("checkpoint: invalid project %q", k.Project)
	case k.Logstore == "" || strings.IndexByte(k.Logstore, 0) >= 0:
		return fmt.Errorf("checkpoint: invalid logstore %q", k.Logstore)
	case k.Shard < 0 || k.Shard > 1<<31-1:
		return fmt.Errorf("checkpoint: invalid shard %d", k.Shard)
	}
	return nil
}

// Cursor is a shard's durable position.
type Cursor struct {
	// Cursor is the next SLS cursor to pull from: every log before it is
	// durably spooled.
	Cursor string
	// MaxTime is the newest __time__ spooled from the shard (unix seconds).
	MaxTime int64
	// Updated is when the cursor was committed (set by Commit when zero).
	Updated time.Time
}

// Gap is a range of logs known lost (docs/DESIGN.md, invariant 6), e.g. because a
// checkpoint aged out of the logstore's retention while the relay was down.
type Gap struct {
	Key      ShardKey
	From, To time.Time // the lost range of log time
	Detected time.Time // when the relay noticed (set by RecordGap when zero)
	Reason   string
}

// Store is the checkpoint store. Its methods are safe for concurrent use.
type Store struct {
	dir  string
	path string
	log  *slog.Logger
	lock *os.File

	mu     sync.RWMutex // held for reading by operations, for writing by Close
	db     *bolt.DB
	closed bool
}

var (
	bucketMeta    = []byte("meta")
	bucketCursors = []byte("cursors")
	bucketGaps    = []byte("gaps")
	keyVersion    = []byte("version")
)

const formatVersion = "1"

// Open locks dir (creating it if missing), then opens or creates
// dir/checkpoint.db. If another relay holds the directory, the error wraps
// ErrLocked and names dir and, when known, the holder's pid. An unreadable
// database is handled as Options.OnCorrupt says. Close releases everything.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("checkpoint: Options.Timeout %v: must not be negative", opts.Timeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.OnCorrupt != CorruptFail && opts.OnCorrupt != CorruptMoveAside {
		return nil, fmt.Errorf("checkpoint: Options.OnCorrupt %d: want CorruptFail or CorruptMoveAside", opts.OnCorrupt)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("checkpoint: create data directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	s := &Store{dir: dir, path: filepath.Join(dir, DBFile), log: log, lock: lock}
	db, err := s.openDB(opts)
	if err != nil {
		_ = unlockDir(lock)
		return nil, err
	}
	s.db = db
	return s, nil
}

// openDB opens the database, applying the corrupt-file policy.
func (s *Store) openDB(opts Options) (*bolt.DB, error) {
	db, err := openVerified(s.path, opts.Timeout)
	if err == nil || !errors.Is(err, ErrCorrupt) || opts.OnCorrupt != CorruptMoveAside {
		return db, err
	}
	aside := fmt.Sprintf("%s.corrupt-%s", s.path, time.Now().UTC().Format("20060102T150405.000000000Z"))
	if rerr := os.Rename(s.path, aside); rerr != nil {
		return nil, fmt.Errorf("%w; moving it aside: %v", err, rerr)
	}
	s.log.Error("checkpoint database corrupt: moved it aside and starting empty; ingest resumes from the SLS consumer-group checkpoints (duplicates possible, no loss)",
		"path", s.path, "moved_to", aside, "err", err)
	return openVerified(s.path, opts.Timeout)
}

// openVerified opens path with bbolt, creates the buckets and reads every
// record once, so that a damaged file is reported now as ErrCorrupt rather
// than later as a panic inside bbolt. bbolt panics on some damaged pages;
// those panics are recovered here. (If bolt.Open itself panics, its file
// descriptor leaks; that happens once, on a corrupt file.)
func openVerified(path string, timeout time.Duration) (db *bolt.DB, err error) {
	created := false
	if _, serr := os.Stat(path); errors.Is(serr, os.ErrNotExist) {
		created = true
	}
	corrupt := func(cause any) error {
		return fmt.Errorf("checkpoint: %s: %w: %v", path, ErrCorrupt, cause)
	}
	// A file cut short makes bbolt read its mmap past the end of the file:
	// SIGBUS, which is a fatal error unless faults panic (this goroutine
	// only, while opening and verifying).
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	if err := cutShort(path); err != nil {
		return nil, corrupt(err)
	}
	defer func() {
		if p := recover(); p != nil {
			if db != nil {
				_ = db.Close()
			}
			db, err = nil, corrupt(p)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("checkpoint: open %s: bbolt lock not free after %v", path, timeout)
		}
		if isOpenError(err) {
			return nil, fmt.Errorf("checkpoint: open %s: %w", path, err)
		}
		return nil, corrupt(err)
	}
	if err := db.Update(initBuckets); err != nil {
		db.Close()
		return nil, corrupt(err)
	}
	if err := db.View(verify); err != nil {
		db.Close()
		return nil, corrupt(err)
	}
	if created {
		if err := syncDir(filepath.Dir(path)); err != nil {
			db.Close()
			return nil, fmt.Errorf("checkpoint: sync data directory: %w", err)
		}
	}
	return db, nil
}

// isOpenError tells I/O and permission failures (not corruption) apart.
func isOpenError(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe) || errors.Is(err, os.ErrPermission)
}

func initBuckets(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	switch v := meta.Get(keyVersion); {
	case v == nil:
		if err := meta.Put(keyVersion, []byte(formatVersion)); err != nil {
			return err
		}
	case string(v) != formatVersion:
		return fmt.Errorf("format version %q, want %q", v, formatVersion)
	}
	for _, name := range [][]byte{bucketCursors, bucketGaps, bucketReplay} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// verify decodes every record.
func verify(tx *bolt.Tx) error {
	if err := tx.Bucket(bucketCursors).ForEach(func(k, v []byte) error {
		if _, err := decodeKey(k); err != nil {
			return err
		}
		_, err := decodeCursor(v)
		return err
	}); err != nil {
		return err
	}
	if err := tx.Bucket(bucketGaps).ForEach(func(_, v []byte) error {
		_, err := decodeGap(v)
		return err
	}); err != nil {
		return err
	}
	return verifyReplay(tx)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Commit stores k's cursor, durably: when it returns nil, the cursor
// survives a crash. Concurrent commits (one goroutine per shard) are grouped
// into one bbolt transaction, which pays the fsyncs once; a call may wait up
// to bbolt's batch delay (10 ms) for companions.
func (s *Store) Commit(k ShardKey, c Cursor) error {
	if err := k.validate(); err != nil {
		return err
	}
	if c.Cursor == "" {
		return fmt.Errorf("checkpoint: commit %s/%s shard %d: empty cursor", k.Project, k.Logstore, k.Shard)
	}
	if c.Updated.IsZero() {
		c.Updated = time.Now()
	}
	key, val := encodeKey(k), encodeCursor(c)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCursors).Put(key, val)
	})
	if err != nil {
		return fmt.Errorf("checkpoint: commit %s/%s shard %d: %w", k.Project, k.Logstore, k.Shard, err)
	}
	return nil
}

// Cursor returns k's last committed cursor; ok is false if there is none.
func (s *Store) Cursor(k ShardKey) (c Cursor, ok bool, err error) {
	if err := k.validate(); err != nil {
		return Cursor{}, false, err
	}
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCursors).Get(encodeKey(k))
		if v == nil {
			return nil
		}
		ok = true
		c, err = decodeCursor(v)
		return err
	})
	return c, ok, err
}

// Cursors returns the committed cursors of every shard of a logstore, by
// shard number.
func (s *Store) Cursors(project, logstore string) (map[int]Cursor, error) {
	if err := (ShardKey{Project: project, Logstore: logstore}).validate(); err != nil {
		return nil, err
	}
	prefix := keyPrefix(project, logstore)
	out := make(map[int]Cursor)
	err := s.view(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketCursors).Cursor()
		for k, v := cur.Seek(prefix); k != nil && len(k) == len(prefix)+4 && string(k[:len(prefix)]) == string(prefix); k, v = cur.Next() {
			c, err := decodeCursor(v)
			if err != nil {
				return err
			}
			out[int(binary.BigEndian.Uint32(k[len(prefix):]))] = c
		}
		return nil
	})
	return out, err
}

// RecordGap durably records a lost range, so that it can be listed and
// reported after restarts. The caller also logs it and counts it.
func (s *Store) RecordGap(g Gap) error {
	if err := g.Key.validate(); err != nil {
		return err
	}
	if g.To.Before(g.From) {
		return fmt.Errorf("checkpoint: record gap: To %v before From %v", g.To, g.From)
	}
	if g.Detected.IsZero() {
		g.Detected = time.Now()
	}
	val := encodeGap(g)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGaps)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		return b.Put(binary.BigEndian.AppendUint64(nil, seq), val)
	})
	if err != nil {
		return fmt.Errorf("checkpoint: record gap: %w", err)
	}
	return nil
}

// Gaps returns every recorded gap, oldest record first.
func (s *Store) Gaps() ([]Gap, error) {
	var out []Gap
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGaps).ForEach(func(_, v []byte) error {
			g, err := decodeGap(v)
			if err != nil {
				return err
			}
			out = append(out, g)
			return nil
		})
	})
	return out, err
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.db.View(fn); err != nil {
		return fmt.Errorf("checkpoint: read: %w", err)
	}
	return nil
}

// Dir returns the data directory.
func (s *Store) Dir() string { return s.dir }

// Close waits for operations under way, closes the database and releases the
// directory lock. It is idempotent: later calls return nil; other methods
// then return ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.db.Close()
	if uerr := unlockDir(s.lock); err == nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("checkpoint: close: %w", err)
	}
	return nil
}

// cutShort reports a file shorter than its bbolt meta pages say (their
// high-water page id times the page size): bbolt would fault reading it,
// and a panic inside bolt.Open leaks its locked file descriptor.
func cutShort(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // missing or unreadable: bolt.Open reports it
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	const magic = 0xED0CDAED
	var hdr [64]byte
	le := binary.LittleEndian
	if _, err := f.ReadAt(hdr[:], 0); err != nil || le.Uint32(hdr[16:]) != magic {
		return nil // not a meta page: bolt.Open reports it
	}
	pageSize := int64(le.Uint32(hdr[24:]))
	for _, off := range []int64{0, pageSize} {
		if _, err := f.ReadAt(hdr[:], off); err != nil || le.Uint32(hdr[16:]) != magic {
			continue
		}
		if need := int64(le.Uint64(hdr[56:])) * pageSize; need > st.Size() {
			return fmt.Errorf("file is %d bytes, its meta page at %d needs %d", st.Size(), off, need)
		}
	}
	return nil
}
