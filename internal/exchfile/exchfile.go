// Package exchfile reads and writes recorded exchanges as files, so a
// recording can be kept next to the tests that replay it: JSONL (one
// protojson Exchange per line, as `collector query` prints) and HAR 1.2
// (for browsers' and other tools' viewers).
package exchfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Format of an exchange file.
type Format string

const (
	JSONL Format = "jsonl"
	HAR   Format = "har"
)

// maxLine bounds one JSONL line (an exchange with bodies up to the agent's
// caps fits easily).
const maxLine = 64 << 20

// ParseFormat accepts "jsonl" or "har".
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(s)); f {
	case JSONL, HAR:
		return f, nil
	}
	return "", fmt.Errorf("unknown format %q: want jsonl or har", s)
}

// FormatOf picks the format from a file name: .har is HAR, anything else JSONL.
func FormatOf(path string) Format {
	if strings.EqualFold(filepath.Ext(path), ".har") {
		return HAR
	}
	return JSONL
}

// Writer writes exchanges one at a time.
type Writer interface {
	Write(*reprisev1.Exchange) error
	// Close ends the document; it does not close the underlying writer.
	Close() error
}

// NewWriter returns a writer of format f to w.
func NewWriter(w io.Writer, f Format) Writer {
	if f == HAR {
		return newHARWriter(w)
	}
	return &jsonlWriter{w: bufio.NewWriter(w)}
}

// Read yields the exchanges in r; it stops at the first error.
func Read(r io.Reader, f Format) iter.Seq2[*reprisev1.Exchange, error] {
	if f == HAR {
		return readHAR(r)
	}
	return readJSONL(r)
}

// ReadFile yields the exchanges in the file at path, its format from the name.
func ReadFile(path string) iter.Seq2[*reprisev1.Exchange, error] {
	return func(yield func(*reprisev1.Exchange, error) bool) {
		f, err := os.Open(path)
		if err != nil {
			yield(nil, fmt.Errorf("open exchanges: %w", err))
			return
		}
		defer f.Close()
		for ex, err := range Read(f, FormatOf(path)) {
			if err != nil {
				err = fmt.Errorf("%s: %w", path, err)
			}
			if !yield(ex, err) || err != nil {
				return
			}
		}
	}
}

type jsonlWriter struct {
	w *bufio.Writer
}

func (j *jsonlWriter) Write(ex *reprisev1.Exchange) error {
	b, err := protojson.Marshal(ex)
	if err != nil {
		return fmt.Errorf("encode exchange %s: %w", ex.GetId(), err)
	}
	j.w.Write(b)
	return j.w.WriteByte('\n')
}

func (j *jsonlWriter) Close() error { return j.w.Flush() }

func readJSONL(r io.Reader) iter.Seq2[*reprisev1.Exchange, error] {
	return func(yield func(*reprisev1.Exchange, error) bool) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), maxLine)
		line := 0
		for sc.Scan() {
			line++
			b := sc.Bytes()
			if len(strings.TrimSpace(string(b))) == 0 {
				continue
			}
			ex := &reprisev1.Exchange{}
			if err := protojson.Unmarshal(b, ex); err != nil {
				yield(nil, fmt.Errorf("line %d: %w", line, err))
				return
			}
			if !yield(ex, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				err = fmt.Errorf("line %d longer than %d bytes", line+1, maxLine)
			}
			yield(nil, err)
		}
	}
}
