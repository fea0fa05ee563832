package compare

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"strings"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// maxDecoded bounds a decoded body, so a compression bomb in recorded or
// replayed traffic cannot exhaust memory.
const maxDecoded = 64 << 20

// decodedBody returns the body with its Content-Encoding removed, or the raw
// body when it cannot be decoded.
func decodedBody(r *reprisev1.HttpResponse) []byte {
	b, err := decode(r.GetBody(), header(r.GetHeaders(), "Content-Encoding"), r.GetBodyTruncated())
	if err != nil {
		return r.GetBody()
	}
	return b
}

// decode undoes the codings listed in a Content-Encoding value, last applied
// first. A truncated body yields what decodes before the cut.
func decode(body []byte, encoding string, truncated bool) ([]byte, error) {
	codings := strings.Split(encoding, ",")
	for i := len(codings) - 1; i >= 0; i-- {
		coding := strings.ToLower(strings.TrimSpace(codings[i]))
		var err error
		if body, err = decodeOne(body, coding, truncated); err != nil {
			return nil, fmt.Errorf("decode %s body: %w", coding, err)
		}
	}
	return body, nil
}

func decodeOne(body []byte, coding string, truncated bool) ([]byte, error) {
	var r io.ReadCloser
	switch coding {
	case "", "identity":
		return body, nil
	case "gzip", "x-gzip":
		gr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		r = gr
	case "deflate":
		// "deflate" is meant to be zlib-wrapped, but some servers send raw
		// DEFLATE; browsers accept both, so do the same.
		zr, err := zlib.NewReader(bytes.NewReader(body))
		if err != nil {
			zr = flate.NewReader(bytes.NewReader(body))
		}
		r = zr
	default:
		return nil, fmt.Errorf("unsupported content coding")
	}
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, maxDecoded+1))
	if truncated && errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	if len(out) > maxDecoded {
		return nil, fmt.Errorf("decoded body larger than %d bytes", maxDecoded)
	}
	return out, nil
}
