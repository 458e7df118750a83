package loggroup

import "fmt"

// Summary is what a spool record's header needs from a list.
type Summary struct {
	Logs             int
	MinTime, MaxTime int64 // the logs' __time__ range (unix seconds); 0 without logs
}

// Scan checks that b is a serialized sls.LogGroupList as the
// spool's readers decode it (every log with its __time__, every content and
// tag with key and value, lengths within bounds) and counts its logs and
// their time range, without allocating.
func Scan(b []byte) (Summary, error) {
	s := Summary{MinTime: 1<<63 - 1}
	for i := 0; i < len(b); {
		num, wt, a, e, _, n, err := Next(b, i, len(b))
		if err != nil {
			return s, err
		}
		if num == 1 {
			if wt != 2 {
				return s, pbErr("log group has wire type %d", wt)
			}
			if err := scanGroup(b, a, e, &s); err != nil {
				return s, err
			}
		}
		i = n
	}
	if s.Logs == 0 {
		s.MinTime = 0
	}
	return s, nil
}

func scanGroup(b []byte, start, end int, s *Summary) error {
	for i := start; i < end; {
		num, wt, a, e, _, n, err := Next(b, i, end)
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
			s.Logs++
			s.MinTime, s.MaxTime = min(s.MinTime, t), max(s.MaxTime, t)
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
		num, wt, a, e, v, n, err := Next(b, i, end)
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
			if vl, vs, err := Varint(b, kEnd+1, end); err == nil && vl == uint64(end-vs) {
				return nil
			}
		}
	}
	var hasK, hasV bool
	for i := start; i < end; {
		num, wt, _, _, _, n, err := Next(b, i, end)
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
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
