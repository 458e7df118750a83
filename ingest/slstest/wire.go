package slstest

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"slsrelay/internal/loggroup"
)

// The emulator stores a LogGroup as written and serves a LogGroupList
// without decoding it, with the wire helpers of internal/loggroup: a
// LogGroupList is repeated field 1 (tag 0x0a) holding LogGroup messages.

// scanLogGroup checks that b is a well-formed serialized LogGroup at the top
// level and returns how many logs (field 1) it holds, each of which must
// carry its Time.
func scanLogGroup(b []byte) (int, error) {
	logs := 0
	for i := 0; i < len(b); {
		num, wt, a, e, _, n, err := loggroup.Next(b, i, len(b))
		if err != nil {
			return 0, fmt.Errorf("%w: %v", ErrInvalidBody, err)
		}
		if num == 1 && wt == 2 {
			if err := checkLog(b[a:e]); err != nil {
				return 0, err
			}
			logs++
		}
		i = n
	}
	if logs == 0 {
		return 0, fmt.Errorf("%w: no logs", ErrInvalidBody)
	}
	return logs, nil
}

// checkLog checks that a Log message is well formed up to its required Time
// field (a varint field 1).
func checkLog(b []byte) error {
	for i := 0; i < len(b); {
		num, wt, _, _, _, n, err := loggroup.Next(b, i, len(b))
		if err != nil {
			return fmt.Errorf("%w: log: %v", ErrInvalidBody, err)
		}
		if num == 1 && wt == 0 {
			return nil // Time present
		}
		i = n
	}
	return fmt.Errorf("%w: log without time", ErrInvalidBody)
}

// appendTag appends a LogTags entry (field 6) to a serialized LogGroup.
func appendTag(b []byte, key, value string) []byte { return loggroup.AppendTag(b, key, value) }

// appendGroupHeader writes the LogGroupList field header for a group of n bytes.
func appendGroupHeader(dst []byte, n int) []byte { return loggroup.AppendGroupHeader(dst, n) }

// receiveTimeTag is the tag the service adds to every log group it receives.
const receiveTimeTag = "__receive_time__"

func stampReceiveTime(b []byte, recvNs int64) []byte {
	return appendTag(b, receiveTimeTag, strconv.FormatInt(recvNs/1e9, 10))
}

func uvarint(b []byte) (uint64, int) { return binary.Uvarint(b) }
