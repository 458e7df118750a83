package ingest

import (
	"fmt"
	"math"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/spool"
)

// newRecord encodes one pull as a spool record.
func newRecord(project, logstore string, shard int, cursor, next string, lgl *sls.LogGroupList) (*spool.Record, error) {
	r := &spool.Record{
		Project: project, Logstore: logstore, Shard: shard,
		Cursor: cursor, NextCursor: next,
		ReceivedAt: time.Now(),
		MinTime:    math.MaxInt64,
	}
	for _, lg := range lgl.LogGroups {
		for _, l := range lg.Logs {
			r.Count++
			t := int64(l.GetTime())
			r.MinTime = min(r.MinTime, t)
			r.MaxTime = max(r.MaxTime, t)
		}
	}
	if r.Count == 0 {
		r.MinTime = 0
		return r, nil
	}
	payload, err := lgl.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode log groups of shard %d: %w", shard, err)
	}
	r.Payload = payload
	return r, nil
}
