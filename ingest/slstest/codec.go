package slstest

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

var (
	zstdEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	zstdDec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxRawBody))
	lz4Pool    = sync.Pool{New: func() any { return new(lz4.Compressor) }}
	bufPool    = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}
)

// maxRawBody bounds a decompressed PutLogs body.
const maxRawBody = 64 << 20

// DecodePutBody returns the serialized LogGroup in a PutLogs body, given
// the x-log-compresstype ("lz4", "zstd", "deflate" or "") and
// x-log-bodyrawsize headers.
func DecodePutBody(body []byte, compressType, rawSize string) ([]byte, error) {
	n, err := strconv.Atoi(rawSize)
	if err != nil || n < 0 || n > maxRawBody {
		return nil, fmt.Errorf("%w: x-log-bodyrawsize %q", ErrInvalidArgument, rawSize)
	}
	var raw []byte
	switch compressType {
	case "":
		raw = body
	case "lz4":
		if n > 255*len(body)+16 { // beyond lz4's best ratio: a lie, not a body
			return nil, fmt.Errorf("%w: x-log-bodyrawsize %d for a %d-byte lz4 body", errUncompress, n, len(body))
		}
		raw = make([]byte, n)
		m, err := lz4.UncompressBlock(body, raw)
		if err != nil {
			return nil, fmt.Errorf("%w: lz4: %v", errUncompress, err)
		}
		raw = raw[:m]
	case "zstd":
		raw, err = zstdDec.DecodeAll(body, make([]byte, 0, min(n, 8*len(body)+64)))
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", errUncompress, err)
		}
	case "deflate":
		zr, err := zlib.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("%w: deflate: %v", errUncompress, err)
		}
		raw, err = io.ReadAll(io.LimitReader(zr, maxRawBody+1))
		if err != nil {
			return nil, fmt.Errorf("%w: deflate: %v", errUncompress, err)
		}
	default:
		return nil, fmt.Errorf("%w: x-log-compresstype %q", ErrInvalidArgument, compressType)
	}
	if len(raw) != n {
		return nil, fmt.Errorf("%w: body is %d bytes uncompressed, x-log-bodyrawsize says %d", errUncompress, len(raw), n)
	}
	return raw, nil
}

var errUncompress = &apiError{status: 400, code: codeUncompressError, message: "cannot uncompress body"}

// compressResponse encodes raw for the client's Accept-Encoding, appending
// to dst; it returns the x-log-compresstype value ("" = none).
func compressResponse(dst, raw []byte, accept string) ([]byte, string, error) {
	switch pickEncoding(accept) {
	case "lz4":
		c := lz4Pool.Get().(*lz4.Compressor)
		defer lz4Pool.Put(c)
		n0 := len(dst)
		dst = grow(dst, lz4.CompressBlockBound(len(raw)))
		n, err := c.CompressBlock(raw, dst[n0:])
		if err != nil {
			return nil, "", err
		}
		if n == 0 { // incompressible: one literal run, as the SDK does
			return appendLiteralBlock(dst[:n0], raw), "lz4", nil
		}
		return dst[:n0+n], "lz4", nil
	case "zstd":
		return zstdEnc.EncodeAll(raw, dst), "zstd", nil
	case "deflate":
		var b bytes.Buffer
		zw, _ := zlib.NewWriterLevel(&b, zlib.BestSpeed)
		zw.Write(raw)
		zw.Close()
		return append(dst, b.Bytes()...), "deflate", nil
	default:
		return append(dst, raw...), "", nil
	}
}

// pickEncoding takes the first of lz4, zstd, deflate named in Accept-Encoding.
func pickEncoding(accept string) string {
	for _, e := range bytes.Split([]byte(accept), []byte(",")) {
		switch v := string(bytes.TrimSpace(bytes.SplitN(e, []byte(";"), 2)[0])); v {
		case "lz4", "zstd", "deflate":
			return v
		}
	}
	return ""
}

// appendLiteralBlock writes src as an lz4 block made of a single literal run.
func appendLiteralBlock(dst, src []byte) []byte {
	return append(appendToken(dst, 0, len(src)), src...)
}
