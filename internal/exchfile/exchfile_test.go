package exchfile

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func sample(id string) *reprisev1.Exchange {
	return &reprisev1.Exchange{
		Id:        id,
		StartTime: timestamppb.New(time.Date(2026, 11, 24, 10, 0, 0, 123456789, time.UTC)),
		Duration:  durationpb.New(1500 * time.Microsecond),
		Direction: reprisev1.Direction_DIRECTION_INBOUND,
		Local:     &reprisev1.Endpoint{Ip: "10.0.0.2", Port: 8080},
		Remote:    &reprisev1.Endpoint{Ip: "10.0.0.9", Port: 51234},
		Process:   &reprisev1.Process{Pid: 42, Comm: "orders"},
		Service:   "orders",
		Request: &reprisev1.HttpRequest{
			Method: "POST", Target: "/api/orders?src=web&q=a%20b", Host: "orders:8080", Proto: "HTTP/1.1",
			Headers: []*reprisev1.Header{
				{Name: "Host", Value: "orders:8080"}, {Name: "Authorization", Value: "[REDACTED]"},
				{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Length", Value: "13"},
			},
			Body: []byte(`{"item":"x1"}`), BodySize: 13,
		},
		Response: &reprisev1.HttpResponse{
			StatusCode: 201, Proto: "HTTP/1.1",
			Headers: []*reprisev1.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Length", Value: "8"}},
			Body:    []byte(`{"id":1}`), BodySize: 8,
		},
		Redactions:   []*reprisev1.Redaction{{Location: "request.headers.Authorization", Rule: "sensitive-header", Action: "redact"}},
		Capture:      &reprisev1.Capture{AgentId: "node-1", Source: reprisev1.CaptureSource_CAPTURE_SOURCE_SYSCALL},
		ConnectionId: "42-7-1f",
		Sequence:     3,
	}
}

func roundTrip(t *testing.T, f Format, in []*reprisev1.Exchange) ([]*reprisev1.Exchange, []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, f)
	for _, ex := range in {
		if err := w.Write(ex); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var out []*reprisev1.Exchange
	for ex, err := range Read(bytes.NewReader(buf.Bytes()), f) {
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		out = append(out, ex)
	}
	return out, buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	binary := sample("bin")
	binary.Response.Body = []byte{0x00, 0xff, 0x10}
	binary.Response.BodySize = 3
	noResponse := sample("none")
	noResponse.Response = nil
	noResponse.Capture.ResponseIncomplete = true
	in := []*reprisev1.Exchange{sample("a"), binary, noResponse}
	for _, f := range []Format{JSONL, HAR} {
		t.Run(string(f), func(t *testing.T) {
			out, _ := roundTrip(t, f, in)
			if len(out) != len(in) {
				t.Fatalf("read %d exchanges, want %d", len(out), len(in))
			}
			for i := range in {
				if !proto.Equal(in[i], out[i]) {
					t.Errorf("exchange %d changed:\n in %v\nout %v", i, in[i], out[i])
				}
			}
		})
	}
}

func TestHARIsValidHAR(t *testing.T) {
	_, raw := roundTrip(t, HAR, []*reprisev1.Exchange{sample("a"), sample("b")})
	var doc struct {
		Log struct {
			Version string
			Entries []map[string]any
		}
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("HAR is not JSON: %v\n%s", err, raw)
	}
	if doc.Log.Version != "1.2" || len(doc.Log.Entries) != 2 {
		t.Fatalf("version %q, %d entries", doc.Log.Version, len(doc.Log.Entries))
	}
	e := doc.Log.Entries[0]
	req := e["request"].(map[string]any)
	if req["url"] != "http://orders:8080/api/orders?src=web&q=a%20b" || e["_direction"] != "DIRECTION_INBOUND" {
		t.Fatalf("url %v direction %v", req["url"], e["_direction"])
	}
	qs := req["queryString"].([]any)
	if len(qs) != 2 || qs[1].(map[string]any)["value"] != "a b" {
		t.Fatalf("queryString %v", qs)
	}
	if e["_redactions"].([]any)[0].(map[string]any)["rule"] != "sensitive-header" {
		t.Fatalf("_redactions %v", e["_redactions"])
	}
}

func TestHARDecodesContent(t *testing.T) {
	ex := sample("gz")
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write([]byte(`{"id":1,"note":"hello"}`))
	zw.Close()
	ex.Response.Headers = []*reprisev1.Header{
		{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Encoding", Value: "gzip"},
		{Name: "Content-Length", Value: "99"},
	}
	ex.Response.Body, ex.Response.BodySize = zipped.Bytes(), int64(zipped.Len())
	out, raw := roundTrip(t, HAR, []*reprisev1.Exchange{ex})
	if !strings.Contains(string(raw), `"text":"{\"id\":1,\"note\":\"hello\"}"`) {
		t.Fatalf("content not decoded in HAR:\n%s", raw)
	}
	got := out[0].Response
	if string(got.Body) != `{"id":1,"note":"hello"}` || got.BodySize != 23 {
		t.Fatalf("imported body %q size %d", got.Body, got.BodySize)
	}
	for _, h := range got.Headers {
		if h.Name == "Content-Encoding" || (h.Name == "Content-Length" && h.Value != "23") {
			t.Fatalf("imported headers still describe the encoded body: %v", got.Headers)
		}
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name, in string
		f        Format
		want     string
	}{
		{"bad json line", "{\"id\":\"a\"}\nnot json\n", JSONL, "line 2"},
		{"not HAR", `[1,2]`, HAR, "read HAR"},
		{"no entries", `{"log":{"version":"1.2"}}`, HAR, `no "entries"`},
		{"bad entry", `{"log":{"entries":[{"startedDateTime":"yesterday"}]}}`, HAR, "entry 0"},
		{"bad direction", `{"log":{"entries":[{"startedDateTime":"2026-01-01T00:00:00Z","_direction":"UP"}]}}`, HAR, "_direction"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			for _, e := range Read(strings.NewReader(tc.in), tc.f) {
				if e != nil {
					err = e
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	if FormatOf("x/rec.HAR") != HAR || FormatOf("rec.jsonl") != JSONL || FormatOf("rec") != JSONL {
		t.Fatal("FormatOf")
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Fatal("ParseFormat accepted xml")
	}
}

func FuzzRead(f *testing.F) {
	var har, jsonl bytes.Buffer
	for _, pair := range []struct {
		buf *bytes.Buffer
		f   Format
	}{{&har, HAR}, {&jsonl, JSONL}} {
		w := NewWriter(pair.buf, pair.f)
		w.Write(sample("seed"))
		w.Close()
	}
	f.Add(har.Bytes(), true)
	f.Add(jsonl.Bytes(), false)
	f.Fuzz(func(t *testing.T, data []byte, isHAR bool) {
		format := JSONL
		if isHAR {
			format = HAR
		}
		for ex, err := range Read(bytes.NewReader(data), format) {
			if err == nil && ex == nil {
				t.Fatal("nil exchange without error")
			}
		}
	})
}
