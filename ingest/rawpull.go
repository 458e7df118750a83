package ingest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	consumer "github.com/aliyun/aliyun-log-go-sdk/consumer"
)

// Raw pulls.
//
// The consumer library pulls a shard with PullLogsWithQuery, which decodes
// the answer into an sls.LogGroupList: one heap object per log and per
// key/value, about 3.5 times the raw bytes (35 MB for a 10 MiB pull), which
// Process then marshalled straight back into the bytes it came from. The
// decode and the re-encode were a third of the relay's CPU and most of its
// heap: every shard held its decoded pull from the fetch until its Process
// returned, so the heap grew with the number of shards waiting on the spool.
//
// rawPulls wraps the library's SLS client (the same reflection seam as
// settleSDKClient) so that PullLogsWithQuery fetches the bytes only
// (GetLogsBytesWithQuery: the same request, headers and PullLogMeta, hence
// the same cursors and fetch pacing), checks that they are a well-formed
// LogGroupList and hands them to Process in the LogGroupList's
// XXX_unrecognized field with no LogGroups: exactly what Marshal of that
// value yields, so newRecord spools the bytes without a copy. A malformed
// answer fails the pull, as the library's decode failing did.
//
// A pull's bytes stay in memory from the fetch until Process has spooled
// them, and a shard whose Process waits on a full spool holds its pull.
// pullGate therefore bounds the pulls a source holds (fetching, waiting or
// being processed) to maxHeldPulls, whatever the number of shards: a shard
// takes a slot before its request and gives it back once Process succeeded
// (or the request failed, or the consumer is stopping).

// maxHeldPulls is how many pulls a source may hold in memory at once, each
// up to the 10 MiB raw SLS answers at most (plus its spool encoding while it
// is Put): maxConcurrentPulls on the wire and one more being spooled, so
// that spooling a pull does not leave the WAN with a single request in
// flight. make bench e2e (8 shards, loopback) ran as fast with 2, 3 or 4;
// peak RSS was about 150, 170 and 180 MiB.
const maxHeldPulls = maxConcurrentPulls + 1

// pullSummary is what a record's header needs from a pull.
type pullSummary struct {
	count            int
	minTime, maxTime int64
}

// pullGate bounds the pulls a source holds in memory; one per consumer
// instance (Worker.Run loop).
type pullGate struct {
	ctx   context.Context // ends when the consumer instance stops
	slots chan struct{}

	mu   sync.Mutex
	held map[int]*heldPull // by shard
}

// heldPull is a shard's slot: its pull in flight (gl nil) or fetched and
// not yet spooled.
type heldPull struct {
	gl  *sls.LogGroupList
	sum pullSummary
}

func newPullGate(ctx context.Context, n int) *pullGate {
	return &pullGate{ctx: ctx, slots: make(chan struct{}, n), held: map[int]*heldPull{}}
}

// acquire takes a slot for shard's next pull. A shard that already holds
// one (its previous pull was not processed) keeps it. Once the consumer is
// stopping it lets the pull go without a slot, as the library did before:
// its Process then fails and the library stops.
func (g *pullGate) acquire(shard int) {
	g.mu.Lock()
	_, ok := g.held[shard]
	g.mu.Unlock()
	if ok {
		return
	}
	select {
	case g.slots <- struct{}{}:
	case <-g.ctx.Done():
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.held[shard]; ok { // taken meanwhile for the same shard
		<-g.slots
		return
	}
	g.held[shard] = &heldPull{}
}

// hold records the fetched pull of shard (its slot taken by acquire).
func (g *pullGate) hold(shard int, gl *sls.LogGroupList, sum pullSummary) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if h := g.held[shard]; h != nil {
		h.gl, h.sum = gl, sum
	}
}

// summary returns what the fetch found in gl, if gl is shard's held pull.
func (g *pullGate) summary(shard int, gl *sls.LogGroupList) (pullSummary, bool) {
	if g == nil {
		return pullSummary{}, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if h := g.held[shard]; h != nil && h.gl == gl && gl != nil {
		return h.sum, true
	}
	return pullSummary{}, false
}

// release gives back shard's slot, if it holds one.
func (g *pullGate) release(shard int) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.held[shard]; ok {
		delete(g.held, shard)
		<-g.slots
	}
}

// rawPulls is the library's SLS client with PullLogsWithQuery answering raw
// bytes (see above); every other method is the client's own.
type rawPulls struct {
	sls.ClientInterface
	gate *pullGate
}

// PullLogsWithQuery fetches a pull's bytes, checks them, and returns them
// as a LogGroupList carrying them in XXX_unrecognized.
func (c *rawPulls) PullLogsWithQuery(plr *sls.PullLogRequest) (*sls.LogGroupList, *sls.PullLogMeta, error) {
	c.gate.acquire(plr.ShardID)
	out, plm, err := c.ClientInterface.GetLogsBytesWithQuery(plr)
	if err != nil {
		c.gate.release(plr.ShardID)
		return nil, nil, err
	}
	sum, err := scanLogGroupList(out)
	if err != nil {
		c.gate.release(plr.ShardID)
		return nil, nil, fmt.Errorf("pull of shard %d: %w", plr.ShardID, err)
	}
	gl := &sls.LogGroupList{XXX_unrecognized: out}
	c.gate.hold(plr.ShardID, gl, sum)
	return gl, plm, nil
}

// sdkClientField returns the consumer library's SLS client field of cw
// (ConsumerWorker.client.client, an sls.ClientInterface), settable.
func sdkClientField(cw *consumer.ConsumerWorker) (reflect.Value, bool) {
	v := reflect.ValueOf(cw).Elem().FieldByName("client")
	if !v.IsValid() || v.Kind() != reflect.Pointer || v.IsNil() {
		return reflect.Value{}, false
	}
	inner := v.Elem().FieldByName("client")
	if !inner.IsValid() || inner.Kind() != reflect.Interface || inner.IsNil() {
		return reflect.Value{}, false
	}
	return reflect.NewAt(inner.Type(), unsafe.Pointer(inner.UnsafeAddr())).Elem(), true
}

// useRawPulls makes cw's pulls raw (see above), before Start. It returns
// false, changing nothing, if the library's layout is not the expected one:
// then pulls are decoded by the library and re-encoded, as before.
func useRawPulls(cw *consumer.ConsumerWorker, gate *pullGate) bool {
	f, ok := sdkClientField(cw)
	if !ok {
		return false
	}
	c, ok := f.Interface().(sls.ClientInterface)
	if !ok {
		return false
	}
	if _, done := c.(*rawPulls); done {
		return true
	}
	w := reflect.ValueOf(sls.ClientInterface(&rawPulls{ClientInterface: c, gate: gate}))
	if !w.Type().AssignableTo(f.Type()) {
		return false
	}
	f.Set(w)
	return true
}

// errLogGroupList is wrapped by scanLogGroupList's errors.
var errLogGroupList = errors.New("malformed log group list")

// scanLogGroupList checks that b is a serialized sls.LogGroupList as the
// spool's readers decode it (every log with its __time__, every content and
// tag with key and value, lengths within bounds) and counts its logs and
// their time range, without allocating.
func scanLogGroupList(b []byte) (pullSummary, error) {
	s := pullSummary{minTime: 1<<63 - 1}
	for i := 0; i < len(b); {
		num, wt, a, e, _, n, err := pbField(b, i, len(b))
		if err != nil {
			return s, err
		}
		if num == 1 {
			if wt != 2 {
				return s, pbErr("log group has wire type %d", wt)
			}
			if err := scanLogGroup(b, a, e, &s); err != nil {
				return s, err
			}
		}
		i = n
	}
	if s.count == 0 {
		s.minTime = 0
	}
	return s, nil
}

func scanLogGroup(b []byte, start, end int, s *pullSummary) error {
	for i := start; i < end; {
		num, wt, a, e, _, n, err := pbField(b, i, end)
		if err != nil {
			return err
		}
		if num <= 6 && wt != 2 {
			return pbErr("log group field %d has wire type %d", num, wt)
		}
		switch num {
		case 1:
			t, err := scanLog(b, a, e)
			if err != nil {
				return err
			}
			s.count++
			s.minTime, s.maxTime = min(s.minTime, t), max(s.maxTime, t)
		case 6:
			if err := scanPair(b, a, e); err != nil {
				return err
			}
		}
		i = n
	}
	return nil
}

// scanLog returns the log's __time__.
func scanLog(b []byte, start, end int) (int64, error) {
	var t int64
	hasTime := false
	for i := start; i < end; {
		num, wt, a, e, v, n, err := pbField(b, i, end)
		if err != nil {
			return 0, err
		}
		switch {
		case num == 1 && wt == 0:
			t, hasTime = int64(uint32(v)), true
		case num == 2 && wt == 2:
			if err := scanPair(b, a, e); err != nil {
				return 0, err
			}
		case num == 1 || num == 2 || num == 4 && wt != 5:
			return 0, pbErr("log field %d has wire type %d", num, wt)
		}
		i = n
	}
	if !hasTime {
		return 0, pbErr("log without __time__")
	}
	return t, nil
}

// scanPair checks a LogContent or LogTag: key (1) and value (2) present.
func scanPair(b []byte, start, end int) error {
	// The encoding every SLS writer uses: key (field 1) then value (field
	// 2), nothing else, the key shorter than 128 bytes.
	if i := start; end-i >= 4 && b[i] == 0x0a && b[i+1] < 0x80 {
		kEnd := i + 2 + int(b[i+1])
		if kEnd < end && b[kEnd] == 0x12 {
			if vl, vs, err := pbVarint(b, kEnd+1, end); err == nil && vl == uint64(end-vs) {
				return nil
			}
		}
	}
	var hasK, hasV bool
	for i := start; i < end; {
		num, wt, _, _, _, n, err := pbField(b, i, end)
		if err != nil {
			return err
		}
		if (num == 1 || num == 2) && wt != 2 {
			return pbErr("key or value has wire type %d", wt)
		}
		hasK, hasV = hasK || num == 1, hasV || num == 2
		i = n
	}
	if !hasK || !hasV {
		return pbErr("content or tag without key or value")
	}
	return nil
}

func pbErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errLogGroupList, fmt.Sprintf(format, args...))
}

// pbField reads the protobuf field at b[i:end]: its number and wire type,
// for wire type 2 the bounds [a,e) of its bytes, else its value, and the
// offset after it.
func pbField(b []byte, i, end int) (num, wt, a, e int, v uint64, next int, err error) {
	key, i, err := pbVarint(b, i, end)
	if err != nil {
		return
	}
	if key>>3 == 0 || key>>3 > 1<<29-1 {
		err = pbErr("field number %d", key>>3)
		return
	}
	num, wt = int(key>>3), int(key&7)
	switch wt {
	case 0:
		v, next, err = pbVarint(b, i, end)
	case 1:
		if end-i < 8 {
			err = pbErr("truncated")
			return
		}
		next = i + 8
	case 5:
		if end-i < 4 {
			err = pbErr("truncated")
			return
		}
		next = i + 4
	case 2:
		var l uint64
		if l, i, err = pbVarint(b, i, end); err != nil {
			return
		}
		if l > uint64(end-i) {
			err = pbErr("truncated")
			return
		}
		a, e, next = i, i+int(l), i+int(l)
	default:
		err = pbErr("wire type %d", wt)
	}
	return
}

func pbVarint(b []byte, i, end int) (uint64, int, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if i >= end {
			return 0, 0, pbErr("truncated")
		}
		c := b[i]
		i++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i, nil
		}
	}
	return 0, 0, pbErr("varint too long")
}
