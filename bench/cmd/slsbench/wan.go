package main

import (
	"context"
	"fmt"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
)

// wanResult is the SLS wire cost of the e2e workload for one pull
// compression: response bytes per raw byte, as the relay's SDK pulls it.
type wanResult struct {
	Compression string
	Raw         int64
	Wire        int64
	Ratio       float64 // wire / raw
	Took        time.Duration
}

// pullAll reads every shard of the e2e logstore from its beginning to its
// end with the SDK (1000 groups a pull, as the relay), asking for
// compression, and returns what the emulator served meanwhile.
func (b *bench) pullAll(ctx context.Context, compression int, name string) (wanResult, error) {
	res := wanResult{Compression: name}
	c := sls.CreateNormalInterface(b.sls.Endpoint(), benchAKID, benchAKSec, "")
	c.SetHTTPClient(b.sls.HTTPClient())
	before := b.sls.Stats()
	start := time.Now()
	pulls := int64(0)
	for sh := 0; sh < b.e2e.Shards; sh++ {
		cur, err := c.GetCursor(benchProject, b.e2e.Logstore, sh, "begin")
		if err != nil {
			return res, err
		}
		end, err := c.GetCursor(benchProject, b.e2e.Logstore, sh, "end")
		if err != nil {
			return res, err
		}
		for cur != end {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			_, plm, err := c.GetLogsBytesWithQuery(&sls.PullLogRequest{Project: benchProject, Logstore: b.e2e.Logstore,
				ShardID: sh, Cursor: cur, EndCursor: end, LogGroupMaxCount: 1000, CompressType: compression})
			if err != nil {
				return res, fmt.Errorf("pull shard %d: %w", sh, err)
			}
			cur = plm.NextCursor
			pulls++
		}
	}
	// The emulator counts a pull after writing its answer: wait for the
	// last ones to be counted.
	after := b.sls.Stats()
	for deadline := time.Now().Add(5 * time.Second); after.Pulls-before.Pulls < pulls && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		after = b.sls.Stats()
	}
	res.Took = time.Since(start)
	res.Raw = after.RawBytesServed - before.RawBytesServed
	res.Wire = after.BytesServed - before.BytesServed
	if res.Raw == 0 {
		return res, fmt.Errorf("nothing pulled")
	}
	res.Ratio = float64(res.Wire) / float64(res.Raw)
	return res, nil
}

func (b *bench) benchWAN(ctx context.Context, rep *report) error {
	for _, c := range []struct {
		name string
		id   int
	}{{"lz4", sls.Compress_LZ4}, {"zstd", sls.Compress_ZSTD}} {
		for i := 0; i < b.opts.runs; i++ {
			r, err := b.pullAll(ctx, c.id, c.name)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			b.logf("wan %s run %d: %.1f MB raw as %.1f MB on the wire: %.3f wire bytes per raw byte (%.2f×)",
				c.name, i+1, float64(r.Raw)/1e6, float64(r.Wire)/1e6, r.Ratio, 1/r.Ratio)
			if c.name == "lz4" {
				rep.wanLZ4 = append(rep.wanLZ4, r)
			} else {
				rep.wanZstd = append(rep.wanZstd, r)
			}
		}
	}
	return nil
}
