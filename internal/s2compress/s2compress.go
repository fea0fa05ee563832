// Package s2compress registers S2 (github.com/klauspost/compress/s2, a
// faster Snappy) as the gRPC compressor "s2". Register is called by the
// main of both ends: agents compress their batches with it by default and
// collectors accept it. S2 costs the traced node a fraction of gzip's CPU
// for a somewhat larger stream; the agent runs next to the services it
// watches, where CPU matters more than bytes on the cluster's network
// (docs/benchmarks/delivery.md).
package s2compress

import (
	"io"
	"sync"

	"github.com/klauspost/compress/s2"
	"google.golang.org/grpc/encoding"
)

// Name is the compressor's name on the wire (grpc-encoding).
const Name = "s2"

var register sync.Once

// Register adds the compressor to gRPC's registry, for the whole process.
// Call it from main before any gRPC connection or server is made; calls
// after the first do nothing.
func Register() { register.Do(func() { encoding.RegisterCompressor(compressor{}) }) }

type compressor struct{}

func (compressor) Name() string { return Name }

// Writers and readers keep their buffers across messages.
var (
	writers = sync.Pool{New: func() any { return s2.NewWriter(nil, s2.WriterConcurrency(1)) }}
	readers = sync.Pool{New: func() any { return s2.NewReader(nil) }}
)

func (compressor) Compress(w io.Writer) (io.WriteCloser, error) {
	z := writers.Get().(*s2.Writer)
	z.Reset(w)
	return &writer{Writer: z}, nil
}

// writer returns its s2.Writer to the pool once closed.
type writer struct{ *s2.Writer }

func (w *writer) Close() error {
	err := w.Writer.Close()
	w.Writer.Reset(nil)
	writers.Put(w.Writer)
	w.Writer = nil
	return err
}

func (compressor) Decompress(r io.Reader) (io.Reader, error) {
	z := readers.Get().(*s2.Reader)
	z.Reset(r)
	return &reader{Reader: z}, nil
}

// reader returns its s2.Reader to the pool at the end of the message.
type reader struct{ *s2.Reader }

func (r *reader) Read(p []byte) (int, error) {
	if r.Reader == nil {
		return 0, io.EOF
	}
	n, err := r.Reader.Read(p)
	if err == io.EOF {
		r.Reader.Reset(nil)
		readers.Put(r.Reader)
		r.Reader = nil
	}
	return n, err
}
