package spool_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"slsrelay/spool"
)

// TestSpool_Model is a model-based property test: random sequences of Put,
// Sync, Peek, Ack, DeadLetter, clean reopen and crash are applied to a spool
// and to a plain in-memory FIFO, and after every step the spool must agree
// with the model: Peek returns the model's head (same Seq, same bytes),
// Stats().Depth is the model's length, Seqs only grow (also across
// reopens), and the dead-letter queue holds exactly the dead-lettered
// records in order.
//
// A crash is a kill -9: the spool's directory is copied while it is open
// and in use (its diskqueue goroutine may be writing metadata at that very
// moment) and the copy is opened. The page cache survives a killed process,
// so every Put that returned must be there, and every Ack that returned
// must stick: the model is exact, not "at least once". (Power loss, where
// unsynced writes vanish, is the chaos campaign's job: it kills the binary
// at failpoints between write and fsync.)
func TestSpool_Model(t *testing.T) {
	seeds, steps := 6, 1500
	if testing.Short() {
		seeds, steps = 3, 600
	}
	base := uint64(time.Now().UnixNano())
	if s := os.Getenv("SPOOL_MODEL_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SPOOL_MODEL_SEED: %v", err)
		}
		base, seeds = v, 1
	}
	for i := range seeds {
		seed := base + uint64(i)
		comp := []string{"none", "lz4", "zstd", "s2"}[seed%4]
		t.Run(fmt.Sprintf("seed=%d/%s", seed, comp), func(t *testing.T) {
			t.Logf("rerun with SPOOL_MODEL_SEED=%d", seed)
			runModel(t, seed, comp, steps)
		})
	}
}

// modelRec is what the model knows of one record.
type modelRec struct {
	seq     uint64
	id      string // in Cursor
	shard   int
	count   int
	payload []byte
}

type modelRun struct {
	t     *testing.T
	rng   *rand.Rand
	opts  spool.Options
	dir   string
	s     *spool.Spool
	queue []modelRec // unacknowledged, oldest first
	dead  []string   // ids dead-lettered, in order
	head  *spool.Record
	last  uint64 // highest Seq seen
	n     int    // records made
	ops   map[string]int
	src   []byte
}

func runModel(t *testing.T, seed uint64, comp string, steps int) {
	m := &modelRun{
		t:   t,
		rng: rand.New(rand.NewPCG(seed, 0x5eed)),
		// Small segments so that rotation and deletion of segment files
		// happen every few records, and a budget that never blocks (the
		// budget has tests of its own).
		opts: spool.Options{MinFreeBytes: 1, MaxBytes: 1 << 30, SegmentBytes: 48 << 10, Compression: comp, Logger: testLogger(t)},
		dir:  filepath.Join(t.TempDir(), "spool-0"),
		ops:  map[string]int{},
	}
	m.src = make([]byte, 64<<10)
	for i := range m.src {
		m.src[i] = byte('a' + m.rng.IntN(26)) // compressible, like logs
		if m.rng.IntN(7) == 0 {
			m.src[i] = byte(m.rng.Uint32()) // and some entropy
		}
	}
	m.open(m.dir)
	defer func() { m.s.Close() }()

	for step := 0; step < steps; step++ {
		var op string
		switch x := m.rng.IntN(100); {
		case x < 30:
			op = "put"
			m.put()
		case x < 40:
			op = "sync"
			if err := m.s.Sync(m.ctx()); err != nil {
				t.Fatalf("step %d: sync: %v", step, err)
			}
		case x < 60:
			op = "peek"
			m.peek(step)
		case x < 82:
			op = "ack"
			m.ack(step, false)
		case x < 86:
			op = "dead-letter"
			m.ack(step, true)
		case x < 88:
			op = "bad-ack"
			m.badAck(step)
		case x < 94:
			op = "reopen"
			m.reopen(false)
		default:
			op = "crash"
			m.reopen(true)
		}
		m.ops[op]++
		if st := m.s.Stats(); st.Depth != int64(len(m.queue)) || st.Corrupt != 0 || st.SyncError != nil {
			t.Fatalf("step %d (%s): stats depth %d corrupt %d sync error %v; model depth %d",
				step, op, st.Depth, st.Corrupt, st.SyncError, len(m.queue))
		}
	}
	// Drain what is left, then check the dead letters.
	for len(m.queue) > 0 {
		m.ack(steps, false)
	}
	m.peekEmpty(steps)
	m.checkDead(steps)
	t.Logf("ops %v; %d records made, %d dead-lettered", m.ops, m.n, len(m.dead))
}

func (m *modelRun) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	m.t.Cleanup(cancel)
	return ctx
}

func (m *modelRun) open(dir string) {
	s, err := spool.Open(dir, m.opts)
	if err != nil {
		m.t.Fatalf("open %s: %v", dir, err)
	}
	m.s, m.dir, m.head = s, dir, nil
}

func (m *modelRun) put() {
	size := 1 + m.rng.IntN(24<<10)
	if m.rng.IntN(10) == 0 {
		size = 40<<10 + m.rng.IntN(40<<10) // larger than a segment
	}
	p := make([]byte, size)
	for i := 0; i < size; {
		i += copy(p[i:], m.src[m.rng.IntN(len(m.src)):])
	}
	id := fmt.Sprintf("rec-%d", m.n)
	m.n++
	copy(p, id) // every payload is distinct
	r := &spool.Record{Project: "p", Logstore: "l", Shard: m.rng.IntN(8), Cursor: id, NextCursor: id + "+",
		Count: 1 + m.rng.IntN(1000), Payload: p, ReceivedAt: time.Now()}
	if err := m.s.Put(m.ctx(), r); err != nil {
		m.t.Fatalf("put %s: %v", id, err)
	}
	if r.Seq <= m.last {
		m.t.Fatalf("put %s: seq %d not above the last seq %d", id, r.Seq, m.last)
	}
	m.last = r.Seq
	m.queue = append(m.queue, modelRec{seq: r.Seq, id: id, shard: r.Shard, count: r.Count, payload: bytes.Clone(p)})
}

func (m *modelRun) peekEmpty(step int) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	r, err := m.s.Peek(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		m.t.Fatalf("step %d: peek of an empty spool: record %v, err %v; want DeadlineExceeded", step, r != nil, err)
	}
}

func (m *modelRun) peek(step int) {
	if len(m.queue) == 0 {
		m.peekEmpty(step)
		return
	}
	r, err := m.s.Peek(m.ctx())
	if err != nil {
		m.t.Fatalf("step %d: peek: %v", step, err)
	}
	want := m.queue[0]
	if r.Seq != want.seq || r.Cursor != want.id || r.NextCursor != want.id+"+" || r.Shard != want.shard ||
		r.Count != want.count || r.Project != "p" || r.Logstore != "l" || !bytes.Equal(r.Payload, want.payload) {
		m.t.Fatalf("step %d: peek returned seq %d cursor %q shard %d count %d (%d bytes); model head seq %d %q shard %d count %d (%d bytes)",
			step, r.Seq, r.Cursor, r.Shard, r.Count, len(r.Payload), want.seq, want.id, want.shard, want.count, len(want.payload))
	}
	if m.head != nil && m.head != r {
		// Repeated peeks return the same record until Ack.
		if m.head.Seq != r.Seq {
			m.t.Fatalf("step %d: second peek moved from seq %d to %d without an ack", step, m.head.Seq, r.Seq)
		}
	}
	m.head = r
}

func (m *modelRun) ack(step int, deadLetter bool) {
	if len(m.queue) == 0 {
		m.peekEmpty(step)
		return
	}
	m.peek(step)
	if deadLetter {
		if err := m.s.DeadLetter(m.head, "model: rejected "+m.queue[0].id); err != nil {
			m.t.Fatalf("step %d: dead letter: %v", step, err)
		}
		m.dead = append(m.dead, m.queue[0].id)
	}
	if err := m.s.Ack(m.head.Seq); err != nil {
		m.t.Fatalf("step %d: ack %d: %v", step, m.head.Seq, err)
	}
	m.queue, m.head = m.queue[1:], nil
}

// badAck acknowledges a Seq that is not the peeked head: refused, nothing
// removed.
func (m *modelRun) badAck(step int) {
	seq := m.last + 1 + uint64(m.rng.IntN(5))
	if len(m.queue) > 1 && m.rng.IntN(2) == 0 {
		seq = m.queue[1].seq
	}
	if err := m.s.Ack(seq); !errors.Is(err, spool.ErrNotHead) {
		m.t.Fatalf("step %d: ack of seq %d that is not the head: %v, want ErrNotHead", step, seq, err)
	}
}

func (m *modelRun) reopen(crash bool) {
	if !crash {
		if err := m.s.Close(); err != nil {
			m.t.Fatalf("close: %v", err)
		}
		m.open(m.dir)
		return
	}
	next := filepath.Join(filepath.Dir(m.dir), fmt.Sprintf("spool-%d", m.ops["crash"]+1))
	if err := copyTree(m.dir, next); err != nil {
		m.t.Fatalf("crash copy: %v", err)
	}
	// The crashed process's spool goes away; its files are not ours any more.
	m.s.Close()
	os.RemoveAll(m.dir)
	m.open(next)
	m.checkDead(-1)
}

func (m *modelRun) checkDead(step int) {
	var got []string
	for dl, err := range m.s.DeadLetters() {
		if err != nil {
			m.t.Fatalf("step %d: dead letters: %v", step, err)
		}
		if dl.Record == nil {
			m.t.Fatalf("step %d: dead letter without a record (raw %d bytes, %q)", step, len(dl.Raw), dl.Reason)
		}
		if want := "model: rejected " + dl.Record.Cursor; dl.Reason != want {
			m.t.Fatalf("step %d: dead letter reason %q, want %q", step, dl.Reason, want)
		}
		got = append(got, dl.Record.Cursor)
	}
	if fmt.Sprint(got) != fmt.Sprint(m.dead) {
		m.t.Fatalf("step %d: dead letters %v, model %v", step, got, m.dead)
	}
	if st := m.s.Stats(); st.DeadLetters != int64(len(m.dead)) {
		m.t.Fatalf("step %d: Stats.DeadLetters %d, model %d", step, st.DeadLetters, len(m.dead))
	}
}

// copyTree copies dir's regular files to a new directory next, as they are
// at this instant (a snapshot of a running process's files).
func copyTree(dir, next string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		dst := filepath.Join(next, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		src, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while we walked, as a segment file can be
		}
		if err != nil {
			return err
		}
		defer src.Close()
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, src); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
