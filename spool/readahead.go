package spool

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
)

// Batches: PeekBatch returns the head and the records behind it, AckThrough
// acknowledges them with one fsync of the state file.
//
// go-diskqueue offers one frame at a time and only taking it removes it,
// so the records behind the head are read from the segment files with the
// spool's own descriptor, at the positions Put wrote them (the index
// below), and every one is checked (length, CRC, Seq) before it is handed
// out: a wrong or stale position only ends the batch early. go-diskqueue's
// read position moves only as before, one frame at a time once the frame is
// acknowledged, so recovery, repair and the archive see what they always
// saw. AckThrough persists the acknowledged Seq of the last record, takes
// the head's frame out of go-diskqueue and accounts for all of them; Peek
// then skips the other frames as it skips frames acknowledged before a
// crash (Seq at or below the persisted one).
//
// A crash after a batch was sent and before AckThrough re-delivers that
// batch: the duplicate bound is one batch instead of one record, which the
// caller chooses with PeekBatch's limits.

// framePos is where Put wrote the frame of record seq: n bytes (the
// encoded record, without go-diskqueue's 4-byte length) after the length
// at off of segment file.
type framePos struct {
	seq       uint64
	file, off int64
	n         int
	payload   int // len(Record.Payload), decoded
}

// maxIndexed bounds the index of written frames (~32 B each): past it, Put
// stops indexing until acknowledgements make room, and the records it did
// not index are delivered one at a time, as a backlog from before a start
// is. Read-ahead matters when the queue is short, which is when the index
// holds it all.
const maxIndexed = 1 << 16

// index records where r (seq) was written. Called by Put with s.mu held.
func (s *Spool) index(seq uint64, file, off int64, n, payload int) {
	if len(s.idx)-s.idxOff >= maxIndexed || s.diverged.Load() {
		return
	}
	s.idx = append(s.idx, framePos{seq: seq, file: file, off: off, n: n, payload: payload})
}

// ahead is a record read ahead of the head and handed out by PeekBatch.
type ahead struct {
	seq uint64
	n   int // bytes on disk, framing included
}

// PeekBatch returns the oldest unacknowledged record, blocking as Peek
// does, followed by the records written behind it that are already in the
// spool, in order, up to maxRecords records (at least 1) and, after the
// first, up to maxBytes of payload in all. It never waits for more records.
// Repeated calls return the same first record until it is acknowledged;
// the records behind it are looked up afresh. Not safe for concurrent use
// with Peek, Ack or AckThrough.
func (s *Spool) PeekBatch(ctx context.Context, maxRecords, maxBytes int) ([]*Record, error) {
	head, err := s.Peek(ctx)
	if err != nil {
		return nil, err
	}
	batch := []*Record{head}
	s.ahead = s.ahead[:0]
	if maxRecords <= 1 {
		return batch, nil
	}
	todo := s.indexedAfter(head.Seq, maxRecords-1)
	if len(todo) == 0 {
		return batch, nil
	}
	size := len(head.Payload)
	for _, p := range todo {
		if size+p.payload > maxBytes { // known from Put: nothing read in vain
			break
		}
		r, err := s.readFrame(p)
		if err != nil {
			s.log.Debug("read-ahead stopped", logKeySeq, p.seq, logKeyErr, err)
			break
		}
		size += len(r.Payload)
		batch = append(batch, r)
		s.ahead = append(s.ahead, ahead{seq: p.seq, n: 4 + p.n})
	}
	s.closeReadAhead()
	return batch, nil
}

// indexedAfter drops the index entries before head and returns up to max
// entries that follow it with consecutive Seqs (nil when head is not
// indexed: it was written before Open, or when the index was full).
func (s *Spool) indexedAfter(head uint64, max int) []framePos {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.idx[s.idxOff:]
	i := sort.Search(len(w), func(i int) bool { return w[i].seq >= head })
	s.idxOff += i
	w = w[i:]
	if s.idxOff >= 1024 && s.idxOff >= len(s.idx)/2 {
		s.idx = append(s.idx[:0], w...)
		s.idxOff = 0
		w = s.idx
	}
	if len(w) == 0 || w[0].seq != head {
		return nil
	}
	var out []framePos
	for j := 1; j < len(w) && len(out) < max && w[j].seq == head+uint64(j); j++ {
		out = append(out, w[j])
	}
	return out
}

// readFrame reads and checks the record at p with the spool's own
// descriptor (go-diskqueue writes with write(2), so a frame Put returned
// for is there).
func (s *Spool) readFrame(p framePos) (*Record, error) {
	if s.raFile == nil || s.raNum != p.file {
		s.closeReadAhead()
		f, err := os.Open(segPath(s.dir, p.file))
		if err != nil {
			return nil, err
		}
		s.raFile, s.raNum = f, p.file
	}
	b := make([]byte, 4+p.n)
	if _, err := s.raFile.ReadAt(b, p.off); err != nil {
		return nil, fmt.Errorf("segment %d at %d: %w", p.file, p.off, err)
	}
	if n := binary.BigEndian.Uint32(b); int(n) != p.n {
		return nil, fmt.Errorf("segment %d at %d: frame of %d bytes, %d were written", p.file, p.off, n, p.n)
	}
	r, err := decodeRecord(b[4:])
	if err != nil {
		return nil, err
	}
	if r.Seq != p.seq {
		return nil, fmt.Errorf("segment %d at %d: record %d, %d was written", p.file, p.off, r.Seq, p.seq)
	}
	return r, nil
}

func (s *Spool) closeReadAhead() {
	if s.raFile != nil {
		s.raFile.Close()
		s.raFile = nil
	}
}

// AckThrough acknowledges the records of the last PeekBatch up to and
// including seq, which must be one of them (ErrNotHead otherwise): their
// Seq is fsynced once, before any of them leaves go-diskqueue. On error
// nothing is acknowledged. Not safe for concurrent use with Peek.
func (s *Spool) AckThrough(seq uint64) error {
	if s.isClosed() {
		return ErrClosed
	}
	if s.head == nil {
		return fmt.Errorf("ack through seq %d (no head): %w", seq, ErrNotHead)
	}
	if seq == s.head.Seq {
		s.ahead = s.ahead[:0]
		return s.Ack(seq)
	}
	k := -1
	for i, a := range s.ahead {
		if a.seq == seq {
			k = i
			break
		}
	}
	if k < 0 {
		return fmt.Errorf("ack through seq %d (head %d, %d behind it): %w", seq, s.head.Seq, len(s.ahead), ErrNotHead)
	}
	if err := s.state.setAcked(seq); err != nil {
		return fmt.Errorf("ack seq %d: %w", seq, err)
	}
	// The head's frame is the one go-diskqueue offers: take it now, as Ack
	// does. The others are skipped by Peek (acknowledged Seq).
	if err := s.consume(s.headLen); err != nil {
		return err
	}
	bytes := int64(4 + s.headLen)
	for _, a := range s.ahead[:k+1] {
		bytes += int64(a.n)
	}
	n := int64(k + 2)
	s.mu.Lock()
	s.depth -= n
	s.bytes -= bytes
	if s.depth <= 0 {
		s.depth, s.hasOldest = 0, false
	}
	close(s.spaceCh)
	s.spaceCh = make(chan struct{})
	s.mu.Unlock()
	if p := s.peer; p != nil {
		p.wakeSpace()
	}
	s.acked.Add(n)
	s.head = nil
	s.ahead = s.ahead[:0]
	return nil
}
