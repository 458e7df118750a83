package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// The durability barrier.
//
// go-diskqueue's Put returns after write(2); its own fsyncs happen on its
// schedule and their failures are only logged. Sync therefore fsyncs the
// segment files itself, through descriptors of its own (fsync on any
// descriptor of a file flushes that file's dirty pages on Linux, and each
// descriptor opened before a writeback error reports it), plus the
// directory when a segment was created. Which files to sync comes from a
// mirror of diskqueue's write position kept by Put; if diskqueue moved on
// its own (a read error makes it skip to a new write file), every segment
// from the last synced one on is synced. Recovery does not depend on
// diskqueue's metadata (see recover.go), so no metadata fsync is needed.
//
// Concurrent Sync calls share fsyncs: one caller leads a round covering
// every record written when the round started; the others wait for it
// and, if it did not cover them, lead the next (group commit).
//
// After a failed fsync the kernel may have dropped the dirty pages and
// marked them clean, so a later fsync could succeed without the data: the
// error is sticky (ErrSyncFailed) until the spool is reopened.

type syncRound struct{ done chan struct{} }

// Sync returns once every record whose Put returned before Sync was called
// is on stable storage, or the error that prevents it (ErrSyncFailed
// wrapping the fsync error, ErrClosed, ctx.Err()). Safe for concurrent use.
func (s *Spool) Sync(ctx context.Context) error {
	s.mu.Lock()
	target := s.written
	s.mu.Unlock()
	for {
		s.smu.Lock()
		if s.syncErr != nil {
			err := s.syncErr
			s.smu.Unlock()
			return err
		}
		if s.syncedWritten >= target {
			s.smu.Unlock()
			return nil
		}
		if s.isClosed() {
			s.smu.Unlock()
			return ErrClosed
		}
		if r := s.round; r != nil {
			s.smu.Unlock()
			select {
			case <-r.done:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		r := &syncRound{done: make(chan struct{})}
		s.round = r
		s.smu.Unlock()

		s.fileMu.Lock()
		covered, err := s.doSync()
		s.fileMu.Unlock()

		s.smu.Lock()
		s.round = nil
		if err == nil {
			s.syncedWritten = max(s.syncedWritten, covered)
		}
		close(r.done)
		s.smu.Unlock()
		if err != nil {
			s.setSyncErr(err)
		}
	}
}

func (s *Spool) setSyncErr(err error) {
	s.smu.Lock()
	first := s.syncErr == nil
	if first {
		s.syncErr = err
	}
	s.smu.Unlock()
	if first {
		s.log.Error("spool fsync failed; refusing further writes until reopened", logKeyErr, err)
	}
}

// doSync fsyncs what the mirror says was written since the last round and
// returns how many records are now durable. Caller holds fileMu.
func (s *Spool) doSync() (uint64, error) {
	s.mu.Lock()
	covered, wFile, dirDirty := s.written, s.wFile, s.dirDirty
	s.dirDirty = false
	s.mu.Unlock()
	fail := func(err error) (uint64, error) {
		s.mu.Lock()
		s.dirDirty = s.dirDirty || dirDirty
		s.mu.Unlock()
		return 0, fmt.Errorf("sync: %w: %w", ErrSyncFailed, err)
	}

	nums := make([]int64, 0, 2)
	for n := s.syncedFile; n <= wFile; n++ {
		nums = append(nums, n)
	}
	slow := s.diverged.Load()
	if !slow {
		// The mirror must match the file: if diskqueue wrote elsewhere the
		// current segment is shorter than the mirror says.
		f, err := s.fd(wFile)
		if err != nil {
			slow = true
		} else if st, err := f.Stat(); err != nil || st.Size() < s.mirrorPos() {
			slow = true
		}
	}
	if slow {
		// Every segment from the last synced one on, including those
		// diskqueue renamed .bad meanwhile (a read error on the write
		// segment): a record written before the rename is in that file,
		// and fd opens it under either name.
		segs, bads, err := listSegments(s.dir)
		if err != nil {
			return fail(err)
		}
		nums = nums[:0]
		for _, n := range slices.Concat(segs, bads) {
			if n >= s.syncedFile && !slices.Contains(nums, n) {
				nums = append(nums, n)
			}
		}
		slices.Sort(nums)
		dirDirty = true
	}
	last := s.syncedFile
	for _, n := range nums {
		f, err := s.fd(n)
		if errors.Is(err, os.ErrNotExist) && n < wFile {
			continue // fully read and removed by diskqueue
		}
		if err != nil {
			return fail(err)
		}
		if err := s.h.syncFile(f); err != nil {
			return fail(fmt.Errorf("segment %s: %w", filepath.Base(f.Name()), err))
		}
		last = max(last, n)
	}
	if dirDirty {
		if err := syncDir(s.dir, s.h.syncFile); err != nil {
			return fail(err)
		}
	}
	for n, f := range s.fds {
		if n < last {
			f.Close()
			delete(s.fds, n)
		}
	}
	s.syncedFile = last
	return covered, nil
}

func (s *Spool) mirrorPos() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wPos
}

// fd returns the spool's own descriptor of segment n. Caller holds fileMu.
func (s *Spool) fd(n int64) (*os.File, error) {
	if f := s.fds[n]; f != nil {
		return f, nil
	}
	f, err := os.Open(segPath(s.dir, n))
	if errors.Is(err, os.ErrNotExist) {
		// Renamed by diskqueue after a read error; salvage has not run
		// yet (it holds fileMu too).
		f, err = os.Open(segPath(s.dir, n) + badSuffix)
		if errors.Is(err, os.ErrNotExist) {
			err = &os.PathError{Op: "open", Path: segPath(s.dir, n), Err: os.ErrNotExist}
		}
	}
	if err != nil {
		return nil, err
	}
	s.fds[n] = f
	return f, nil
}

func (s *Spool) closeFDs() {
	for n, f := range s.fds {
		f.Close()
		delete(s.fds, n)
	}
}
