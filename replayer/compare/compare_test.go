package compare

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func resp(status int32, contentType string, body string) *reprisev1.HttpResponse {
	r := &reprisev1.HttpResponse{StatusCode: status, Body: []byte(body), BodySize: int64(len(body))}
	if contentType != "" {
		r.Headers = append(r.Headers, &reprisev1.Header{Name: "Content-Type", Value: contentType})
	}
	return r
}

func jsonResp(body string) *reprisev1.HttpResponse {
	return resp(200, "application/json; charset=utf-8", body)
}

// encoded returns r with its body compressed by the given coding; a coding
// it does not know is only declared, the body left as it is.
func encoded(r *reprisev1.HttpResponse, coding string) *reprisev1.HttpResponse {
	var buf bytes.Buffer
	var w io.WriteCloser
	switch coding {
	default:
		r.Headers = append(r.Headers, &reprisev1.Header{Name: "Content-Encoding", Value: coding})
		return r
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "deflate":
		w = zlib.NewWriter(&buf)
	case "raw-deflate":
		w, _ = flate.NewWriter(&buf, flate.DefaultCompression)
		coding = "deflate"
	}
	w.Write(r.Body)
	w.Close()
	r.Body = buf.Bytes()
	r.Headers = append(r.Headers, &reprisev1.Header{Name: "content-encoding", Value: coding})
	return r
}

func truncated(r *reprisev1.HttpResponse, keep int) *reprisev1.HttpResponse {
	r.Body = r.Body[:keep]
	r.BodyTruncated = true
	return r
}

func TestCompare(t *testing.T) {
	longText := strings.Repeat("x", 200)
	tests := []struct {
		name     string
		recorded *reprisev1.HttpResponse
		replayed *reprisev1.HttpResponse
		want     []Difference
	}{
		{
			name:     "equal JSON with other key order and whitespace",
			recorded: jsonResp(`{"a":1,"b":{"c":[1,2],"d":"x"}}`),
			replayed: jsonResp("{\n  \"b\": {\"d\": \"x\", \"c\": [1, 2]},\n  \"a\": 1\n}"),
		},
		{
			name:     "changed nested value",
			recorded: jsonResp(`{"items":[{"price":10,"name":"book"}]}`),
			replayed: jsonResp(`{"items":[{"price":12,"name":"book"}]}`),
			want:     []Difference{{Path: "$.items[0].price", Kind: KindChanged, Recorded: "10", Replayed: "12"}},
		},
		{
			name:     "missing and added keys",
			recorded: jsonResp(`{"id":1,"total":20}`),
			replayed: jsonResp(`{"id":1,"amount":20,"my key":true}`),
			want: []Difference{
				{Path: "$.total", Kind: KindMissing, Recorded: "20"},
				{Path: "$.amount", Kind: KindAdded, Replayed: "20"},
				{Path: `$["my key"]`, Kind: KindAdded, Replayed: "true"},
			},
		},
		{
			name:     "array grows and shrinks",
			recorded: jsonResp(`{"a":[1,2,3],"b":[1]}`),
			replayed: jsonResp(`{"a":[1,2],"b":[1,{"x":null}]}`),
			want: []Difference{
				{Path: "$.a[2]", Kind: KindMissing, Recorded: "3"},
				{Path: "$.b[1]", Kind: KindAdded, Replayed: `{"x":null}`},
			},
		},
		{
			name:     "type change",
			recorded: jsonResp(`{"id":1,"tags":["a"],"ok":null}`),
			replayed: jsonResp(`{"id":"1","tags":{},"ok":false}`),
			want: []Difference{
				{Path: "$.id", Kind: KindType, Recorded: "number 1", Replayed: `string "1"`},
				{Path: "$.ok", Kind: KindType, Recorded: "null null", Replayed: "boolean false"},
				{Path: "$.tags", Kind: KindType, Recorded: `array ["a"]`, Replayed: "object {}"},
			},
		},
		{
			// Same exact value in another notation is equal; a value float64
			// would round to the same double is not.
			name:     "number formats compare by exact value",
			recorded: jsonResp(`[1, 1.0, 100, -0, 12345678901234567890, 0.1]`),
			replayed: jsonResp(`[1.00, 1e0, 1E+2, 0.0, 12345678901234567891, 0.10000000000000001]`),
			want: []Difference{
				{Path: "$[4]", Kind: KindChanged, Recorded: "12345678901234567890", Replayed: "12345678901234567891"},
				{Path: "$[5]", Kind: KindChanged, Recorded: "0.1", Replayed: "0.10000000000000001"},
			},
		},
		{
			name:     "status change hides the body",
			recorded: jsonResp(`{"id":1}`),
			replayed: resp(404, "text/plain", "not found"),
			want:     []Difference{{Path: "status", Kind: KindChanged, Recorded: "200", Replayed: "404"}},
		},
		{
			name:     "equal text",
			recorded: resp(200, "text/plain", "ok\n"),
			replayed: resp(200, "text/plain", "ok\n"),
		},
		{
			name:     "JSON-looking text is compared as bytes",
			recorded: resp(200, "text/plain", `{"a":1, "b":2}`),
			replayed: resp(200, "text/plain", `{"b":2, "a":1}`),
			want:     []Difference{{Path: "body", Kind: KindChanged, Recorded: `{"a":1, "b":2}`, Replayed: `{"b":2, "a":1}`}},
		},
		{
			name:     "invalid JSON falls back to bytes",
			recorded: jsonResp(`{"a":`),
			replayed: jsonResp(`{"a":1}`),
			want:     []Difference{{Path: "body", Kind: KindChanged, Recorded: `{"a":`, Replayed: `{"a":1}`}},
		},
		{
			name:     "text excerpt starts near the first difference",
			recorded: resp(200, "text/html", "<html><body>hello old world</body></html>"),
			replayed: resp(200, "text/html", "<html><body>hello new world</body></html>"),
			want: []Difference{{Path: "body", Kind: KindChanged,
				Recorded: "…tml><body>hello old world</body></html>",
				Replayed: "…tml><body>hello new world</body></html>"}},
		},
		{
			name:     "long values are cut",
			recorded: jsonResp(`{"s":"` + longText + `"}`),
			replayed: jsonResp(`{"s":"y"}`),
			want:     []Difference{{Path: "$.s", Kind: KindChanged, Recorded: `"` + longText[:79] + "…", Replayed: `"y"`}},
		},
		{
			name:     "binary bodies",
			recorded: resp(200, "application/octet-stream", "\xff\x00\x01"),
			replayed: resp(200, "application/octet-stream", "\xff\x00\x02"),
			want:     []Difference{{Path: "body", Kind: KindChanged, Recorded: "(3 bytes of binary)", Replayed: "(3 bytes of binary)"}},
		},
		{
			name:     "gzip recorded, plain replayed",
			recorded: encoded(jsonResp(`{"a":1,"b":2}`), "gzip"),
			replayed: jsonResp(`{"b":2,"a":1}`),
		},
		{
			name:     "gzip and deflate with a change",
			recorded: encoded(jsonResp(`{"a":1}`), "gzip"),
			replayed: encoded(jsonResp(`{"a":2}`), "deflate"),
			want:     []Difference{{Path: "$.a", Kind: KindChanged, Recorded: "1", Replayed: "2"}},
		},
		{
			name:     "raw deflate",
			recorded: encoded(resp(200, "text/plain", "hello"), "raw-deflate"),
			replayed: resp(200, "text/plain", "hello"),
		},
		{
			name: "unknown coding compares raw bytes",
			recorded: func() *reprisev1.HttpResponse {
				r := resp(200, "text/plain", "abc")
				r.Headers = append(r.Headers, &reprisev1.Header{Name: "Content-Encoding", Value: "br"})
				return r
			}(),
			replayed: resp(200, "text/plain", "abc"),
		},
		{
			name:     "truncated recorded body: equal prefix passes",
			recorded: truncated(jsonResp(`{"items":[1,2,3,4]}`), 8),
			replayed: jsonResp(`{"items":[1,2,3,4]}`),
		},
		{
			name:     "truncated recorded body: prefix differs",
			recorded: truncated(jsonResp(`{"items":[1,2,3,4]}`), 12),
			replayed: jsonResp(`{"items":[9,2,3,4]}`),
			want:     []Difference{{Path: "body", Kind: KindChanged, Recorded: `{"items":[1,`, Replayed: `{"items":[9,`}},
		},
		{
			name:     "truncated gzip body decodes what it can",
			recorded: truncated(encoded(resp(200, "text/plain", strings.Repeat("abcdefgh", 2000)), "gzip"), 60),
			replayed: resp(200, "text/plain", strings.Repeat("abcdefgh", 2000)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Compare(tt.recorded, tt.replayed)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Compare:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestCompareCapsDifferences(t *testing.T) {
	var rec, rep strings.Builder
	rec.WriteString("[")
	rep.WriteString("[")
	for i := range MaxDifferences + 10 {
		if i > 0 {
			rec.WriteString(",")
			rep.WriteString(",")
		}
		fmt.Fprintf(&rec, "%d", i)
		fmt.Fprintf(&rep, "%d", i+1)
	}
	rec.WriteString("]")
	rep.WriteString("]")
	got := Compare(jsonResp(rec.String()), jsonResp(rep.String()))
	if len(got) != MaxDifferences+1 {
		t.Fatalf("got %d differences, want %d", len(got), MaxDifferences+1)
	}
	want := Difference{Path: "$", Kind: KindTruncated, Recorded: "10 more differences not listed"}
	if last := got[len(got)-1]; last != want {
		t.Errorf("last difference = %+v, want %+v", last, want)
	}
}

func TestCanonicalNumber(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0", "0"},
		{"-0.00", "0"},
		{"1", "1e0"},
		{"1.0", "1e0"},
		{"10", "1e1"},
		{"1e1", "1e1"},
		{"-2.50", "-25e-1"},
		{"0.025E+2", "25e-1"},
		{"1e999999999999999999999", "1e999999999999999999999"},
	}
	for _, tt := range tests {
		if got := canonicalNumber(json.Number(tt.in)); got != tt.want {
			t.Errorf("canonicalNumber(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
