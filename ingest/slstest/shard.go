package slstest

import (
	"encoding/base64"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pierrec/lz4/v4"
)

// Shard states as ListShards reports them.
const (
	statusReadWrite = "readwrite"
	statusReadOnly  = "readonly"
)

// storedGroup is one log group as written: its serialized protobuf bytes,
// lz4-compressed unless incompressible, with its receive time and log count,
// and where the parts of its lz4 block lie for stitching (stitch.go).
type storedGroup struct {
	data       []byte
	raw        int32 // serialized size
	logs       int32
	compressed bool
	stitchable bool // layout is valid: the block parsed cleanly
	layout     lz4Layout
	recv       int64 // receive time, unix nanoseconds
}

// bytes returns the serialized LogGroup, appended to dst.
func (g *storedGroup) appendTo(dst []byte) ([]byte, error) {
	if !g.compressed {
		return append(dst, g.data...), nil
	}
	n := len(dst)
	dst = grow(dst, int(g.raw))
	m, err := lz4.UncompressBlock(g.data, dst[n:n+int(g.raw)])
	if err != nil || m != int(g.raw) {
		return dst[:n], fmt.Errorf("stored group corrupt: %v", err)
	}
	return dst, nil
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// shard holds the groups of one shard. A group's sequence number is its
// index since the shard was created; cursors encode base+sequence.
type shard struct {
	id         int
	status     string
	begin, end string // inclusive begin key, exclusive end key (32 hex chars)
	createTime int64  // unix seconds
	base       int64  // cursor of sequence 0
	first      int64  // sequence of groups[0]; earlier ones expired
	groups     []storedGroup
	logs       int64 // logs currently held
	parents    []int // shards this one was split or merged from
}

func (sh *shard) endSeq() int64 { return sh.first + int64(len(sh.groups)) }

// expire drops groups received before cutoff (unix nanoseconds).
func (sh *shard) expire(cutoff int64) {
	i := sort.Search(len(sh.groups), func(i int) bool { return sh.groups[i].recv >= cutoff })
	if i == 0 {
		return
	}
	for _, g := range sh.groups[:i] {
		sh.logs -= int64(g.logs)
	}
	sh.first += int64(i)
	rest := sh.groups[i:]
	if cap(rest) < cap(sh.groups)/2 { // release the expired prefix's memory
		rest = append([]storedGroup(nil), rest...)
	}
	sh.groups = rest
}

// seqAtTime returns the first sequence received at or after t (unix seconds).
func (sh *shard) seqAtTime(t int64) int64 {
	ns := t * int64(time.Second)
	i := sort.Search(len(sh.groups), func(i int) bool { return sh.groups[i].recv >= ns })
	return sh.first + int64(i)
}

func encodeCursor(v int64) string {
	return base64.StdEncoding.EncodeToString([]byte(strconv.FormatInt(v, 10)))
}

func decodeCursor(c string) (int64, bool) {
	b, err := base64.StdEncoding.DecodeString(c)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	return v, err == nil
}

func (sh *shard) cursor(seq int64) string { return encodeCursor(sh.base + seq) }

// seqOf decodes a cursor of this shard; ok is false for a malformed cursor
// or one outside the retained range.
func (sh *shard) seqOf(c string) (int64, *apiError) {
	v, ok := decodeCursor(c)
	seq := v - sh.base
	switch {
	case !ok:
		return 0, errf(400, codeInvalidCursor, "cursor %q is invalid", c)
	case seq < sh.first:
		return 0, errf(400, codeInvalidCursor, "cursor %s is out of range: the data it points to has expired (oldest retained cursor %s)", c, sh.cursor(sh.first))
	case seq > sh.endSeq():
		return 0, errf(400, codeInvalidCursor, "cursor %s is out of range (end cursor %s)", c, sh.cursor(sh.endSeq()))
	}
	return seq, nil
}

// Hash keys are 128-bit numbers written as 32 lowercase hex digits; shards
// of a logstore cover [00..0, ff..f] without gaps, the last end key being
// "ffffffffffffffffffffffffffffffff" as in the service.
var maxKey = new(big.Int).Lsh(big.NewInt(1), 128)

func keyString(k *big.Int) string {
	if k.Cmp(maxKey) >= 0 {
		return strings.Repeat("f", 32)
	}
	return fmt.Sprintf("%032x", k)
}

func parseKey(s string) (*big.Int, bool) {
	s = strings.ToLower(s)
	if len(s) == 0 || len(s) > 32 {
		return nil, false
	}
	s += strings.Repeat("0", 32-len(s))
	k, ok := new(big.Int).SetString(s, 16)
	return k, ok
}

// normalizeKey pads a hash key to 32 hex digits for comparisons.
func normalizeKey(s string) (string, bool) {
	k, ok := parseKey(s)
	if !ok {
		return "", false
	}
	return fmt.Sprintf("%032x", k), true
}

// splitRange divides [begin, end) into n key ranges.
func splitRange(begin, end string, n int) []string {
	b, _ := parseKey(begin)
	e, _ := parseKey(end)
	if end == strings.Repeat("f", 32) {
		e = new(big.Int).Set(maxKey)
	}
	width := new(big.Int).Sub(e, b)
	keys := make([]string, 0, n+1)
	for i := 0; i <= n; i++ {
		k := new(big.Int).Mul(width, big.NewInt(int64(i)))
		k.Div(k, big.NewInt(int64(n)))
		k.Add(k, b)
		keys = append(keys, keyString(k))
	}
	keys[n] = end
	return keys
}

// inRange reports whether key (normalized) falls in [begin, end); the last
// shard's end key "ff..f" is treated as inclusive.
func inRange(key, begin, end string) bool {
	if key < begin {
		return false
	}
	return key < end || end == strings.Repeat("f", 32)
}
