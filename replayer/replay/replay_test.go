package replay

import (
	"context"
	"errors"
	"io"
	"iter"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
	"github.com/reprise-dev/reprise/replayer/compare"
)

// seen is what the target server received.
type seen struct {
	method, uri, host string
	header            http.Header
	body              string
	contentLength     int64
}

// target is a loopback server that records requests and answers 200 "ok",
// or whatever respond writes when set.
func target(t *testing.T, respond http.HandlerFunc) (*httptest.Server, func() []seen) {
	t.Helper()
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.RequestURI, r.Host, r.Header.Clone(), string(body), r.ContentLength})
		mu.Unlock()
		if respond != nil {
			respond(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, func() []seen {
		mu.Lock()
		defer mu.Unlock()
		return append([]seen(nil), got...)
	}
}

func hdrs(kv ...string) []*reprisev1.Header {
	var h []*reprisev1.Header
	for i := 0; i < len(kv); i += 2 {
		h = append(h, &reprisev1.Header{Name: kv[i], Value: kv[i+1]})
	}
	return h
}

func exchange(method, target string, headers []*reprisev1.Header, body string, status int32, respBody string) *reprisev1.Exchange {
	return &reprisev1.Exchange{
		Id:        "ex-" + method + target,
		Direction: reprisev1.Direction_DIRECTION_INBOUND,
		Request: &reprisev1.HttpRequest{
			Method: method, Target: target, Host: "prod.example.com", Proto: "HTTP/1.1",
			Headers: headers, Body: []byte(body), BodySize: int64(len(body)),
		},
		Response: &reprisev1.HttpResponse{
			StatusCode: status, Proto: "HTTP/1.1", Headers: hdrs("Content-Type", "text/plain"),
			Body: []byte(respBody), BodySize: int64(len(respBody)),
		},
	}
}

func TestReplaySendsTheRecordedRequest(t *testing.T) {
	srv, got := target(t, nil)
	srvHost := strings.TrimPrefix(srv.URL, "http://")
	tests := []struct {
		name     string
		base     string
		ex       *reprisev1.Exchange
		wantURI  string
		wantHdr  http.Header
		wantBody string
	}{
		{
			name: "headers filtered and body resent",
			base: srv.URL,
			ex: exchange("POST", "/api/orders?dry=1", hdrs(
				"Host", "prod.example.com",
				"Content-Type", "application/json",
				"X-Multi", "first",
				"Connection", "keep-alive, X-Hop",
				"X-Hop", "per-connection",
				"Keep-Alive", "timeout=5",
				"Transfer-Encoding", "chunked",
				"TE", "trailers",
				"Upgrade", "h2c",
				"Proxy-Authorization", "Basic secret",
				"Proxy-Connection", "keep-alive",
				"Content-Length", "999",
				"x-multi", "second",
				"X-Reprise-Replay", "stale-run",
			), `{"item":"book"}`, 200, "ok"),
			wantURI: "/api/orders?dry=1",
			wantHdr: http.Header{
				"Content-Type":     {"application/json"},
				"X-Multi":          {"first", "second"},
				"X-Reprise-Replay": {"run-1"},
			},
			wantBody: `{"item":"book"}`,
		},
		{
			name: "connection, user agent and accept-encoding as recorded",
			base: srv.URL,
			ex: exchange("GET", "/get", hdrs(
				"Host", "prod.example.com",
				"User-Agent", "curl/8.14.1",
				"Accept", "*/*",
				"Connection", "keep-alive",
				"Keep-Alive", "timeout=5",
				"Accept-Encoding", "br, zstd",
			), "", 200, "ok"),
			wantURI: "/get",
			wantHdr: http.Header{
				"User-Agent": {"curl/8.14.1"}, "Accept": {"*/*"}, "Connection": {"keep-alive"},
				"Keep-Alive": {"timeout=5"}, "Accept-Encoding": {"br, zstd"}, "X-Reprise-Replay": {"run-1"},
			},
		},
		{
			name:     "base path prefix and recorded escaping kept",
			base:     srv.URL + "/staging/",
			ex:       exchange("GET", "/files/a%2Fb?q=x%20y", nil, "", 200, "ok"),
			wantURI:  "/staging/files/a%2Fb?q=x%20y",
			wantHdr:  http.Header{"X-Reprise-Replay": {"run-1"}},
			wantBody: "",
		},
		{
			name:     "absolute-form target keeps path and query",
			base:     srv.URL,
			ex:       exchange("GET", "http://prod.example.com/api/orders?page=2", nil, "", 200, "ok"),
			wantURI:  "/api/orders?page=2",
			wantHdr:  http.Header{"X-Reprise-Replay": {"run-1"}},
			wantBody: "",
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(options(t, tt.base, time.Second, nil))
			if err != nil {
				t.Fatal(err)
			}
			res := r.Replay(context.Background(), tt.ex)
			if !res.Passed() {
				t.Fatalf("result = %+v, want passed", res)
			}
			s := got()[i]
			if s.uri != tt.wantURI || s.host != srvHost || s.body != tt.wantBody || s.contentLength != int64(len(tt.wantBody)) {
				t.Errorf("got %s %s host %s body %q length %d, want %s host %s body %q",
					s.method, s.uri, s.host, s.body, s.contentLength, tt.wantURI, srvHost, tt.wantBody)
			}
			// Content-Length is checked above; a request recorded without
			// User-Agent goes without one.
			s.header.Del("Content-Length")
			if !reflect.DeepEqual(s.header, tt.wantHdr) {
				t.Errorf("headers = %v, want %v", s.header, tt.wantHdr)
			}
		})
	}
}

func TestReplayOutcomes(t *testing.T) {
	redirect, _ := target(t, func(w http.ResponseWriter, r *http.Request) {
		// Every path redirects: following would loop until the client gives up.
		w.Header().Set("Location", "/elsewhere")
		w.WriteHeader(http.StatusFound)
	})
	slow, _ := target(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	changed, _ := target(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "not ok")
	})
	sent, got := target(t, nil)
	// A port that was listening a moment ago and is now closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	truncatedBody := exchange("POST", "/upload", nil, "partial", 200, "ok")
	truncatedBody.Request.BodyTruncated, truncatedBody.Request.BodySize = true, 1000

	tests := []struct {
		name        string
		base        string
		ex          *reprisev1.Exchange
		wantStatus  int
		wantDiffs   []compare.Difference
		wantErr     string
		wantSkipped string
	}{
		{
			name:       "redirect is compared, not followed",
			base:       redirect.URL,
			ex:         exchange("GET", "/old", nil, "", 302, ""),
			wantStatus: 302,
		},
		{
			name:       "body change",
			base:       changed.URL,
			ex:         exchange("GET", "/", nil, "", 200, "ok"),
			wantStatus: 200,
			wantDiffs:  []compare.Difference{{Path: "body", Kind: compare.KindChanged, Recorded: "ok", Replayed: "not ok"}},
		},
		{
			name:    "timeout is a per-exchange error",
			base:    slow.URL,
			ex:      exchange("GET", "/slow", nil, "", 200, "ok"),
			wantErr: "context deadline exceeded",
		},
		{
			name:    "unreachable target is a per-exchange error",
			base:    closed,
			ex:      exchange("GET", "/", nil, "", 200, "ok"),
			wantErr: "connection refused",
		},
		{
			name:        "truncated request body is skipped",
			base:        sent.URL,
			ex:          truncatedBody,
			wantSkipped: "recorded request body truncated (7 of 1000 bytes kept)",
		},
		{
			name:        "missing response is skipped",
			base:        sent.URL,
			ex:          func() *reprisev1.Exchange { e := exchange("GET", "/", nil, "", 200, "ok"); e.Response = nil; return e }(),
			wantSkipped: "no recorded response",
		},
		{
			name:        "unsupported request-target",
			base:        sent.URL,
			ex:          exchange("OPTIONS", "*", nil, "", 200, "ok"),
			wantSkipped: `refused, not sent: request-target "*" is neither origin form (/path?query) nor an absolute http URL`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(options(t, tt.base, 200*time.Millisecond, nil))
			if err != nil {
				t.Fatal(err)
			}
			res := r.Replay(context.Background(), tt.ex)
			if tt.wantErr != "" {
				if res.Err == nil || !strings.Contains(res.Err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", res.Err, tt.wantErr)
				}
			} else if res.Err != nil {
				t.Fatalf("unexpected error: %v", res.Err)
			}
			if res.ReplayedStatus != tt.wantStatus || res.Skipped != tt.wantSkipped || !reflect.DeepEqual(res.Differences, tt.wantDiffs) {
				t.Errorf("result = status %d skipped %q diffs %+v, want %d %q %+v",
					res.ReplayedStatus, res.Skipped, res.Differences, tt.wantStatus, tt.wantSkipped, tt.wantDiffs)
			}
		})
	}
	if n := len(got()); n != 0 {
		t.Errorf("skipped exchanges reached the target %d times", n)
	}
}

func TestRunKeepsOrderAndStopsOnStreamError(t *testing.T) {
	srv, got := target(t, nil)
	r, err := New(options(t, srv.URL, time.Second, nil))
	if err != nil {
		t.Fatal(err)
	}
	streamErr := errors.New("stream broke")
	seq := iter.Seq2[*reprisev1.Exchange, error](func(yield func(*reprisev1.Exchange, error) bool) {
		for _, p := range []string{"/1", "/2", "/3"} {
			if !yield(exchange("GET", p, nil, "", 200, "ok"), nil) {
				return
			}
		}
		yield(nil, streamErr)
	})
	var results []string
	err = r.Run(context.Background(), seq, func(res Result) { results = append(results, res.Target) })
	if !errors.Is(err, streamErr) {
		t.Errorf("Run error = %v, want %v", err, streamErr)
	}
	var uris []string
	for _, s := range got() {
		uris = append(uris, s.uri)
	}
	want := []string{"/1", "/2", "/3"}
	if !reflect.DeepEqual(results, want) || !reflect.DeepEqual(uris, want) {
		t.Errorf("results %v, sent %v, want both %v", results, uris, want)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	tests := []struct{ target, want string }{
		{"localhost:8080", "scheme must be http or https"},
		{"ftp://example.com", "scheme must be http or https"},
		{"http://", "no host"},
		{"http://localhost/?a=1", "must not have a query"},
		{"http://a b", "parse target URL"},
		{"", "no target"},
	}
	for _, tt := range tests {
		if _, err := NewTargets(tt.target, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewTargets(%q) error = %v, want %q", tt.target, err, tt.want)
		}
	}
	if _, err := NewTargets("", map[string]string{"orders": "ftp://x"}); err == nil || !strings.Contains(err.Error(), "target for orders") {
		t.Errorf("NewTargets with a bad mapped URL: error = %v, want one naming the service", err)
	}
	bad := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"zero timeout", func(o *Options) { o.Timeout = 0 }, "timeout must be positive"},
		{"no run id", func(o *Options) { o.RunID = "" }, "run id"},
		{"negative workers", func(o *Options) { o.Load.Workers = -1 }, "workers must be positive"},
		{"zero speed", func(o *Options) { o.Load = Load{Model: Recorded} }, "speed must be a positive number"},
		{"zero rate", func(o *Options) { o.Load = Load{Model: Rate} }, "rates must be positive"},
		{"ramp without duration", func(o *Options) { o.Load = Load{Model: Rate, RateFrom: 1, RateTo: 5} }, "needs a positive duration"},
		{"bad route", func(o *Options) { o.Safety.Routes = []Route{{Path: "[x"}} }, "safety.routes[0].path"},
		{"reference without learner", func(o *Options) { o.References = []*url.URL{o.Targets.fallback} }, "both a reference URL and a learner"},
	}
	for _, tt := range bad {
		o := options(t, "http://localhost", time.Second, tt.edit)
		if _, err := New(o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New error = %v, want %q", tt.name, err, tt.want)
		}
	}
}

// options are those of a run against base that allows writes, changed by
// edit when given.
func options(t *testing.T, base string, timeout time.Duration, edit func(*Options)) Options {
	t.Helper()
	targets, err := NewTargets(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Targets: targets, RunID: "run-1", Timeout: timeout, Safety: Safety{AllowWrites: true}}
	if edit != nil {
		edit(&o)
	}
	return o
}
