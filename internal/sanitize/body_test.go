package sanitize

import (
	"bytes"
	"testing"

	"github.com/reprise-dev/reprise/internal/header"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
	"google.golang.org/protobuf/proto"
)

// TestEncodingsByContent: compression is found in the bytes whatever the
// headers say, and a body is stored decoded only when something in it
// changed.
func TestEncodingsByContent(t *testing.T) {
	secret := []byte(`{"note":"card ` + secCard + `"}`)
	benign := []byte(`{"note":"nothing to see","n":1}`)
	tests := []struct {
		name    string
		headers []*reprisev1.Header
		body    []byte
		// want: "" the body is unchanged (as received); else the stored
		// body must not contain secCard and must be this kind of result.
		want string
	}{
		{"gzip without Content-Encoding", hdrs("Content-Type", "application/json"), compress(t, "gzip", secret), "decoded"},
		{"zlib without Content-Encoding", nil, compress(t, "deflate", secret), "decoded"},
		{"zstd labelled gzip-free text", hdrs("Content-Type", "text/plain"), compress(t, "zstd", secret), "decoded"},
		{"gzip inside gzip, labelled once", hdrs("Content-Encoding", "gzip"), compress(t, "gzip", compress(t, "gzip", secret)), "decoded"},
		{"zstd inside br", hdrs("Content-Encoding", "br"), compress(t, "br", compress(t, "zstd", secret)), "decoded"},
		{"cut gzip without header", nil, compress(t, "gzip", bytes.Repeat(secret, 50))[:40], ReasonUndecodable},
		{"corrupt zstd without header", nil, append([]byte{0x28, 0xb5, 0x2f, 0xfd}, bytes.Repeat([]byte{0xff}, 40)...), ReasonUndecodable},
		{"benign gzip kept compressed", hdrs("Content-Encoding", "gzip"), compress(t, "gzip", benign), ""},
		{"benign gzip without header kept", nil, compress(t, "gzip", benign), ""},
		{"text that starts like zlib", hdrs("Content-Type", "text/plain"), []byte("x^2 + y^2 = r^2"), ""},
	}
	s := Default()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := resp(tt.headers, bytes.Clone(tt.body))
			s.Sanitize(ex)
			got := ex.Response
			switch tt.want {
			case "":
				if !bytes.Equal(got.Body, tt.body) || len(ex.Redactions) != 0 {
					t.Errorf("body changed (%d redactions), want it as received", len(ex.Redactions))
				}
				if header.Combined(got.Headers, "Content-Encoding") != header.Combined(tt.headers, "Content-Encoding") {
					t.Error("Content-Encoding changed on a body kept as received")
				}
			case "decoded":
				if !bytes.Contains(got.Body, []byte(`"note":`)) || bytes.Contains(got.Body, []byte(secCard)) {
					t.Errorf("stored body %q, want it decoded and the card gone", got.Body)
				}
				if header.Combined(got.Headers, "Content-Encoding") != "" {
					t.Error("Content-Encoding kept on a decoded body")
				}
			default:
				want := &reprisev1.Redaction{Location: "response.body", Rule: tt.want, Action: ActionRemove}
				if len(got.Body) != 0 || len(ex.Redactions) != 1 || ex.Redactions[0].Rule != want.Rule {
					t.Errorf("body %d bytes, redactions %v, want removed as %s", len(got.Body), ex.Redactions, tt.want)
				}
			}
		})
	}
}

// TestStackedLayersBounded: more compression layers than limits.max_depth
// fail closed rather than being peeled without end.
func TestStackedLayersBounded(t *testing.T) {
	s := load(t, "limits: {max_depth: 3}\n")
	b := []byte(secEmail)
	for range 5 {
		b = compress(t, "gzip", b)
	}
	ex := resp(nil, b)
	s.Sanitize(ex)
	if len(ex.Response.Body) != 0 || len(ex.Redactions) != 1 || ex.Redactions[0].Rule != ReasonTooDeep {
		t.Errorf("redactions %v, body %d bytes; want removed as %s", ex.Redactions, len(ex.Response.Body), ReasonTooDeep)
	}
}

// TestBinaryBodies: the printable runs of a binary body pass the value
// detectors and are overwritten in place; opaque_bodies: redact removes
// every binary body.
func TestBinaryBodies(t *testing.T) {
	// A protobuf-like message: a length-prefixed e-mail between binary fields.
	msg := append([]byte{0x08, 0x96, 0x01, 0x12, byte(len(secEmail))}, secEmail...)
	msg = append(msg, 0x1a, 0x05, 'h', 'e', 'l', 'l', 'o', 0x00, 0xff)
	ex := resp(hdrs("Content-Type", "application/x-protobuf"), bytes.Clone(msg))
	Default().Sanitize(ex)
	got := ex.Response.Body
	if len(got) != len(msg) || bytes.Contains(got, []byte(secEmail)) {
		t.Fatalf("stored %q, want %d bytes without the e-mail", got, len(msg))
	}
	if !bytes.Equal(got[:5], msg[:5]) || !bytes.Equal(got[5+len(secEmail):], msg[5+len(secEmail):]) {
		t.Errorf("bytes around the e-mail changed: %q", got)
	}
	if !bytes.Contains(got, []byte(Redacted)) || len(ex.Redactions) != 1 || ex.Redactions[0].Rule != "email" {
		t.Errorf("stored %q, redactions %v", got, ex.Redactions)
	}

	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10")
	ex = resp(hdrs("Content-Type", "image/png"), bytes.Clone(png))
	Default().Sanitize(ex)
	if !bytes.Equal(ex.Response.Body, png) || len(ex.Redactions) != 0 {
		t.Errorf("benign image changed: %q %v", ex.Response.Body, ex.Redactions)
	}

	s := load(t, "opaque_bodies: redact\n")
	ex = resp(hdrs("Content-Type", "image/png"), bytes.Clone(png))
	s.Sanitize(ex)
	if len(ex.Response.Body) != 0 || len(ex.Redactions) != 1 || ex.Redactions[0].Rule != ReasonOpaque {
		t.Errorf("opaque_bodies redact: body %d bytes, redactions %v", len(ex.Response.Body), ex.Redactions)
	}
	if s.Counts()[ReasonOpaque] != 1 {
		t.Errorf("counts %v", s.Counts())
	}
	ex = resp(hdrs("Content-Type", "application/json"), []byte(`{"a":"b"}`))
	if s.Sanitize(ex); string(ex.Response.Body) != `{"a":"b"}` {
		t.Errorf("opaque_bodies redact removed a text body: %q", ex.Response.Body)
	}
}

func TestFill(t *testing.T) {
	for n, want := range map[int]string{0: "", 4: "****", 10: "[REDACTED]", 13: "[REDACTED]***"} {
		dst := make([]byte, n)
		if fill(dst); string(dst) != want {
			t.Errorf("fill(%d bytes) = %q, want %q", n, dst, want)
		}
	}
}

// TestBinaryTwoFinds: each find of a run is overwritten and recorded on
// its own, and a second pass keeps both records.
func TestBinaryTwoFinds(t *testing.T) {
	body := []byte("\x00\x01id " + secAWS + " mail " + secEmail + " end\xff")
	ex := resp(hdrs("Content-Type", "application/octet-stream"), body)
	Default().Sanitize(ex)
	want := "\x00\x01id [REDACTED]********** mail [REDACTED]********** end\xff"
	if string(ex.Response.Body) != want || len(ex.Redactions) != 2 {
		t.Fatalf("stored %q with %v, want %q and 2 redactions", ex.Response.Body, ex.Redactions, want)
	}
	first := proto.Clone(ex)
	if Default().Sanitize(ex); !proto.Equal(first, ex) {
		t.Errorf("second pass changed:\n%v\n%v", first, ex)
	}
}
