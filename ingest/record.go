package ingest

import (
	"fmt"
	"math"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/spool"
)

// newRecord encodes one pull as a spool record. A raw pull (see rawpull.go:
// no LogGroups, the serialized list in XXX_unrecognized) is checked and
// spooled as it is, without a copy.
func newRecord(project, logstore string, shard int, cursor, next string, lgl *sls.LogGroupList) (*spool.Record, error) {
	if raw, ok := rawPayload(lgl); ok {
		sum, err := scanLogGroupList(raw)
		if err != nil {
			return nil, fmt.Errorf("log groups of shard %d: %w", shard, err)
		}
		return rawRecord(project, logstore, shard, cursor, next, raw, sum), nil
	}
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

// rawPayload returns the serialized list a raw pull carries.
func rawPayload(lgl *sls.LogGroupList) ([]byte, bool) {
	if lgl == nil || len(lgl.LogGroups) > 0 || len(lgl.XXX_unrecognized) == 0 {
		return nil, false
	}
	return lgl.XXX_unrecognized, true
}

// rawRecord is the record of a raw pull already scanned into sum.
func rawRecord(project, logstore string, shard int, cursor, next string, raw []byte, sum pullSummary) *spool.Record {
	r := &spool.Record{
		Project: project, Logstore: logstore, Shard: shard,
		Cursor: cursor, NextCursor: next,
		ReceivedAt: time.Now(),
		Count:      sum.count, MinTime: sum.minTime, MaxTime: sum.maxTime,
	}
	if sum.count > 0 {
		r.Payload = raw
	}
	return r
}
