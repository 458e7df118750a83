package spool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slsrelay/spool"
)

func openLanesT(t *testing.T, dir string, opts spool.Options, seal time.Duration) *spool.Lanes {
	t.Helper()
	l, err := spool.OpenLanes(dir, opts, seal)
	if err != nil {
		t.Fatalf("OpenLanes: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func laneRec(name string, count int, at time.Time) *spool.Record {
	return &spool.Record{Project: "p", Logstore: "l", Cursor: name, Count: count,
		Payload: []byte(strings.Repeat(name+";", 200)), ReceivedAt: at}
}

func peekAck(t *testing.T, q interface {
	Peek(context.Context) (*spool.Record, error)
	Ack(uint64) error
}) *spool.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := q.Peek(ctx)
	if err != nil {
		t.Fatalf("peek: %v", err)
	}
	if again, err := q.Peek(ctx); err != nil || again.Seq != r.Seq {
		t.Fatalf("second peek: %v %v, want seq %d again", again, err, r.Seq)
	}
	if err := q.Ack(r.Seq); err != nil {
		t.Fatalf("ack %d: %v", r.Seq, err)
	}
	return r
}

// A backlog that built up while the sink was down is sealed once delivery
// flows again; records put after that are delivered interleaved with it,
// not after all of it. Each lane stays FIFO and nothing is lost or doubled.
func TestLanes_NewRecordsInterleaveWithBacklog(t *testing.T) {
	l := openLanesT(t, t.TempDir(), testOptions(t), 50*time.Millisecond)
	ctx := context.Background()
	old := time.Now().Add(-time.Minute)
	const backlog, fresh = 20, 5
	// The outage: no Ack yet, so however old the live lane gets, it is
	// not sealed (sealing mid-outage would only split the backlog).
	for i := range backlog {
		if err := l.Put(ctx, laneRec(fmt.Sprintf("old-%02d", i), 1000, old)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// The sink is back: the first record goes out...
	var order []string
	order = append(order, peekAck(t, l).Cursor)
	// ...and what ingest writes now takes the other lane.
	for i := range fresh {
		if err := l.Put(ctx, laneRec(fmt.Sprintf("new-%02d", i), 10, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for range backlog + fresh - 1 {
		order = append(order, peekAck(t, l).Cursor)
	}
	if st := l.Stats(); st.Depth != 0 || st.Put != backlog+fresh || st.Acked != backlog+fresh {
		t.Fatalf("stats after the drain: %+v", st)
	}
	t.Logf("delivery order: %v", order)
	lastNew, seen := -1, map[string]bool{}
	var olds, news []string
	for i, c := range order {
		if seen[c] {
			t.Fatalf("%s delivered twice", c)
		}
		seen[c] = true
		if strings.HasPrefix(c, "new-") {
			lastNew = i
			news = append(news, c)
		} else {
			olds = append(olds, c)
		}
	}
	// Weighted by events (10 against 1000), each new record goes out next
	// to one backlog record: all of them within the first 2×fresh+1.
	if lastNew > 2*fresh+1 {
		t.Errorf("the last new record went out %dth of %d: not interleaved with the backlog", lastNew+1, len(order))
	}
	for i := 1; i < len(olds); i++ {
		if olds[i] < olds[i-1] {
			t.Errorf("backlog lane out of order: %v", olds)
		}
	}
	for i := 1; i < len(news); i++ {
		if news[i] < news[i-1] {
			t.Errorf("new lane out of order: %v", news)
		}
	}
	if len(seen) != backlog+fresh {
		t.Errorf("%d distinct records delivered, want %d", len(seen), backlog+fresh)
	}
}

// The two lanes share one byte budget: with the backlog lane full, a Put
// into the other lane waits, and an Ack of the backlog lets it in.
func TestLanes_SharedBudget(t *testing.T) {
	opts := testOptions(t)
	opts.MaxBytes = 16 << 10
	opts.Compression = "none"
	l := openLanesT(t, t.TempDir(), opts, 10*time.Millisecond)
	ctx := context.Background()
	old := time.Now().Add(-time.Minute)
	n := 0
	for {
		pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		err := l.Put(pctx, laneRec(fmt.Sprintf("old-%02d", n), 1, old))
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n < 3 {
		t.Fatalf("only %d records fit the budget", n)
	}
	budgetUsed := l.Stats().Bytes
	peekAck(t, l) // delivery flows: the next Put seals the backlog
	if err := l.Put(ctx, laneRec("new-00", 1, time.Now())); err != nil {
		t.Fatal(err)
	}
	// Now both lanes hold records; the total may not pass the budget.
	done := make(chan error, 1)
	go func() {
		done <- l.Put(ctx, laneRec("new-01", 1, time.Now()))
	}()
	select {
	case err := <-done:
		t.Fatalf("put over the shared budget returned %v (spool bytes %d, budget %d)", err, l.Stats().Bytes, opts.MaxBytes)
	case <-time.After(200 * time.Millisecond):
	}
	if st := l.Stats(); st.Bytes > opts.MaxBytes {
		t.Fatalf("the lanes hold %d bytes, over the budget %d", st.Bytes, opts.MaxBytes)
	}
	// Acks free room; the waiting Put goes through.
	delivered := 1
	for delivered < 3 {
		peekAck(t, l)
		delivered++
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("put still waiting after acks freed the budget")
	}
	for l.Stats().Depth > 0 {
		peekAck(t, l)
		delivered++
	}
	if want := n + 2; delivered != want {
		t.Fatalf("delivered %d records, want %d", delivered, want)
	}
	t.Logf("%d records (%d bytes) filled the %d-byte budget", n, budgetUsed, opts.MaxBytes)
}

// What a second lane holds is delivered after a restart, also when the
// relay no longer interleaves (no rate limit any more): nothing stranded.
func TestLanes_ReopenWithoutInterleaving(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t)
	ctx := context.Background()
	l, err := spool.OpenLanes(dir, opts, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	for i := range 3 {
		if err := l.Put(ctx, laneRec(fmt.Sprintf("old-%d", i), 100, old)); err != nil {
			t.Fatal(err)
		}
	}
	peekAck(t, l)
	for i := range 3 {
		if err := l.Put(ctx, laneRec(fmt.Sprintf("new-%d", i), 1, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	// One record of the second lane goes to the dead-letter queue.
	ctx2, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := l.Peek(ctx2)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Cursor, "new-") {
		t.Fatalf("peek after the seal returned %s, want a new record first", r.Cursor)
	}
	if err := l.DeadLetter(r, "test: rejected"); err != nil {
		t.Fatal(err)
	}
	if err := l.Ack(r.Seq); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !dirExists(filepath.Join(dir, spool.LaneDirName)) {
		t.Fatal("no second lane on disk")
	}

	l = openLanesT(t, dir, opts, 0)
	if err := l.Put(ctx, laneRec("after", 1, time.Now())); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for l.Stats().Depth > 0 {
		got[peekAck(t, l).Cursor] = true
	}
	want := []string{"old-1", "old-2", "new-1", "new-2", "after"}
	for _, c := range want {
		if !got[c] {
			t.Errorf("%s not delivered after the reopen (got %v)", c, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	var dead []string
	for d, err := range spool.ReadDeadLetters(dir) {
		if err != nil {
			t.Fatal(err)
		}
		dead = append(dead, d.Record.Cursor+": "+d.Reason)
	}
	if len(dead) != 1 || dead[0] != "new-0: test: rejected" {
		t.Errorf("dead letters %v, want the one of the second lane", dead)
	}
	if st := l.Stats(); st.DeadLetters != 1 {
		t.Errorf("Stats.DeadLetters %d, want 1", st.DeadLetters)
	}
}

// Without interleaving and without a second lane on disk, Lanes is one
// Spool: no lane directory appears.
func TestLanes_Plain(t *testing.T) {
	dir := t.TempDir()
	l := openLanesT(t, dir, testOptions(t), 0)
	ctx := context.Background()
	for i := range 3 {
		if err := l.Put(ctx, laneRec(fmt.Sprintf("r-%d", i), 1, time.Now().Add(-time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if c := peekAck(t, l).Cursor; c != fmt.Sprintf("r-%d", i) {
			t.Fatalf("record %d is %s", i, c)
		}
	}
	if dirExists(filepath.Join(dir, spool.LaneDirName)) {
		t.Fatal("a second lane was created without interleaving")
	}
	if _, err := spool.OpenLanes(t.TempDir(), testOptions(t), -time.Second); err == nil {
		t.Fatal("a negative seal age was accepted")
	}
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
