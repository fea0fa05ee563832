package compare

import (
	"reflect"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func withHeaders(r *reprisev1.HttpResponse, kv ...string) *reprisev1.HttpResponse {
	for i := 0; i+1 < len(kv); i += 2 {
		r.Headers = append(r.Headers, &reprisev1.Header{Name: kv[i], Value: kv[i+1]})
	}
	return r
}

func TestComparerOptions(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		recorded *reprisev1.HttpResponse
		replayed *reprisev1.HttpResponse
		want     []Difference
	}{
		{
			name:     "ignore a member and everything below it",
			opts:     Options{Ignore: []string{"$.created_at", "$.meta"}},
			recorded: jsonResp(`{"id":1,"created_at":"2026-01-01","meta":{"a":1}}`),
			replayed: jsonResp(`{"id":1,"created_at":"2026-02-02","meta":{"a":2,"b":3}}`),
		},
		{
			name:     "ignore with array wildcard",
			opts:     Options{Ignore: []string{"$.items[*].id"}},
			recorded: jsonResp(`{"items":[{"id":"a","n":1},{"id":"b","n":2}]}`),
			replayed: jsonResp(`{"items":[{"id":"x","n":1},{"id":"y","n":3}]}`),
			want:     []Difference{{Path: "$.items[1].n", Kind: KindChanged, Recorded: "2", Replayed: "3"}},
		},
		{
			name:     "ignore any member with .*",
			opts:     Options{Ignore: []string{"$.rates.*.updated"}},
			recorded: jsonResp(`{"rates":{"eur":{"v":1,"updated":1},"usd":{"v":2,"updated":1}}}`),
			replayed: jsonResp(`{"rates":{"eur":{"v":1,"updated":5},"usd":{"v":2,"updated":6}}}`),
		},
		{
			name:     "ignore a quoted member and a missing one",
			opts:     Options{Ignore: []string{`$["trace id"]`, "$.gone"}},
			recorded: jsonResp(`{"trace id":"a","gone":1}`),
			replayed: jsonResp(`{"trace id":"b"}`),
		},
		{
			name:     "array as a set by key",
			opts:     Options{Sets: map[string]string{"$.items": "id"}},
			recorded: jsonResp(`{"items":[{"id":1,"q":1},{"id":2,"q":2},{"id":3,"q":3}]}`),
			replayed: jsonResp(`{"items":[{"id":2,"q":2},{"id":1,"q":9},{"id":4,"q":4}]}`),
			want: []Difference{
				{Path: "$.items[id=1].q", Kind: KindChanged, Recorded: "1", Replayed: "9"},
				{Path: "$.items[id=3]", Kind: KindMissing, Recorded: `{"id":3,"q":3}`},
				{Path: "$.items[id=4]", Kind: KindAdded, Replayed: `{"id":4,"q":4}`},
			},
		},
		{
			name:     "set by key with a string key and an ignore on a keyed element",
			opts:     Options{Sets: map[string]string{"$.items": "sku"}, Ignore: []string{`$.items[sku="b-2"].stock`}},
			recorded: jsonResp(`{"items":[{"sku":"a-1","stock":1},{"sku":"b-2","stock":5}]}`),
			replayed: jsonResp(`{"items":[{"sku":"b-2","stock":7},{"sku":"a-1","stock":2}]}`),
			want:     []Difference{{Path: `$.items[sku="a-1"].stock`, Kind: KindChanged, Recorded: "1", Replayed: "2"}},
		},
		{
			name:     "array as a set by value, duplicates counted",
			opts:     Options{Sets: map[string]string{"$.tags": ""}},
			recorded: jsonResp(`{"tags":["a","b","b",{"x":1.0}]}`),
			replayed: jsonResp(`{"tags":[{"x":1},"b","a","c"]}`),
			want: []Difference{
				{Path: "$.tags[2]", Kind: KindMissing, Recorded: `"b"`},
				{Path: "$.tags[3]", Kind: KindAdded, Replayed: `"c"`},
			},
		},
		{
			name:     "ordered array is the default",
			recorded: jsonResp(`{"tags":["a","b"]}`),
			replayed: jsonResp(`{"tags":["b","a"]}`),
			want: []Difference{
				{Path: "$.tags[0]", Kind: KindChanged, Recorded: `"a"`, Replayed: `"b"`},
				{Path: "$.tags[1]", Kind: KindChanged, Recorded: `"b"`, Replayed: `"a"`},
			},
		},
		{
			name:     "chosen headers, case-insensitive",
			opts:     Options{Headers: []string{"content-type", "Location", "X-New"}},
			recorded: withHeaders(resp(201, "application/json", "{}"), "Location", "/a/1"),
			replayed: withHeaders(resp(201, "text/plain", "{}"), "location", "/a/2", "X-New", "1"),
			want: []Difference{
				{Path: "headers.Content-Type", Kind: KindChanged, Recorded: "application/json", Replayed: "text/plain"},
				{Path: "headers.Location", Kind: KindChanged, Recorded: "/a/1", Replayed: "/a/2"},
				{Path: "headers.X-New", Kind: KindAdded, Replayed: "1"},
			},
		},
		{
			name:     "all headers but ignored ones and a prefix",
			opts:     Options{Headers: []string{"*"}, Ignore: []string{"headers.date", "headers.X-B3-*"}},
			recorded: withHeaders(resp(200, "", ""), "Date", "a", "X-B3-TraceId", "1", "X-B3-SpanId", "1", "Vary", "Accept"),
			replayed: withHeaders(resp(200, "", ""), "Date", "b", "X-B3-TraceId", "2", "Cache-Control", "no-store"),
			want: []Difference{
				{Path: "headers.Cache-Control", Kind: KindAdded, Replayed: "no-store"},
				{Path: "headers.Vary", Kind: KindMissing, Recorded: "Accept"},
			},
		},
		{
			name:     "cookie expiry ignored, value compared",
			opts:     Options{Headers: []string{"Set-Cookie"}, IgnoreCookieExpiry: true},
			recorded: withHeaders(resp(200, "", ""), "Set-Cookie", "lang=en; Path=/; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Max-Age=60"),
			replayed: withHeaders(resp(200, "", ""), "Set-Cookie", "lang=de; Path=/; Expires=Thu, 22 Oct 2026 07:28:00 GMT; Max-Age=60"),
			want:     []Difference{{Path: "headers.Set-Cookie", Kind: KindChanged, Recorded: "lang=en; Path=/", Replayed: "lang=de; Path=/"}},
		},
		{
			name:     "status ignored: body still compared",
			opts:     Options{Ignore: []string{"status"}},
			recorded: jsonResp(`{"a":1}`),
			replayed: resp(202, "application/json", `{"a":2}`),
			want:     []Difference{{Path: "$.a", Kind: KindChanged, Recorded: "1", Replayed: "2"}},
		},
		{
			name:     "body ignored",
			opts:     Options{Ignore: []string{"body"}},
			recorded: resp(200, "text/html", "<p>token=1</p>"),
			replayed: resp(200, "text/html", "<p>token=2</p>"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := c.Compare(tt.recorded, tt.replayed)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// Every reported path pasted into the ignore rules silences exactly that
// difference.
func TestDifferencePathsArePasteable(t *testing.T) {
	rec := withHeaders(jsonResp(`{"a":{"b c":[1,{"d":2}]},"items":[{"id":"x y]","v":1}],"n":1}`), "Location", "/1")
	rep := withHeaders(jsonResp(`{"a":{"b c":[1,{"d":3}]},"items":[{"id":"x y]","v":2}],"n":2}`), "Location", "/2")
	opts := Options{Headers: []string{"Location"}, Sets: map[string]string{"$.items": "id"}}
	c, _ := New(opts)
	diffs := c.Compare(rec, rep)
	if len(diffs) != 4 {
		t.Fatalf("want 4 differences, got %+v", diffs)
	}
	for _, d := range diffs {
		o := opts
		o.Ignore = []string{d.Path}
		c, err := New(o)
		if err != nil {
			t.Fatalf("path %q does not parse: %v", d.Path, err)
		}
		left := c.Compare(rec, rep)
		if len(left) != len(diffs)-1 {
			t.Errorf("ignoring %q left %+v", d.Path, left)
		}
	}
}

func TestParsePathErrors(t *testing.T) {
	for _, p := range []string{"", "items", "$.", "$.a b", "$[", "$[x", "$[-1]", `$["a`, "$[a=]", "headers.", "headers.a b", "$..a"} {
		if _, err := ParsePath(p); err == nil {
			t.Errorf("ParsePath(%q) succeeded, want an error", p)
		}
	}
	if _, err := New(Options{Headers: []string{"a:b"}}); err == nil {
		t.Error("New accepted header name a:b")
	}
	if _, err := New(Options{Sets: map[string]string{"headers.X": "id"}}); err == nil {
		t.Error("New accepted a set at a header path")
	}
}

func TestGeneralize(t *testing.T) {
	for in, want := range map[string]string{
		"$.items[3].id":        "$.items[*].id",
		"$.a[id=2].b[0]":       "$.a[*].b[*]",
		`$["x y"][1]`:          `$["x y"][*]`,
		"headers.X-Request-Id": "headers.X-Request-Id",
		"body":                 "body",
		"$.plain":              "$.plain",
	} {
		if got := Generalize(in); got != want {
			t.Errorf("Generalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBodies(t *testing.T) {
	c, _ := New(Options{Ignore: []string{"$.nonce"}})
	if d := c.Bodies("application/json", []byte(`{"a":1,"nonce":1}`), "", []byte(`{"nonce":2, "a":1}`)); len(d) != 0 {
		t.Errorf("JSON bodies differing only in an ignored path: %+v", d)
	}
	if d := c.Bodies("text/plain", []byte(`a=1`), "text/plain", []byte(`a=2`)); len(d) != 1 || d[0].Path != "body" {
		t.Errorf("text bodies: %+v", d)
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"$.a[*].b", `$["x"][id="a]"]`, "headers.X-*", "$[3][k=1.5e3]", "status"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil || p.top != "$" {
			return
		}
		// A parsed JSON path prints back to a path that parses the same.
		again, err := ParsePath(pathString(p.segs))
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("%q → %q: %v", s, pathString(p.segs), err)
		}
	})
}

// FuzzCompare feeds untrusted bodies through the JSON comparison with sets
// and ignores: no panic, and a body always equals itself.
func FuzzCompare(f *testing.F) {
	f.Add([]byte(`{"items":[{"id":1},{"id":1}],"t":[1,1]}`), []byte(`{"items":[{"id":"1"}],"t":[]}`))
	f.Add([]byte(`[1e999999999,-0.0]`), []byte(`{"items":null}`))
	c, err := New(Options{Sets: map[string]string{"$.items": "id", "$.t": ""}, Ignore: []string{"$.x[*].y"}, Headers: []string{"*"}})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	ctx := Context{Markers: true, Own: []string{"X-Own"}, Replace: []Replacement{{"host:1", "host:2"}},
		RecordedAt: now, ReplayedAt: now.Add(time.Hour), Tolerance: time.Second}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ra, rb := jsonResp(string(a)), jsonResp(string(b))
		c.Compare(ra, rb)
		if d := c.Compare(ra, jsonResp(string(a))); len(d) != 0 {
			t.Fatalf("body differs from itself: %+v", d)
		}
		// Recorded bodies hold markers, times and URLs: any bytes must
		// compare without a crash, in every mode.
		c.CompareIn(ctx, ra, rb)
		c.CompareIn(ctx, resp(200, "text/plain", string(a)), resp(200, "text/plain", string(b)))
		ctx.Partial = true
		c.CompareIn(ctx, resp(200, "text/plain", string(a)), resp(200, "text/plain", string(b)))
		ctx.Partial = false
	})
}
