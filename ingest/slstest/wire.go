package slstest

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// The wire helpers below read and write just enough protobuf to store a
// LogGroup as written and to serve a LogGroupList without decoding it: a
// LogGroupList is repeated field 1 (tag 0x0a) holding LogGroup messages.

// scanLogGroup checks that b is a well-formed serialized LogGroup at the top
// level and returns how many logs (field 1) it holds.
func scanLogGroup(b []byte) (int, error) {
	logs := 0
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, fmt.Errorf("%w: bad field tag", ErrInvalidBody)
		}
		b = b[n:]
		field, wt := tag>>3, tag&7
		if field == 0 {
			return 0, fmt.Errorf("%w: field number 0", ErrInvalidBody)
		}
		switch wt {
		case 0:
			_, n = binary.Uvarint(b)
			if n <= 0 {
				return 0, fmt.Errorf("%w: bad varint", ErrInvalidBody)
			}
			b = b[n:]
		case 1, 5:
			w := 8
			if wt == 5 {
				w = 4
			}
			if len(b) < w {
				return 0, fmt.Errorf("%w: short fixed field", ErrInvalidBody)
			}
			b = b[w:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return 0, fmt.Errorf("%w: bad length", ErrInvalidBody)
			}
			if field == 1 {
				if err := checkLog(b[n : n+int(l)]); err != nil {
					return 0, err
				}
				logs++
			}
			b = b[n+int(l):]
		default:
			return 0, fmt.Errorf("%w: wire type %d", ErrInvalidBody, wt)
		}
	}
	if logs == 0 {
		return 0, fmt.Errorf("%w: no logs", ErrInvalidBody)
	}
	return logs, nil
}

// checkLog checks that a Log message carries its required Time field.
func checkLog(b []byte) error {
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			return fmt.Errorf("%w: bad log field tag", ErrInvalidBody)
		}
		b = b[n:]
		switch tag & 7 {
		case 0:
			if tag>>3 == 1 {
				return nil // Time present
			}
			_, n = binary.Uvarint(b)
			if n <= 0 {
				return fmt.Errorf("%w: bad log varint", ErrInvalidBody)
			}
			b = b[n:]
		case 1:
			if len(b) < 8 {
				return fmt.Errorf("%w: short log field", ErrInvalidBody)
			}
			b = b[8:]
		case 5:
			if len(b) < 4 {
				return fmt.Errorf("%w: short log field", ErrInvalidBody)
			}
			b = b[4:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return fmt.Errorf("%w: bad log length", ErrInvalidBody)
			}
			b = b[n+int(l):]
		default:
			return fmt.Errorf("%w: bad log wire type", ErrInvalidBody)
		}
	}
	return fmt.Errorf("%w: log without time", ErrInvalidBody)
}

// appendTag appends a LogTags entry (field 6) to a serialized LogGroup;
// repeated fields may be split, so the result is a valid LogGroup.
func appendTag(b []byte, key, value string) []byte {
	inner := 2 + len(key) + 2 + len(value) + 2*binary.MaxVarintLen64
	tmp := make([]byte, 0, inner)
	tmp = appendBytesField(tmp, 1, key)
	tmp = appendBytesField(tmp, 2, value)
	b = append(b, 6<<3|2)
	b = binary.AppendUvarint(b, uint64(len(tmp)))
	return append(b, tmp...)
}

func appendBytesField(b []byte, field int, s string) []byte {
	b = append(b, byte(field<<3|2))
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// receiveTimeTag is the tag the service adds to every log group it receives.
const receiveTimeTag = "__receive_time__"

func stampReceiveTime(b []byte, recvNs int64) []byte {
	return appendTag(b, receiveTimeTag, strconv.FormatInt(recvNs/1e9, 10))
}

func uvarint(b []byte) (uint64, int) { return binary.Uvarint(b) }
