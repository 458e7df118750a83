// Package loggroup is the one home of the SLS LogGroupList wire format
// (log.proto in aliyun-log-go-sdk) in this module: reading field headers
// (Next, Varint), checking and summarising a serialized list without
// decoding it (Scan), and writing lists, groups, logs and tags (Append*).
// Ingest scans every pull with it, deliver decodes spool records and encodes
// dead letters with it, and the SLS emulator stores and serves log groups
// with it; none of them needs the SDK's generated protobuf code.
//
// The messages, with their field numbers:
//
//	LogGroupList { repeated LogGroup logGroupList = 1; }
//	LogGroup     { repeated Log Logs = 1; string Category = 2; string Topic = 3;
//	               string Source = 4; string MachineUUID = 5; repeated LogTag LogTags = 6; }
//	Log          { uint32 Time = 1; repeated Content Contents = 2; fixed32 Time_ns = 4; }
//	Content, LogTag { string Key = 1; string Value = 2; }
package loggroup

import "errors"

// ErrMalformed is wrapped by every error about malformed wire bytes.
var ErrMalformed = errors.New("malformed log group list")

// Error is a malformed-input error; it wraps ErrMalformed.
type Error string

func (e Error) Error() string { return string(e) }

// Unwrap returns ErrMalformed.
func (e Error) Unwrap() error { return ErrMalformed }

// The errors Next and Varint return.
const (
	ErrTruncated   = Error("truncated")
	ErrVarint      = Error("bad varint")
	ErrWireType    = Error("bad wire type")
	ErrFieldNumber = Error("bad field number")
)

// Bytes is what the readers accept: the wire bytes as a string or a slice.
type Bytes interface{ ~string | ~[]byte }

// Next reads the field at b[i:end]: its number and wire type, for wire type
// 2 the bounds [a,e) of its bytes, else its value (varint, fixed64 or
// fixed32, little-endian), and the offset after it.
func Next[T Bytes](b T, i, end int) (num, wt, a, e int, v uint64, next int, err error) {
	key, i, err := Varint(b, i, end)
	if err != nil {
		return 0, 0, 0, 0, 0, 0, err
	}
	if key>>3 == 0 || key>>3 > 1<<29-1 {
		return 0, 0, 0, 0, 0, 0, ErrFieldNumber
	}
	num, wt = int(key>>3), int(key&7)
	switch wt {
	case 0:
		v, i, err = Varint(b, i, end)
		if err != nil {
			return 0, 0, 0, 0, 0, 0, err
		}
		return num, wt, 0, 0, v, i, nil
	case 1:
		if end-i < 8 {
			return 0, 0, 0, 0, 0, 0, ErrTruncated
		}
		for k := 7; k >= 0; k-- {
			v = v<<8 | uint64(b[i+k])
		}
		return num, wt, 0, 0, v, i + 8, nil
	case 5:
		if end-i < 4 {
			return 0, 0, 0, 0, 0, 0, ErrTruncated
		}
		v = uint64(b[i]) | uint64(b[i+1])<<8 | uint64(b[i+2])<<16 | uint64(b[i+3])<<24
		return num, wt, 0, 0, v, i + 4, nil
	case 2:
		l, i, err := Varint(b, i, end)
		if err != nil {
			return 0, 0, 0, 0, 0, 0, err
		}
		if l > uint64(end-i) {
			return 0, 0, 0, 0, 0, 0, ErrTruncated
		}
		return num, wt, i, i + int(l), 0, i + int(l), nil
	}
	return 0, 0, 0, 0, 0, 0, ErrWireType
}

// Varint reads a base-128 varint at b[i:end] and returns it with the offset
// after it.
func Varint[T Bytes](b T, i, end int) (uint64, int, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if i >= end {
			return 0, 0, ErrTruncated
		}
		c := b[i]
		i++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i, nil
		}
	}
	return 0, 0, ErrVarint
}
