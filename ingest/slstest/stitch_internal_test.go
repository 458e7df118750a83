package slstest

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/gogo/protobuf/proto"
	"github.com/pierrec/lz4/v4"
)

// randomGroups stores n log groups of random sizes and kinds: generated
// audit, web and hostile logs (1..100 a group), tiny groups and groups of
// random bytes (up to 70 KB), which are stored uncompressed.
func randomGroups(t testing.TB, rnd *rand.Rand, n int) []storedGroup {
	t.Helper()
	gens := []*Generator{NewGenerator(KindAudit, rnd.Int64()), NewGenerator(KindWeb, rnd.Int64()), NewGenerator(KindOdd, rnd.Int64())}
	out := make([]storedGroup, 0, n)
	for len(out) < n {
		var lg *sls.LogGroup
		switch r := rnd.IntN(10); {
		case r < 5:
			lg = gens[rnd.IntN(len(gens))].LogGroup(1 + rnd.IntN(rnd.IntN(100)+1))
		case r < 6: // tiny
			tm := uint32(1)
			lg = &sls.LogGroup{Logs: []*sls.Log{{Time: &tm}}}
		case r < 7:
			lg = gens[rnd.IntN(len(gens))].LogGroup(1)
			lg.Logs[0].Contents = lg.Logs[0].Contents[:1]
		default: // incompressible: a value of random bytes, up to 70 KB
			v := make([]byte, rnd.IntN([]int{16, 300, 5000, 5000, 70_000}[rnd.IntN(5)]))
			for i := range v {
				v[i] = byte(rnd.Uint32())
			}
			k, s := "k", string(v)
			tm := uint32(1700000000)
			lg = &sls.LogGroup{Logs: []*sls.Log{{Time: &tm, Contents: []*sls.LogContent{{Key: &k, Value: &s}}}}}
		}
		raw, err := proto.Marshal(lg)
		if err != nil {
			t.Fatal(err)
		}
		g, err := makeGroup(raw, time.Unix(1700000000, int64(len(out))))
		if err != nil {
			t.Fatal(err)
		}
		if !g.stitchable {
			t.Fatalf("group %d (%d bytes, compressed %v) not stitchable", len(out), g.raw, g.compressed)
		}
		out = append(out, g)
	}
	return out
}

// comparePaths checks that the stitched answer for groups decodes with the
// SDK's lz4 decoder to exactly the LogGroupList the decompress-and-compress
// path produces, and returns both wire sizes.
func comparePaths(t testing.TB, groups []storedGroup) (stitched, compressed int) {
	t.Helper()
	var raw []byte
	for i := range groups {
		raw = appendGroupHeader(raw, int(groups[i].raw))
		var err error
		if raw, err = groups[i].appendTo(raw); err != nil {
			t.Fatal(err)
		}
	}
	if got := groupListSize(groups); got != len(raw) {
		t.Fatalf("groupListSize %d, LogGroupList is %d bytes", got, len(raw))
	}
	old, ctype, err := compressResponse(nil, raw, "lz4")
	if err != nil || ctype != "lz4" {
		t.Fatal(ctype, err)
	}
	st := appendStitched([]byte("prefix"), groups, len(raw))[len("prefix"):]
	for name, block := range map[string][]byte{"compressed": old, "stitched": st} {
		dst := make([]byte, len(raw)) // as the SDK: exactly x-log-bodyrawsize
		m, err := lz4.UncompressBlock(block, dst)
		if err != nil || m != len(raw) || !bytes.Equal(dst, raw) {
			t.Fatalf("%s answer of %d groups (%d raw bytes) decodes to %d bytes (%v), equal %v",
				name, len(groups), len(raw), m, err, bytes.Equal(dst[:m], raw[:m]))
		}
	}
	return len(st), len(old)
}

func TestStitch_DecodesAsCompressPath(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	pool := randomGroups(t, rnd, 300)
	comparePaths(t, nil)
	for i := range pool {
		comparePaths(t, pool[i:i+1]) // every 1-group pull
	}
	iters := 100
	if testing.Short() || raceEnabled {
		iters = 20
	}
	for range iters {
		a := rnd.IntN(len(pool))
		b := a + 1 + rnd.IntN(min(len(pool)-a, 1+rnd.IntN(30)))
		comparePaths(t, pool[a:b])
	}
	// Literal-only groups in a row, first and last.
	var lit, cmp []storedGroup
	for _, g := range pool {
		if g.layout.mid < 0 {
			lit = append(lit, g)
		} else {
			cmp = append(cmp, g)
		}
	}
	if len(lit) < 10 || len(cmp) < 10 {
		t.Fatalf("%d literal-only and %d compressed groups: the pool misses a case", len(lit), len(cmp))
	}
	comparePaths(t, lit)
	comparePaths(t, append(append(append([]storedGroup(nil), lit[:3]...), cmp[:3]...), lit[3:6]...))
	comparePaths(t, append(append(append([]storedGroup(nil), cmp[:3]...), lit[:3]...), cmp[3:6]...))
}

// TestStitch_LongLiteralRuns crosses the literal-length extension bytes'
// boundaries (15, 15+255, ...) in merged sequences.
func TestStitch_LongLiteralRuns(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 4, 5, 12, 13, 14, 15, 16, 254, 255, 256, 269, 270, 271, 524, 525, 526, 1000, 70000} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		rep := bytes.Repeat([]byte("abcdefgh"), 40)
		var gs []storedGroup
		for _, d := range [][]byte{b, rep, b, b, rep, append(append([]byte(nil), rep...), b...), b} {
			gs = append(gs, testGroup(d, true))
		}
		comparePaths(t, gs)
		comparePaths(t, gs[1:2])
		comparePaths(t, gs[:1])
	}
}

// testGroup stores arbitrary bytes as makeGroup does, lz4-compressed when
// that helps and compress allows.
func testGroup(b []byte, compress bool) storedGroup {
	g := storedGroup{raw: int32(len(b)), data: b}
	if compress {
		dst := make([]byte, lz4.CompressBlockBound(len(b)))
		if n, err := lz4.CompressBlock(b, dst, nil); err == nil && n > 0 && n < len(b) {
			g.data, g.compressed = dst[:n], true
		}
	}
	g.setLayout()
	return g
}

func TestStitch_ParseRejects(t *testing.T) {
	rep := bytes.Repeat([]byte("0123456789"), 10)
	g := testGroup(rep, true)
	if !g.compressed || g.layout.mid < 0 {
		t.Fatalf("test block not compressed with matches: %+v", g.layout)
	}
	for name, tc := range map[string]struct {
		block []byte
		raw   int
	}{
		"empty":             {nil, 0},
		"wrong size":        {g.data, len(rep) + 1},
		"short":             {g.data[:len(g.data)-1], len(rep)},
		"ends with a match": {[]byte{0x10, 'a', 1, 0}, 5},
		"offset 0":          {[]byte{0x10, 'a', 0, 0, 0x10, 'b'}, 6},
		"offset too far":    {[]byte{0x10, 'a', 2, 0, 0x10, 'b'}, 6},
		"match nibble last": {[]byte{0x11, 'a'}, 1},
		"literals too long": {[]byte{0x50, 'a'}, 5},
		"unended extension": {[]byte{0xf0, 255}, 270},
	} {
		if l, ok := parseLZ4Layout(tc.block, tc.raw); ok {
			t.Errorf("%s: %x parsed as %+v", name, tc.block, l)
		}
	}
	if _, ok := parseLZ4Layout([]byte{0x10, 'a', 1, 0, 0x50, 'b', 'c', 'd', 'e', 'f'}, 10); !ok {
		t.Error("a valid hand-made block does not parse")
	}
}

// FuzzStitch cuts the input into groups, stores each as makeGroup would
// (forced raw when the cut byte is odd) and checks the stitched answer.
func FuzzStitch(f *testing.F) {
	f.Add(bytes.Repeat([]byte("hello world "), 50), []byte{10, 200, 7, 0, 33})
	f.Add([]byte("x"), []byte{})
	f.Add(bytes.Repeat([]byte{0}, 1000), []byte{255, 255, 1})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		var gs []storedGroup
		for _, c := range cuts {
			n := min(len(data), int(c)*3)
			gs = append(gs, testGroup(data[:n], c&1 == 0))
			data = data[n:]
		}
		gs = append(gs, testGroup(data, true))
		for _, g := range gs {
			if !g.stitchable {
				t.Fatalf("group of %d bytes not stitchable", g.raw)
			}
		}
		comparePaths(t, gs)
	})
}

// FuzzLZ4Layout: a block that parses must decode to its size, and stitch
// between two other groups.
func FuzzLZ4Layout(f *testing.F) {
	g := testGroup(bytes.Repeat([]byte("0123456789"), 10), true)
	f.Add(g.data, 100)
	f.Add([]byte{0x10, 'a', 1, 0, 0x50, 'b', 'c', 'd', 'e', 'f'}, 10)
	f.Add([]byte{0xf0, 0, 'a'}, 15)
	f.Fuzz(func(t *testing.T, block []byte, raw int) {
		if raw < 0 || raw > 1<<20 {
			return
		}
		l, ok := parseLZ4Layout(block, raw)
		if !ok {
			return
		}
		dst := make([]byte, raw)
		if m, err := lz4.UncompressBlock(block, dst); err != nil || m != raw {
			t.Fatalf("block parsed as %+v decodes to %d of %d bytes: %v", l, m, raw, err)
		}
		mid := storedGroup{data: block, raw: int32(raw), compressed: true, layout: l, stitchable: true}
		comparePaths(t, []storedGroup{testGroup([]byte("before before before"), true), mid, testGroup(bytes.Repeat([]byte("ab"), 40), true)})
		comparePaths(t, []storedGroup{mid})
	})
}

// TestServer_PullLogsStitched pulls shards through the SDK with lz4
// (stitched) and zstd (decompress and compress) and compares bodies and
// metadata pull by pull: shard 0 holds random groups, pulled with several
// counts; shard 1 holds more than maxPullRaw of big groups. A group whose
// layout is unknown sends a pull down the old path.
func TestServer_PullLogsStitched(t *testing.T) {
	s := NewServer(t, Options{Logstores: []LogstoreOptions{{Name: "st", Shards: 2}}})
	rnd := rand.New(rand.NewPCG(5, 6))
	for _, g := range randomGroups(t, rnd, 150) {
		if err := s.appendRaw(DefaultProject, "st", 0, "", mustAppendTo(t, &g)); err != nil {
			t.Fatal(err)
		}
	}
	big, err := proto.Marshal(NewGenerator(KindAudit, 7).LogGroup(300))
	if err != nil {
		t.Fatal(err)
	}
	for total := 0; total < maxPullRaw+maxPullRaw/2; total += len(big) {
		if err := s.appendRaw(DefaultProject, "st", 1, "", big); err != nil {
			t.Fatal(err)
		}
	}
	c := sls.CreateNormalInterface(s.Endpoint(), DefaultAKID, DefaultAKSecret, "").(*sls.Client)
	c.SetHTTPClient(s.HTTPClient())
	ls, _ := s.logstore(DefaultProject, "st")
	pullAll := func(t *testing.T, shard, count int) (maxRaw int) {
		var stitchable []bool
		ls.read(func() {
			for _, g := range ls.shards[shard].groups {
				stitchable = append(stitchable, g.stitchable)
			}
		})
		cur, err := c.GetCursor(DefaultProject, "st", shard, "begin")
		if err != nil {
			t.Fatal(err)
		}
		var pulls, groups int
		var want int64 // pulls whose groups are all stitchable
		before := s.stats.stitchedPulls.Load()
		for {
			var bodies [2][]byte
			var metas [2]*sls.PullLogMeta
			for i, ct := range []int{sls.Compress_LZ4, sls.Compress_ZSTD} {
				plr := &sls.PullLogRequest{Project: DefaultProject, Logstore: "st", ShardID: shard, Cursor: cur, LogGroupMaxCount: count, CompressType: ct}
				if bodies[i], metas[i], err = c.GetLogsBytesWithQuery(plr); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(bodies[0], bodies[1]) {
				t.Fatalf("pull %d at %s, count %d: lz4 body (%d bytes) differs from zstd body (%d bytes)", pulls, cur, count, len(bodies[0]), len(bodies[1]))
			}
			m0, m1 := *metas[0], *metas[1]
			m0.Netflow, m1.Netflow = 0, 0
			if m0 != m1 {
				t.Fatalf("pull %d: lz4 meta %+v, zstd meta %+v", pulls, m0, m1)
			}
			if m0.RawSize != len(bodies[0]) || countGroups(bodies[0]) != m0.Count {
				t.Fatalf("pull %d: meta %+v for a %d-byte body of %d groups", pulls, m0, len(bodies[0]), countGroups(bodies[0]))
			}
			if !slices.Contains(stitchable[groups:groups+m0.Count], false) {
				want++
			}
			pulls++
			groups += m0.Count
			maxRaw = max(maxRaw, m0.RawSize)
			if m0.NextCursor == cur {
				break
			}
			cur = m0.NextCursor
		}
		if groups != len(stitchable) {
			t.Fatalf("count %d: %d groups pulled of %d", count, groups, len(stitchable))
		}
		if got := s.stats.stitchedPulls.Load() - before; got != want {
			t.Fatalf("count %d: %d of %d lz4 pulls stitched, want %d", count, got, pulls, want)
		}
		return maxRaw
	}
	for _, count := range []int{1, 3, 64, 1000} {
		t.Run("count="+strconv.Itoa(count), func(t *testing.T) { pullAll(t, 0, count) })
	}
	t.Run("maxPullRaw", func(t *testing.T) {
		if m := pullAll(t, 1, 1000); m < maxPullRaw || m > maxPullRaw+len(big)+8 {
			t.Fatalf("largest pull %d bytes, want at least maxPullRaw %d and less than one group more", m, maxPullRaw)
		}
	})
	t.Run("unparsed group", func(t *testing.T) {
		ls.write(func() {
			for i := range ls.shards[0].groups {
				if i%40 == 3 {
					ls.shards[0].groups[i].stitchable = false
				}
			}
		})
		pullAll(t, 0, 1000)
		pullAll(t, 0, 3)
	})
}

func mustAppendTo(t testing.TB, g *storedGroup) []byte {
	t.Helper()
	b, err := g.appendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkPullBody measures building one PullLogs lz4 answer of 1000
// audit groups of 100 logs (as BenchmarkServer_PullLogs serves them), by
// decompressing and compressing ("recompress", the path before stitching
// and still the fallback) and by stitching; CPU seconds per GB served is
// 1000 / (MB/s). "ratio" is raw bytes per byte on the wire.
func BenchmarkPullBody(b *testing.B) {
	gen := NewGenerator(KindAudit, 1)
	groups := make([]storedGroup, 1000)
	for i := range groups {
		raw, _ := proto.Marshal(gen.LogGroup(100))
		g, err := makeGroup(raw, time.Now())
		if err != nil || !g.stitchable {
			b.Fatal(err, g.stitchable)
		}
		groups[i] = g
	}
	n, size := pullExtent(groups)
	groups = groups[:n]
	b.Run("recompress", func(b *testing.B) {
		b.SetBytes(int64(size))
		var raw, out []byte
		for b.Loop() {
			raw = raw[:0]
			for i := range groups {
				raw = appendGroupHeader(raw, int(groups[i].raw))
				raw, _ = groups[i].appendTo(raw)
			}
			out, _, _ = compressResponse(out[:0], raw, "lz4")
		}
		b.ReportMetric(float64(size)/float64(len(out)), "ratio")
	})
	b.Run("stitch", func(b *testing.B) {
		b.SetBytes(int64(size))
		var out []byte
		for b.Loop() {
			out = appendStitched(out[:0], groups, size)
		}
		b.ReportMetric(float64(size)/float64(len(out)), "ratio")
	})
}
