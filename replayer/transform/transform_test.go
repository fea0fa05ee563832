package transform

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

var captured = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

// now is four days and one hour after the capture.
var now = captured.Add(97 * time.Hour)

func hdrs(kv ...string) []*reprisev1.Header {
	var h []*reprisev1.Header
	for i := 0; i < len(kv); i += 2 {
		h = append(h, &reprisev1.Header{Name: kv[i], Value: kv[i+1]})
	}
	return h
}

func flat(hs []*reprisev1.Header) string {
	var parts []string
	for _, h := range hs {
		parts = append(parts, h.GetName()+": "+h.GetValue())
	}
	return strings.Join(parts, "; ")
}

func request(target, body string, headers ...string) *reprisev1.Exchange {
	return &reprisev1.Exchange{
		StartTime: timestamppb.New(captured),
		Request:   &reprisev1.HttpRequest{Method: "POST", Target: target, Headers: hdrs(headers...), Body: []byte(body), BodySize: int64(len(body))},
	}
}

func TestRequestTransforms(t *testing.T) {
	tests := []struct {
		name                  string
		cfg                   Config
		ex                    *reprisev1.Exchange
		target, headers, body string
	}{
		{
			name:    "set and remove headers",
			cfg:     Config{SetHeaders: map[string]string{"x-env": "test", "Accept": "text/plain"}, RemoveHeaders: []string{"cookie"}},
			ex:      request("/a", "", "Cookie", "s=1", "Accept", "*/*", "X-Keep", "k"),
			target:  "/a",
			headers: "X-Keep: k; Accept: text/plain; X-Env: test",
		},
		{
			name:   "rewrite URL with groups",
			cfg:    Config{RewriteURL: []Rewrite{{Match: `^/api/v1/(\w+)`, Replace: "/api/v2/$1"}, {Match: `([?&])debug=1&?`, Replace: "$1"}}},
			ex:     request("/api/v1/orders?debug=1&page=2", ""),
			target: "/api/v2/orders?page=2",
		},
		{
			name:    "static auth token",
			cfg:     Config{Auth: &Auth{Prefix: "Bearer ", Token: "test-token"}},
			ex:      request("/a", "", "authorization", "Bearer [REDACTED]", "X-A", "1"),
			target:  "/a",
			headers: "X-A: 1; Authorization: Bearer test-token",
		},
		{
			name:    "auth token from a command, other header",
			cfg:     Config{Auth: &Auth{Header: "x-api-key", Command: "echo key-from-command"}},
			ex:      request("/a", ""),
			target:  "/a",
			headers: "X-Api-Key: key-from-command",
		},
		{
			name: "shift times",
			cfg:  Config{ShiftTime: &ShiftTime{EpochFields: []string{"ts", "since"}}},
			ex: request("/a?from=2026-11-20T08:00:00Z&since=1795683600&n=1795683600&day=2026-11-19", `{"at":"2026-11-20T08:59:59.250+01:00","ts":1795683600000,"n":1795683600,"name":"2026-11-20 is a date"}`,
				"If-Modified-Since", "Fri, 20 Nov 2026 08:00:00 GMT", "X-Deadline", "2026-11-20T10:00:00Z", "Authorization", "2026-11-20T10:00:00Z"),
			target:  "/a?from=2026-11-24T09%3A00%3A00Z&since=1796032800&n=1795683600&day=2026-11-23",
			headers: "If-Modified-Since: Tue, 24 Nov 2026 09:00:00 GMT; X-Deadline: 2026-11-24T11:00:00Z; Authorization: 2026-11-20T10:00:00Z",
			body:    `{"at":"2026-11-24T09:59:59.250+01:00","n":1795683600,"name":"2026-11-20 is a date","ts":1796032800000}`,
		},
		{
			name:   "shift epoch by value",
			cfg:    Config{ShiftTime: &ShiftTime{EpochByValue: true}},
			ex:     request("/a?t=1795683600&big=9999999999", `{"ms":1795683600000,"count":42,"old":1000000000}`),
			target: "/a?t=1796032800&big=9999999999",
			body:   `{"count":42,"ms":1796032800000,"old":1000000000}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			p.now = func() time.Time { return now }
			if p.auth != nil {
				p.auth.now = p.now
			}
			orig := flat(tt.ex.GetRequest().GetHeaders())
			req, err := p.Request("s", tt.ex)
			if err != nil {
				t.Fatal(err)
			}
			if req.GetTarget() != tt.target || flat(req.GetHeaders()) != tt.headers {
				t.Errorf("got %s [%s], want %s [%s]", req.GetTarget(), flat(req.GetHeaders()), tt.target, tt.headers)
			}
			wantBody := tt.body
			if wantBody == "" {
				wantBody = string(tt.ex.GetRequest().GetBody())
			}
			if string(req.GetBody()) != wantBody || req.GetBodySize() != int64(len(wantBody)) {
				t.Errorf("body %s (size %d), want %s", req.GetBody(), req.GetBodySize(), wantBody)
			}
			if flat(tt.ex.GetRequest().GetHeaders()) != orig {
				t.Errorf("recorded exchange changed: %s", flat(tt.ex.GetRequest().GetHeaders()))
			}
		})
	}
}

func TestAuthCommandIsCached(t *testing.T) {
	dir := t.TempDir()
	counter := filepath.Join(dir, "runs")
	cmd := "echo run >> " + counter + "; echo token-$(wc -l < " + counter + ")"
	p, err := New(Config{Auth: &Auth{Command: cmd, TTL: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	clock := now
	p.auth.now = func() time.Time { return clock }
	value := func() string {
		req, err := p.Request("", request("/", ""))
		if err != nil {
			t.Fatal(err)
		}
		return flat(req.GetHeaders())
	}
	first, second := value(), value()
	clock = clock.Add(2 * time.Minute)
	third := value()
	if first != "Authorization: token-1" || second != first || third != "Authorization: token-2" {
		t.Errorf("tokens %q, %q, %q; want token-1 twice, then token-2 after the TTL", first, second, third)
	}

	failing, err := New(Config{Auth: &Auth{Command: "echo secret-output; exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = failing.Request("", request("/", ""))
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || strings.Contains(err.Error(), "secret") {
		t.Errorf("error %v, want the exit status and no output", err)
	}
	if _, err := os.Stat(counter); err != nil {
		t.Fatal(err)
	}
}

func TestLearnSubstitutesInLaterRequestsOfTheSession(t *testing.T) {
	p, err := New(Config{Learn: &Learn{}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &reprisev1.HttpResponse{
		Headers: hdrs("Set-Cookie", "session=old-sess; Path=/; HttpOnly", "Set-Cookie", "theme=dark"),
		Body:    []byte(`{"id":41,"order":{"order_id":"ord-1","total":25},"items":[{"sku":"a","line_id":"L1"}],"token":"tok-old"}`),
	}
	got := &reprisev1.HttpResponse{
		Headers: hdrs("Set-Cookie", "session=new-sess; Path=/", "Set-Cookie", "theme=dark"),
		Body:    []byte(`{"id":97,"order":{"order_id":"ord-9","total":22.5},"items":[{"sku":"a","line_id":"L7"}],"token":"tok-new"}`),
	}
	p.Learn("conn-1", rec, got)

	later := request("/orders/41/lines/L1?order=ord-1&v=41x&n=410", `{"order_id":"ord-1","ids":[41,"41"],"total":25,"note":"41"}`,
		"Cookie", "session=old-sess; theme=dark", "Authorization", "Bearer tok-old", "X-Order", "ord-1")
	req, err := p.Request("conn-1", later)
	if err != nil {
		t.Fatal(err)
	}
	wantTarget := "/orders/97/lines/L7?order=ord-9&v=41x&n=410"
	wantHeaders := "Cookie: session=new-sess; theme=dark; Authorization: Bearer tok-new; X-Order: ord-9"
	// The total differs too, but is not an id: it is never substituted.
	wantBody := `{"ids":[97,"97"],"note":"97","order_id":"ord-9","total":25}`
	if req.GetTarget() != wantTarget || flat(req.GetHeaders()) != wantHeaders || string(req.GetBody()) != wantBody {
		t.Errorf("got %s [%s] %s\nwant %s [%s] %s", req.GetTarget(), flat(req.GetHeaders()), req.GetBody(), wantTarget, wantHeaders, wantBody)
	}
	other, err := p.Request("conn-2", later)
	if err != nil {
		t.Fatal(err)
	}
	if other.GetTarget() != later.GetRequest().GetTarget() {
		t.Errorf("another session got %s, want the recorded target", other.GetTarget())
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{RewriteURL: []Rewrite{{Match: "("}}}, "transforms.rewrite_url[0].match"},
		{Config{RewriteURL: []Rewrite{{Replace: "x"}}}, "transforms.rewrite_url[0].match"},
		{Config{Auth: &Auth{}}, "transforms.auth: give exactly one of token and command"},
		{Config{Auth: &Auth{Token: "a", Command: "b"}}, "transforms.auth: give exactly one"},
		{Config{Auth: &Auth{Token: "a", TTL: -time.Second}}, "transforms.auth.ttl"},
		{Config{SetHeaders: map[string]string{"Bad Name": "x"}}, "transforms.set_headers"},
		{Config{SetHeaders: map[string]string{"X": "a\r\nInjected: 1"}}, "transforms.set_headers"},
		{Config{Learn: &Learn{Keys: []string{"("}}}, "transforms.learn.keys[0]"},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) error = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}
