// Package spool is a bounded, durable FIFO of Records per sink, built on
// github.com/nsqio/go-diskqueue.
//
// go-diskqueue writes and reads the segment files; the spool adds what it
// lacks: a durability barrier that reports fsync errors (Sync), removal only
// on acknowledgement (Peek/Ack over diskqueue's PeekChan/ReadChan plus a
// persisted acknowledged Seq), a byte budget and free-disk floor, CRC-checked
// records, recovery of every synced record after a crash (its own scan of
// the segments, which rewrites diskqueue's metadata before diskqueue opens),
// salvage of corrupt segments, and a dead-letter queue.
//
// With Options.Retain or RetainBytes, delivered segments are kept in an
// archive beside the spool instead of being deleted, for a replay from the
// relay's own disk. go-diskqueue is not patched for it: the spool hard-links
// each complete segment when go-diskqueue rolls past it and moves the link
// into the archive once go-diskqueue has deleted the segment; archive.go
// explains the choice, the index, and the eviction, which never touches an
// undelivered record.
package spool

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	diskqueue "github.com/nsqio/go-diskqueue"

	"slsrelay/internal/failpoint"
)

// Spool is a durable FIFO of Records. Put and Sync are safe for concurrent
// use; Peek, Ack and DeadLetter are meant for one delivery loop; Stats and
// Close are safe from any goroutine.
type Spool struct {
	dir   string
	opts  Options
	log   *slog.Logger
	codec byte
	h     hooks
	lock  *os.File

	// putSem serialises writes into diskqueue and excludes repair, which
	// replaces dq. Held by Put while writing, by repair and by Close.
	putSem chan struct{}
	dq     diskqueue.Interface

	closeOnce sync.Once
	closedCh  chan struct{}
	closeErr  error

	mu        sync.Mutex
	nextSeq   uint64
	wFile     int64 // mirror of diskqueue's write position
	wPos      int64
	dirDirty  bool   // a segment was created since the last directory fsync
	written   uint64 // records handed to diskqueue
	depth     int64  // unacknowledged records
	bytes     int64  // their bytes on disk, framing included
	oldest    time.Time
	hasOldest bool
	spaceCh   chan struct{} // closed and replaced when budget frees

	puts, acked, corrupt atomic.Int64
	dlRefused            atomic.Int64
	dlFull               atomic.Bool // the last DeadLetter was refused (log once per episode)

	// delivery side (Peek/Ack goroutine)
	head    *Record
	headLen int
	broken  error // a failed repair left diskqueue closed, or repair would loop
	// repair loop guard: the targets of the last repair and how many
	// repairs in a row had them without Peek returning a record since.
	lastRepair string
	repairRuns int

	// barrier state (sync.go)
	fileMu        sync.Mutex // excludes doSync and repair
	smu           sync.Mutex
	round         *syncRound
	syncedWritten uint64
	syncErr       error
	syncedFile    int64
	fds           map[int64]*os.File
	diverged      atomic.Bool

	// go-diskqueue events (log.go)
	evMu      sync.Mutex
	events    []dqEvent
	evCh      chan struct{}
	ended     []segEnd // complete segments read to their end, renamed .bad by diskqueue
	cleanJump bool     // diskqueue's next jump follows a segment end

	state *stateFile
	dlq   *deadLetterQueue
	arch  *archive // nil unless Options.Retain or RetainBytes (archive.go)
	// complete segments hard-linked for the archive (diskqueue.go)
	stageMu sync.Mutex
	staged  []int64

	// read-ahead (readahead.go): where Put wrote the frames not yet
	// acknowledged (under mu), the records PeekBatch handed out behind the
	// head, and its descriptor (delivery side, open only during PeekBatch)
	idx    []framePos
	idxOff int // idx[:idxOff] is stale (before the head)
	ahead  []ahead
	raFile *os.File
	raNum  int64

	// peer is the other lane when this spool is one of Lanes: MaxBytes is
	// the budget of both together. Set once after Open.
	peer *Spool
}

// Stats is a snapshot of a spool's counters.
type Stats struct {
	Depth       int64         // unacknowledged records
	Bytes       int64         // their bytes on disk, framing included
	OldestAge   time.Duration // age (from ReceivedAt) of the oldest unacknowledged record; 0 if empty or unknown
	DeadLetters int64         // entries in the dead-letter queue
	// DeadLetterBytes is the size of the dead-letter file, counted against
	// Options.DeadLetterMaxBytes.
	DeadLetterBytes int64
	// DeadLetterDamaged counts the damaged regions of the dead-letter file
	// found at Open: kept in place, skipped by readers, each costing only
	// the entries it overlaps.
	DeadLetterDamaged int64
	// DeadLetterRefused counts the DeadLetter calls refused since Open
	// because the dead-letter queue was full (ErrDeadLetterFull): the
	// record stayed in the spool, undelivered.
	DeadLetterRefused int64
	Corrupt           int64 // corruption events since Open (each one dead-lettered)
	Put               int64 // records Put since Open
	Acked             int64 // records acknowledged since Open
	SyncError         error // the sticky fsync error, if any
	// Archive describes the archive of delivered segments (zero when
	// Options.Retain and RetainBytes are off).
	Archive ArchiveStats
}

// hooks are the fault seams for white-box tests.
type hooks struct {
	syncFile func(*os.File) error
	statfs   func(dir string) (free int64, err error)
	diskPoll time.Duration
}

func defaultHooks() hooks {
	return hooks{syncFile: failpoint.WrapSync(failpoint.SpoolFsync, (*os.File).Sync), statfs: statfsFree, diskPoll: time.Second}
}

func statfsFree(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs: %w", err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// Open opens or creates the spool in dir, recovering every record that a
// Sync reported durable, and takes an exclusive lock on dir. On error
// nothing stays open.
func Open(dir string, opts Options) (*Spool, error) {
	return open(dir, opts, defaultHooks())
}

func open(dir string, opts Options, h hooks) (_ *Spool, err error) {
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, err
	}
	codec, _ := codecID(opts.Compression)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	s := &Spool{
		dir: dir, opts: opts, codec: codec, h: h,
		log:      opts.Logger.With("spool", dir),
		putSem:   make(chan struct{}, 1),
		closedCh: make(chan struct{}),
		spaceCh:  make(chan struct{}),
		evCh:     make(chan struct{}, 1),
		fds:      map[int64]*os.File{},
	}
	defer func() {
		if err != nil {
			if s.dq != nil {
				s.dq.Close()
			}
			s.closeFiles()
		}
	}()
	if s.lock, err = lockDir(dir); err != nil {
		return nil, err
	}
	var valid bool
	if s.state, valid, err = openState(dir, h.syncFile); err != nil {
		return nil, err
	}
	if !valid {
		if err = s.state.store(0, 0); err != nil {
			return nil, err
		}
		if err = syncDir(dir, h.syncFile); err != nil {
			return nil, err
		}
	}
	if s.dlq, err = openDeadLetters(dir, h.syncFile, s.log); err != nil {
		return nil, err
	}
	switch {
	case opts.archive != nil:
		s.arch = opts.archive
	case opts.Retain > 0 || opts.RetainBytes > 0:
		if s.arch, err = openArchive(dir, opts, h.syncFile, s.log); err != nil {
			return nil, err
		}
	}
	if s.arch == nil {
		// The archive is off (or was turned off): links a previous run took
		// for it only hold disk (diskqueue.go).
		os.RemoveAll(filepath.Join(dir, archiveStagingDir))
	}
	if err = s.reload(nil); err != nil {
		return nil, err
	}
	if s.arch != nil {
		s.restage()
	}
	return s, nil
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock spool: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock spool %s (another process uses it?): %w", dir, err)
	}
	return f, nil
}

func (s *Spool) takeEvents() []dqEvent {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	ev := s.events
	s.events = nil
	return ev
}

func (s *Spool) hasEvents() bool {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	return len(s.events) > 0
}

func (s *Spool) isClosed() bool {
	select {
	case <-s.closedCh:
		return true
	default:
		return false
	}
}

// Put appends r, assigning r.Seq. It blocks while the spool is over
// MaxBytes or the filesystem under MinFreeBytes, until space frees, ctx
// ends (ctx.Err()) or the spool closes (ErrClosed). It returns once the
// record is written to the segment file with write(2): it is readable by
// Peek at once but durable only after a Sync started after Put returned.
// Encodings over MaxRecordBytes fail with ErrTooLarge; a record larger than
// the whole MaxBytes is accepted once the spool is empty. After an fsync
// failure Put fails with ErrSyncFailed. Safe for concurrent use; records
// from concurrent Puts are ordered by their Seq.
func (s *Spool) Put(ctx context.Context, r *Record) error {
	if err := s.usable(); err != nil {
		return err
	}
	f, err := encodeRecord(r, s.codec)
	if err != nil {
		return err
	}
	if len(f.buf) > int(s.opts.MaxRecordBytes) {
		return fmt.Errorf("put: encoded record of %d bytes over %d: %w", len(f.buf), s.opts.MaxRecordBytes, ErrTooLarge)
	}
	n := int64(4 + len(f.buf))
	select {
	case s.putSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closedCh:
		return ErrClosed
	}
	defer func() { <-s.putSem }()
	if err := s.waitSpace(ctx, n); err != nil {
		return err
	}
	if err := s.usable(); err != nil {
		return err
	}
	if s.dq == nil { // a repair gave up (its error is sticky in Peek)
		return errors.New("put: spool repair failed; reopen the spool")
	}
	s.mu.Lock()
	seq := s.nextSeq
	s.mu.Unlock()
	if _, floor := s.state.values(); seq >= floor {
		if err := s.state.setFloor(seq + seqBlock); err != nil {
			return fmt.Errorf("put: reserve seq: %w", err)
		}
	}
	if s.arch != nil {
		// This write rolls diskqueue to a new segment: the current one is
		// complete. Link it for the archive now, while diskqueue's reader
		// cannot have deleted it (it never passes the write segment).
		s.mu.Lock()
		rolls, complete := s.wPos > 0 && s.wPos+n > s.opts.SegmentBytes, s.wFile
		s.mu.Unlock()
		if rolls {
			s.stageSegment(complete)
		}
	}
	if err := s.dq.Put(f.seal(seq)); err != nil {
		// diskqueue may have rolled to a new file before failing.
		s.diverged.Store(true)
		return fmt.Errorf("put: write segment: %w", err)
	}
	s.mu.Lock()
	rotated := s.wPos > 0 && s.wPos+n > s.opts.SegmentBytes
	if rotated {
		s.wFile++
		s.wPos = 0
		s.dirDirty = true
	}
	s.index(seq, s.wFile, s.wPos, int(n-4), len(r.Payload))
	s.wPos += n
	s.nextSeq++
	s.written++
	if s.depth == 0 {
		s.oldest, s.hasOldest = r.ReceivedAt, !r.ReceivedAt.IsZero()
	}
	s.depth++
	s.bytes += n
	s.mu.Unlock()
	s.puts.Add(1)
	r.Seq = seq
	if rotated {
		failpoint.Hit(failpoint.SpoolRotate)
	}
	return nil
}

// seqBlock is how many Seqs are reserved per state-file write.
const seqBlock = 1 << 20

func (s *Spool) usable() error {
	if s.isClosed() {
		return ErrClosed
	}
	s.smu.Lock()
	defer s.smu.Unlock()
	return s.syncErr
}

// Peek returns the oldest unacknowledged record without removing it,
// blocking while the spool is empty until a record arrives, ctx ends or the
// spool closes. Repeated calls return the same record until Ack. A record
// that fails its CRC is moved to the dead-letter queue with the reason,
// counted in Stats.Corrupt, logged, and Peek moves on to the next. Not safe
// for concurrent use with itself or Ack.
func (s *Spool) Peek(ctx context.Context) (*Record, error) {
	for {
		if s.isClosed() {
			return nil, ErrClosed
		}
		if s.broken != nil {
			return nil, s.broken
		}
		if s.head != nil {
			return s.head, nil
		}
		if s.hasEvents() {
			if err := s.repair(ctx, nil); err != nil {
				return nil, err
			}
			continue
		}
		select {
		case b := <-s.dq.PeekChan():
			s.dropEnded()
			if s.hasEvents() {
				continue // diskqueue skipped a bad region before b: repair first
			}
			acked, _ := s.state.values()
			if h, err := verifyRecord(b); err == nil && h.seq <= acked {
				// Acknowledged before a crash; diskqueue's read position
				// was persisted earlier than our acknowledged Seq.
				if err := s.consume(len(b)); err != nil {
					return nil, err
				}
				continue
			}
			r, err := decodeRecord(b)
			if err != nil {
				if h, verr := verifyRecord(b); verr == nil {
					// Intact bytes (CRC valid) that will not decode:
					// salvage would keep them, so repair cannot help.
					if err := s.quarantineHead(h, b, err); err != nil {
						return nil, err
					}
					continue
				}
				if err := s.repair(ctx, err); err != nil {
					return nil, err
				}
				continue
			}
			s.head, s.headLen = r, len(b)
			s.lastRepair, s.repairRuns = "", 0
			s.mu.Lock()
			s.oldest, s.hasOldest = r.ReceivedAt, !r.ReceivedAt.IsZero()
			s.mu.Unlock()
			return r, nil
		case <-s.evCh:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.closedCh:
			return nil, ErrClosed
		}
	}
}

// consume removes the frame diskqueue is offering (the one just peeked).
func (s *Spool) consume(n int) error {
	select {
	case b := <-s.dq.ReadChan():
		if len(b) != n {
			return fmt.Errorf("ack: diskqueue returned a %d-byte frame, peeked %d", len(b), n)
		}
		return nil
	case <-s.closedCh:
		return ErrClosed
	}
}

// Ack removes the record with this seq, which must be the one Peek
// returned last (ErrNotHead otherwise). The acknowledged Seq is fsynced
// before the record leaves diskqueue, so a crash never re-delivers more
// than the record in flight. On error the record stays the head. Not safe
// for concurrent use with Peek.
func (s *Spool) Ack(seq uint64) error {
	if s.isClosed() {
		return ErrClosed
	}
	if s.head == nil || s.head.Seq != seq {
		var want uint64
		if s.head != nil {
			want = s.head.Seq
		}
		return fmt.Errorf("ack seq %d (head %d): %w", seq, want, ErrNotHead)
	}
	if err := s.remove(seq, s.headLen); err != nil {
		return err
	}
	s.acked.Add(1)
	s.head = nil
	return nil
}

// quarantineHead moves the frame diskqueue offers, b (record seq h.seq,
// CRC valid), which does not decode, to the dead-letter queue with the
// reason, and removes it from the spool. The acknowledged Seq is persisted
// before it leaves diskqueue, so after a restart it is skipped, not met
// again.
func (s *Spool) quarantineHead(h recordHeader, b []byte, cause error) error {
	reason := fmt.Sprintf("record does not decode although its CRC is valid: seq %d: %v", h.seq, cause)
	if err := s.quarantine("", -1, b, reason); err != nil {
		return err
	}
	return s.remove(h.seq, len(b))
}

// remove persists seq as acknowledged and takes its frame, of n bytes,
// out of diskqueue.
func (s *Spool) remove(seq uint64, n int) error {
	if err := s.state.setAcked(seq); err != nil {
		return fmt.Errorf("ack seq %d: %w", seq, err)
	}
	if err := s.consume(n); err != nil {
		return err
	}
	s.mu.Lock()
	s.depth--
	s.bytes -= int64(4 + n)
	if s.depth == 0 {
		s.hasOldest = false
	}
	close(s.spaceCh)
	s.spaceCh = make(chan struct{})
	s.mu.Unlock()
	if p := s.peer; p != nil { // the other lane's Put may wait on the shared budget
		p.wakeSpace()
	}
	return nil
}

// wakeSpace wakes Puts waiting for the budget.
func (s *Spool) wakeSpace() {
	s.mu.Lock()
	close(s.spaceCh)
	s.spaceCh = make(chan struct{})
	s.mu.Unlock()
}

// usedBytes is the bytes of unacknowledged records.
func (s *Spool) usedBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// DeadLetter stores r with reason in the dead-letter queue and fsyncs it
// before returning. It does not acknowledge anything: Ack the peeked
// record separately. r may be a peeked record or a new one holding only the
// rejected events. Safe for concurrent use.
//
// When the entry would take the dead-letter file past
// Options.DeadLetterMaxBytes (of both lanes together, see Lanes), or the
// filesystem below Options.DeadLetterMinFreeBytes, DeadLetter stores
// nothing and returns an error wrapping ErrDeadLetterFull, counted in
// Stats.DeadLetterRefused and logged once per episode: the caller keeps
// the record in the spool (does not Ack it) and retries later.
func (s *Spool) DeadLetter(r *Record, reason string) error {
	if s.isClosed() {
		return ErrClosed
	}
	f, err := encodeRecord(r, s.codec)
	if err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	b := encodeDeadLetter(dlKindRecord, time.Now(), "", -1, int64(len(f.buf)), reason, f.seal(r.Seq))
	if err := s.deadLetterRoom(int64(len(b))); err != nil {
		s.dlRefused.Add(1)
		if !s.dlFull.Swap(true) {
			s.log.Error("dead-letter queue full: the rejected record stays in the spool, undelivered, and its sink waits",
				logKeySeq, r.Seq, logKeyErr, err)
		}
		return err
	}
	if err := s.dlq.append(b); err != nil {
		return err
	}
	if s.dlFull.Swap(false) {
		s.log.Info("dead-letter queue has room again")
	}
	return nil
}

// deadLetterRoom checks the dead-letter budget and floor for an entry of
// n bytes.
func (s *Spool) deadLetterRoom(n int64) error {
	used := s.dlq.bytes()
	if p := s.peer; p != nil {
		used += p.dlq.bytes()
	}
	if used+n > s.opts.DeadLetterMaxBytes {
		return fmt.Errorf("dead letter: the queue holds %d bytes, an entry of %d would pass its budget of %d (DeadLetterMaxBytes): %w",
			used, n, s.opts.DeadLetterMaxBytes, ErrDeadLetterFull)
	}
	free, err := s.h.statfs(s.dir)
	if err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	if free-n < s.opts.DeadLetterMinFreeBytes {
		return fmt.Errorf("dead letter: %d bytes free on the filesystem, an entry of %d would go below the floor of %d (DeadLetterMinFreeBytes): %w",
			free, n, s.opts.DeadLetterMinFreeBytes, ErrDeadLetterFull)
	}
	return nil
}

// DeadLetters iterates over the dead-letter queue, oldest first. It reads
// the file afresh (memory: one entry at a time). Safe for concurrent use.
func (s *Spool) DeadLetters() iter.Seq2[DeadLetter, error] {
	return ReadDeadLetters(s.dir)
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	st := Stats{Depth: s.depth, Bytes: s.bytes}
	if s.depth > 0 && s.hasOldest {
		st.OldestAge = max(time.Since(s.oldest), 0)
	}
	s.mu.Unlock()
	s.dlq.mu.Lock()
	st.DeadLetters, st.DeadLetterBytes, st.DeadLetterDamaged = s.dlq.count, s.dlq.size, s.dlq.damaged
	s.dlq.mu.Unlock()
	st.DeadLetterRefused = s.dlRefused.Load()
	st.Corrupt = s.corrupt.Load()
	st.Put = s.puts.Load()
	st.Acked = s.acked.Load()
	s.smu.Lock()
	st.SyncError = s.syncErr
	s.smu.Unlock()
	if s.arch != nil {
		st.Archive = s.arch.stats()
	}
	return st
}

// Close makes every written record durable (as Sync does), stops
// diskqueue, and releases files and the directory lock. Blocked Put, Peek
// and Sync calls return ErrClosed. Idempotent; safe on a nil Spool (after
// a failed Open); returns the first error.
func (s *Spool) Close() error {
	if s == nil {
		return nil
	}
	s.closeOnce.Do(func() {
		close(s.closedCh)
		s.putSem <- struct{}{} // wait for an in-flight write or repair
		var errs []error
		s.smu.Lock()
		failed := s.syncErr != nil
		s.smu.Unlock()
		if !failed && s.dq != nil { // dq is nil after a failed repair
			s.fileMu.Lock()
			if _, err := s.doSync(); err != nil {
				errs = append(errs, err)
			}
			s.fileMu.Unlock()
		}
		if s.dq != nil {
			if err := s.dq.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close diskqueue: %w", err))
			}
			s.dropEnded()
		}
		errs = append(errs, s.closeFiles())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func (s *Spool) closeFiles() error {
	var first error
	keep := func(err error) {
		if first == nil && err != nil {
			first = err
		}
	}
	for n, f := range s.fds {
		keep(f.Close())
		delete(s.fds, n)
	}
	keep(s.state.close())
	keep(s.dlq.close())
	if s.lock != nil {
		keep(s.lock.Close())
		s.lock = nil
	}
	return first
}
