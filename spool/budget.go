package spool

import (
	"context"
	"time"
)

// waitSpace blocks until a frame of n bytes fits both the byte budget
// (MaxBytes of unacknowledged records; a lone record over the budget is
// let in when the spool is empty) and the free-disk floor. Ack wakes it;
// the floor is polled, since other processes free disk too.
func (s *Spool) waitSpace(ctx context.Context, n int64) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	logged := false
	for {
		s.mu.Lock()
		used, ch := s.bytes, s.spaceCh
		s.mu.Unlock()
		if s.peer != nil { // read after ch: a peer's Ack from here on closes ch
			used += s.peer.usedBytes()
		}
		over := used > 0 && used+n > s.opts.MaxBytes
		var poll <-chan time.Time
		reason := "byte budget"
		if !over {
			free, err := s.h.statfs(s.dir)
			if err != nil {
				return err
			}
			if free-n < s.opts.MinFreeBytes && s.arch != nil {
				// The archive gives way to pending records (archive.go).
				need := n + s.opts.MinFreeBytes
				if s.arch.makeRoom(need, func() (int64, error) { return s.h.statfs(s.dir) }) {
					if free, err = s.h.statfs(s.dir); err != nil {
						return err
					}
				}
			}
			if free-n >= s.opts.MinFreeBytes {
				if logged {
					s.log.Info("spool has room again; put resumes")
				}
				return nil
			}
			reason = "free-disk floor"
			if timer == nil {
				timer = time.NewTimer(s.h.diskPoll)
			} else {
				timer.Reset(s.h.diskPoll)
			}
			poll = timer.C
		}
		if !logged {
			s.log.Warn("spool full; put waits", "limit", reason, "bytes", used, "record_bytes", n)
			logged = true
		}
		select {
		case <-ch:
		case <-poll:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closedCh:
			return ErrClosed
		}
	}
}
