package ingest

import (
	"errors"
	"fmt"
)

// pullSummary is what a record's header needs from a pull.
type pullSummary struct {
	count            int
	minTime, maxTime int64
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
