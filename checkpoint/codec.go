package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Keys in the cursors bucket: project NUL logstore NUL shard (4 bytes, big
// endian), so that a logstore's shards are contiguous and sorted.
func keyPrefix(project, logstore string) []byte {
	b := make([]byte, 0, len(project)+len(logstore)+6)
	b = append(b, project...)
	b = append(b, 0)
	b = append(b, logstore...)
	return append(b, 0)
}

func encodeKey(k ShardKey) []byte {
	return binary.BigEndian.AppendUint32(keyPrefix(k.Project, k.Logstore), uint32(k.Shard))
}

func decodeKey(b []byte) (ShardKey, error) {
	var k ShardKey
	i := indexNUL(b)
	if i < 0 {
		return k, fmt.Errorf("bad cursor key %q", b)
	}
	j := indexNUL(b[i+1:])
	if j < 0 || len(b) != i+1+j+1+4 {
		return k, fmt.Errorf("bad cursor key %q", b)
	}
	k.Project, k.Logstore = string(b[:i]), string(b[i+1:i+1+j])
	k.Shard = int(binary.BigEndian.Uint32(b[i+1+j+1:]))
	return k, nil
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// Values are JSON: small, and readable with `bbolt get` when debugging.
type cursorRecord struct {
	Cursor  string    `json:"cursor"`
	MaxTime int64     `json:"max_time"`
	Updated time.Time `json:"updated"`
}

func encodeCursor(c Cursor) []byte {
	b, _ := json.Marshal(cursorRecord{c.Cursor, c.MaxTime, c.Updated}) // cannot fail
	return b
}

func decodeCursor(b []byte) (Cursor, error) {
	var r cursorRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return Cursor{}, fmt.Errorf("bad cursor record: %w", err)
	}
	if r.Cursor == "" {
		return Cursor{}, errors.New("bad cursor record: empty cursor")
	}
	return Cursor{Cursor: r.Cursor, MaxTime: r.MaxTime, Updated: r.Updated}, nil
}

type gapRecord struct {
	Project  string    `json:"project"`
	Logstore string    `json:"logstore"`
	Shard    int       `json:"shard"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Detected time.Time `json:"detected"`
	Reason   string    `json:"reason"`
}

func encodeGap(g Gap) []byte {
	b, _ := json.Marshal(gapRecord{g.Key.Project, g.Key.Logstore, g.Key.Shard, g.From, g.To, g.Detected, g.Reason})
	return b
}

func decodeGap(b []byte) (Gap, error) {
	var r gapRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return Gap{}, fmt.Errorf("bad gap record: %w", err)
	}
	return Gap{Key: ShardKey{r.Project, r.Logstore, r.Shard}, From: r.From, To: r.To, Detected: r.Detected, Reason: r.Reason}, nil
}
