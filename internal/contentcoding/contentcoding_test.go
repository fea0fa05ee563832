package contentcoding

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

func encode(t testing.TB, coding string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "deflate":
		w = zlib.NewWriter(&buf)
	case "raw-deflate":
		w, _ = flate.NewWriter(&buf, flate.DefaultCompression)
	case "br":
		w = brotli.NewWriter(&buf)
	case "zstd":
		w, _ = zstd.NewWriter(&buf)
	}
	w.Write(data)
	w.Close()
	return buf.Bytes()
}

func TestDecode(t *testing.T) {
	plain := []byte(strings.Repeat(`{"card":"4111111111111111"}`, 50))
	for _, coding := range []string{"gzip", "deflate", "raw-deflate", "br", "zstd"} {
		t.Run(coding, func(t *testing.T) {
			header := coding
			if coding == "raw-deflate" {
				header = "deflate"
			}
			got, err := Decode(encode(t, coding, plain), header, 1<<20, false)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("Decode = %d bytes, %v", len(got), err)
			}
		})
	}
	t.Run("stacked codings, last applied first", func(t *testing.T) {
		body := encode(t, "br", encode(t, "gzip", plain))
		got, err := Decode(body, "gzip, br", 1<<20, false)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("Decode = %d bytes, %v", len(got), err)
		}
	})
	t.Run("identity", func(t *testing.T) {
		if got, err := Decode(plain, "identity", 1, false); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("identity changed the body: %v", err)
		}
	})
	t.Run("bomb is bounded", func(t *testing.T) {
		bomb := encode(t, "gzip", make([]byte, 10<<20))
		if _, err := Decode(bomb, "gzip", 1<<20, false); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
	})
	t.Run("unknown coding", func(t *testing.T) {
		if _, err := Decode(plain, "compress", 1<<20, false); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("err = %v, want ErrUnsupported", err)
		}
	})
	t.Run("cut body decodes its head when partial", func(t *testing.T) {
		body := encode(t, "gzip", plain)
		cut := body[:len(body)/2]
		if _, err := Decode(cut, "gzip", 1<<20, false); err == nil {
			t.Fatal("a cut body decoded without error")
		}
		got, err := Decode(cut, "gzip", 1<<20, true)
		if err != nil || !bytes.HasPrefix(plain, got) {
			t.Fatalf("partial decode = %q, %v", got, err)
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, c := range []string{"gzip", "deflate", "br", "zstd"} {
		f.Add(encode(f, c, []byte("hello hello hello")), c)
	}
	f.Fuzz(func(t *testing.T, body []byte, coding string) {
		out, err := Decode(body, coding, 1<<16, false)
		if err == nil && len(out) > 1<<16 && Encoded(coding) {
			t.Fatalf("decoded %d bytes past the limit", len(out))
		}
	})
}

func TestSniff(t *testing.T) {
	plain := []byte(`{"card":"4111111111111111"}`)
	for _, c := range []struct{ coding, want string }{{"gzip", "gzip"}, {"deflate", "deflate"}, {"zstd", "zstd"}, {"raw-deflate", ""}, {"br", ""}} {
		if got := Sniff(encode(t, c.coding, plain)); got != c.want {
			t.Errorf("Sniff(%s bytes) = %q, want %q", c.coding, got, c.want)
		}
	}
	for _, level := range []int{zlib.NoCompression, zlib.BestSpeed, 5, zlib.BestCompression} {
		var buf bytes.Buffer
		w, _ := zlib.NewWriterLevel(&buf, level)
		w.Write(plain)
		w.Close()
		if got := Sniff(buf.Bytes()); got != "deflate" {
			t.Errorf("zlib level %d: Sniff = %q", level, got)
		}
	}
	for _, text := range []string{"", "x", `{"a":1}`, "<html>", "hello world", "\x1f", "x y", "x?"} {
		if got := Sniff([]byte(text)); got != "" {
			t.Errorf("Sniff(%q) = %q, want none", text, got)
		}
	}
}

// TestZstdFrameOverLimit: a zstd frame whose header asks for more memory
// than the limit is too large, like any other bomb, not corrupt.
func TestZstdFrameOverLimit(t *testing.T) {
	b := encode(t, "zstd", bytes.Repeat([]byte("a"), 1<<20))
	if _, err := Decode(b, "zstd", 1<<16, false); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Decode of a 1 MiB zstd frame with a 64 KiB limit: %v, want ErrTooLarge", err)
	}
}
