// Package contentcoding undoes HTTP Content-Encoding (gzip, deflate, br,
// zstd) with a bound on the decoded size, for every part that needs to see
// a body as the application meant it: the sanitizer, export, comparison.
package contentcoding

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// ErrUnsupported is returned for a coding this package does not know.
var ErrUnsupported = errors.New("unsupported content coding")

// ErrTooLarge is returned when the decoded body would exceed the limit.
var ErrTooLarge = errors.New("decoded body too large")

// Decode undoes the codings listed in a Content-Encoding value, the last
// applied first. At most limit decoded bytes are produced, so a
// compression bomb cannot exhaust memory. With partial set (the body was
// cut short), what decodes before the cut is returned without error.
func Decode(body []byte, encoding string, limit int64, partial bool) ([]byte, error) {
	codings := strings.Split(encoding, ",")
	for i := len(codings) - 1; i >= 0; i-- {
		coding := strings.ToLower(strings.TrimSpace(codings[i]))
		var err error
		if body, err = decodeOne(body, coding, limit, partial); err != nil {
			return nil, fmt.Errorf("decode %s: %w", coding, err)
		}
	}
	return body, nil
}

// Sniff names the compression the bytes begin with, whatever the headers
// say: "gzip", "deflate" (a zlib stream) or "zstd", or "" when none. Raw
// DEFLATE and brotli have no signature, so only their Content-Encoding
// tells them. A zlib header is two bytes that text can begin with ("x^"),
// so callers should treat a zlib body that does not decode and is valid
// UTF-8 as text.
func Sniff(b []byte) string {
	switch {
	case len(b) >= 3 && b[0] == 0x1f && b[1] == 0x8b && b[2] == 8:
		return "gzip"
	case len(b) >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd:
		return "zstd"
	case len(b) >= 2 && isZlibHeader(b[0], b[1]):
		return "deflate"
	}
	return ""
}

// isZlibHeader: method 8 with a window of at most 32 KiB, no preset
// dictionary (HTTP never uses one) and the header check (RFC 1950).
func isZlibHeader(cmf, flg byte) bool {
	return cmf&0x0f == 8 && cmf>>4 <= 7 && flg&0x20 == 0 && (uint16(cmf)<<8|uint16(flg))%31 == 0
}

// Encoded reports whether a Content-Encoding value names any coding.
func Encoded(encoding string) bool {
	e := strings.ToLower(strings.TrimSpace(encoding))
	return e != "" && e != "identity"
}

func decodeOne(body []byte, coding string, limit int64, partial bool) ([]byte, error) {
	var r io.Reader
	switch coding {
	case "", "identity":
		return body, nil
	case "gzip", "x-gzip":
		gr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		defer gr.Close()
		r = gr
	case "deflate":
		// "deflate" means zlib-wrapped, but some servers send raw DEFLATE;
		// browsers accept both, so do the same.
		zr, err := zlib.NewReader(bytes.NewReader(body))
		if err != nil {
			fr := flate.NewReader(bytes.NewReader(body))
			defer fr.Close()
			r = fr
		} else {
			defer zr.Close()
			r = zr
		}
	case "br":
		r = brotli.NewReader(bytes.NewReader(body))
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(limit)+1))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	default:
		return nil, ErrUnsupported
	}
	out, err := io.ReadAll(io.LimitReader(r, limit+1))
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
		return nil, ErrTooLarge // the frame's header says it needs more than limit
	}
	if partial && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > limit {
		return nil, ErrTooLarge
	}
	return out, nil
}
