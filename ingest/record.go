package ingest

import (
	"time"

	"slsrelay/internal/loggroup"
	"slsrelay/spool"
)

// rawRecord is the spool record of a pull's serialized LogGroupList raw,
// already scanned into sum; the payload is raw itself, not a copy.
func rawRecord(project, logstore string, shard int, cursor, next string, raw []byte, sum loggroup.Summary) *spool.Record {
	r := &spool.Record{
		Project: project, Logstore: logstore, Shard: shard,
		Cursor: cursor, NextCursor: next,
		ReceivedAt: time.Now(),
		Count:      sum.Logs, MinTime: sum.MinTime, MaxTime: sum.MaxTime,
	}
	if sum.Logs > 0 {
		r.Payload = raw
	}
	return r
}
