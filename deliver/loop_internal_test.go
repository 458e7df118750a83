package deliver

import (
	"context"
	"strconv"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/spool"
)

// memQueue is a minimal in-package Queue; onEmpty is called when Peek finds
// nothing left.
type memQueue struct {
	recs    []*spool.Record
	acked   []uint64
	onEmpty func()
}

func (q *memQueue) add(t *testing.T, seq uint64, n int) {
	g := &sls.LogGroup{}
	for i := range n {
		sec := uint32(1700000000 + i)
		k, v := "n", strconv.Itoa(i)
		g.Logs = append(g.Logs, &sls.Log{Time: &sec, Contents: []*sls.LogContent{{Key: &k, Value: &v}}})
	}
	p, err := (&sls.LogGroupList{LogGroups: []*sls.LogGroup{g}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	q.recs = append(q.recs, &spool.Record{Seq: seq, Count: n, Payload: p})
}

func (q *memQueue) Peek(ctx context.Context) (*spool.Record, error) {
	if len(q.recs) == 0 {
		q.onEmpty()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return q.recs[0], nil
}

func (q *memQueue) Ack(seq uint64) error {
	q.recs = q.recs[1:]
	q.acked = append(q.acked, seq)
	return nil
}

func (q *memQueue) DeadLetter(*spool.Record, string) error { return nil }

type funcSink struct {
	send func(context.Context, *Batch) error
}

func (s *funcSink) Name() string                             { return "func" }
func (s *funcSink) Send(ctx context.Context, b *Batch) error { return s.send(ctx, b) }
func (s *funcSink) Close() error                             { return nil }

// TestLimiter checks the token bucket against a fake clock: the sleeps it
// asks for add up to what the rate allows, whatever the batch sizes.
func TestLimiter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rate    float64
		batches []int
		want    time.Duration // total sleep
	}{
		{"unlimited", 0, []int{1000, 1000}, 0},
		{"within burst", 100, []int{50, 50}, 0},
		{"steady", 100, []int{100, 100, 100, 100}, 3 * time.Second},
		{"one big record goes into debt", 100, []int{1000}, 9 * time.Second},
		{"debt then small", 10, []int{30, 1, 1}, 2200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(0, 0)
			var slept time.Duration
			l := newLimiter(tc.rate)
			l.now = func() time.Time { return now }
			l.sleep = func(_ context.Context, d time.Duration) error { slept += d; now = now.Add(d); return nil }
			for _, n := range tc.batches {
				if err := l.wait(context.Background(), n); err != nil {
					t.Fatal(err)
				}
			}
			if diff := slept - tc.want; diff < -time.Millisecond || diff > time.Millisecond {
				t.Errorf("slept %v, want %v", slept, tc.want)
			}
		})
	}
}

// TestLoop_RateLimit runs the loop with a fake clock and checks every event
// was delivered, in order, after the sleeps the rate requires.
func TestLoop_RateLimit(t *testing.T) {
	now := time.Unix(0, 0)
	var slept time.Duration
	var sentAt []time.Duration
	sink := &funcSink{send: func(ctx context.Context, b *Batch) error {
		sentAt = append(sentAt, now.Sub(time.Unix(0, 0)))
		return nil
	}}
	q := &memQueue{}
	for i := 1; i <= 10; i++ {
		q.add(t, uint64(i), 100)
	}
	l := NewLoop(q, sink, LoopOptions{RateLimit: 200})
	l.lim.now = func() time.Time { return now }
	l.lim.sleep = func(_ context.Context, d time.Duration) error { slept += d; now = now.Add(d); return nil }
	ctx, cancel := context.WithCancel(context.Background())
	q.onEmpty = cancel
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.DeliveredEvents != 1000 || len(q.acked) != 10 {
		t.Fatalf("stats %+v acked %v", st, q.acked)
	}
	// 1000 events at 200/s with a burst of 200: the first two batches of 100
	// go at once, each later one 0.5 s after the previous; 4 s in all.
	if want := 4 * time.Second; slept < want-time.Millisecond || sentAt[9] < want-time.Millisecond {
		t.Errorf("slept %v, last send at %v, want ≥ %v", slept, sentAt[9], want)
	}
	for i := 1; i < len(sentAt); i++ {
		if gap := sentAt[i] - sentAt[i-1]; i >= 2 && gap < 500*time.Millisecond-time.Millisecond {
			t.Errorf("send %d only %v after the previous one", i, gap)
		}
	}
}
