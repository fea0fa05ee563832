package s2compress

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"google.golang.org/grpc/encoding"
)

// The tests run with the compressor registered, as the binaries do.
func TestMain(m *testing.M) {
	Register()
	m.Run()
}

func roundTrip(t *testing.T, c encoding.Compressor, in []byte) []byte {
	t.Helper()
	var wire bytes.Buffer
	w, err := c.Compress(&wire)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(in); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := c.Decompress(&wire)
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// gRPC finds the compressor by name; pooled writers and readers carry no
// state from one message into the next.
func TestRoundTripsThroughPools(t *testing.T) {
	c := encoding.GetCompressor(Name)
	if c == nil {
		t.Fatal("s2 is not registered")
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		in := make([]byte, rnd.IntN(300<<10))
		if i%2 == 0 {
			for j := range in {
				in[j] = byte(rnd.IntN(256))
			}
		} else {
			copy(in, bytes.Repeat([]byte(`{"id":7,"name":"espresso"}`), len(in)/26+1))
		}
		if out := roundTrip(t, c, in); !bytes.Equal(out, in) {
			t.Fatalf("message %d: %d bytes in, %d out, not equal", i, len(in), len(out))
		}
	}
}

// What a peer sends is untrusted: bad input is an error, never a panic.
func FuzzDecompress(f *testing.F) {
	var wire bytes.Buffer
	w, _ := compressor{}.Compress(&wire)
	w.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	w.Close()
	f.Add(wire.Bytes())
	f.Add([]byte("sNaPpY"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := compressor{}.Decompress(bytes.NewReader(b))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<20))
	})
}
