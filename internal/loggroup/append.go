package loggroup

import "encoding/binary"

// KV is a Content or LogTag: a key and its value.
type KV struct{ Key, Value string }

// Group is a LogGroup's own fields (its logs are appended separately).
type Group struct {
	Category, Topic, Source, MachineUUID string // empty: absent
	Tags                                 []KV
}

// Log is one log to encode.
type Log struct {
	Time     uint32 // __time__, unix seconds
	TimeNs   uint32 // nanosecond part; 0: absent
	Contents []KV
}

// AppendGroupHeader appends the LogGroupList field header (field 1) of a
// serialized LogGroup of n bytes; the group's bytes follow.
func AppendGroupHeader(dst []byte, n int) []byte {
	dst = append(dst, 1<<3|2)
	return binary.AppendUvarint(dst, uint64(n))
}

// AppendString appends string field num.
func AppendString(dst []byte, num int, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(num)<<3|2)
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// AppendKV appends a Content or LogTag as field num.
func AppendKV(dst []byte, num int, kv KV) []byte {
	dst = binary.AppendUvarint(dst, uint64(num)<<3|2)
	dst = binary.AppendUvarint(dst, uint64(kvSize(kv)))
	dst = AppendString(dst, 1, kv.Key)
	return AppendString(dst, 2, kv.Value)
}

// AppendTag appends a LogTags entry (field 6) to a serialized LogGroup;
// repeated fields may come in any order, so the result is a valid LogGroup.
func AppendTag(group []byte, key, value string) []byte {
	return AppendKV(group, 6, KV{key, value})
}

// AppendLog appends l as a LogGroup's Logs entry (field 1).
func AppendLog(dst []byte, l *Log) []byte {
	n := 1 + varintLen(uint64(l.Time))
	for _, c := range l.Contents {
		n += 1 + varintLen(uint64(kvSize(c))) + kvSize(c)
	}
	if l.TimeNs != 0 {
		n += 5
	}
	dst = append(dst, 1<<3|2)
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = append(dst, 1<<3|0)
	dst = binary.AppendUvarint(dst, uint64(l.Time))
	for _, c := range l.Contents {
		dst = AppendKV(dst, 2, c)
	}
	if l.TimeNs != 0 {
		dst = append(dst, 4<<3|5)
		dst = binary.LittleEndian.AppendUint32(dst, l.TimeNs)
	}
	return dst
}

// AppendGroupFields appends g's fields after a LogGroup's logs, in the
// order the SDK's generated code writes them.
func AppendGroupFields(dst []byte, g *Group) []byte {
	for _, f := range []struct {
		num int
		s   string
	}{{2, g.Category}, {3, g.Topic}, {4, g.Source}, {5, g.MachineUUID}} {
		if f.s != "" {
			dst = AppendString(dst, f.num, f.s)
		}
	}
	for _, t := range g.Tags {
		dst = AppendKV(dst, 6, t)
	}
	return dst
}

// AppendGroup appends one LogGroupList entry: g with logs.
func AppendGroup(dst []byte, g *Group, logs []Log) []byte {
	var body []byte
	for i := range logs {
		body = AppendLog(body, &logs[i])
	}
	body = AppendGroupFields(body, g)
	dst = AppendGroupHeader(dst, len(body))
	return append(dst, body...)
}

func kvSize(kv KV) int {
	return 2 + varintLen(uint64(len(kv.Key))) + len(kv.Key) + varintLen(uint64(len(kv.Value))) + len(kv.Value)
}

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
