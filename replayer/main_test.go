package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/examples/orders/api"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
	"github.com/reprise-dev/reprise/replayer/compare"
	"github.com/reprise-dev/reprise/replayer/replay"
	"github.com/reprise-dev/reprise/replayer/report"
)

// recorder wraps a handler and records every exchange as the capture agent
// would see it on the server: request as received, response as sent.
type recorder struct {
	next      http.Handler
	mu        sync.Mutex
	exchanges []*reprisev1.Exchange
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rw := httptest.NewRecorder()
	rc.next.ServeHTTP(rw, r)
	for k, v := range rw.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rw.Code)
	w.Write(rw.Body.Bytes())

	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := len(rc.exchanges)
	rc.exchanges = append(rc.exchanges, &reprisev1.Exchange{
		Id:           fmt.Sprintf("ex-%d", n+1),
		StartTime:    timestamppb.New(time.Date(2026, 11, 24, 9, 0, n, 0, time.UTC)),
		Direction:    reprisev1.Direction_DIRECTION_INBOUND,
		Service:      "orders",
		ConnectionId: "conn-1",
		Sequence:     uint32(n),
		Request: &reprisev1.HttpRequest{
			Method: r.Method, Target: r.RequestURI, Host: r.Host, Proto: r.Proto,
			Headers: headerList(r.Header), Body: body, BodySize: int64(len(body)),
		},
		Response: &reprisev1.HttpResponse{
			StatusCode: int32(rw.Code), Proto: "HTTP/1.1",
			Headers: headerList(rw.Header()), Body: rw.Body.Bytes(), BodySize: int64(rw.Body.Len()),
		},
	})
}

func headerList(h http.Header) []*reprisev1.Header {
	var out []*reprisev1.Header
	for _, name := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[name] {
			out = append(out, &reprisev1.Header{Name: name, Value: v})
		}
	}
	return out
}

// record drives the demo's session at a real v1 server and returns what was
// recorded, in order.
func record(t *testing.T) []*reprisev1.Exchange {
	t.Helper()
	h, err := api.New(api.V1)
	if err != nil {
		t.Fatal(err)
	}
	rc := &recorder{next: h}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	calls := []struct{ method, path, body string }{
		{"POST", "/api/orders", `{"item":"espresso beans","quantity":2,"unit_price":12.5}`},
		{"POST", "/api/orders", `{"item":"milk frother","quantity":1,"unit_price":39.9}`},
		{"GET", "/api/orders", ""},
		{"GET", "/api/orders/1", ""},
		{"GET", "/api/orders/2", ""},
		{"GET", "/api/orders/404", ""},
		{"GET", "/healthz", ""},
	}
	for _, c := range calls {
		req, err := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if c.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Authorization", "Bearer [REDACTED]")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("record %s %s: %v", c.method, c.path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return rc.exchanges
}

// each yields the exchanges as a stream that never fails.
func each(exchanges []*reprisev1.Exchange) iter.Seq2[*reprisev1.Exchange, error] {
	return func(yield func(*reprisev1.Exchange, error) bool) {
		for _, ex := range exchanges {
			if !yield(ex, nil) {
				return
			}
		}
	}
}

// orders starts a fresh orders service and returns its URL and the values of
// the replay header it received.
func orders(t *testing.T, version string) (string, func() []string) {
	t.Helper()
	h, err := api.New(version)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var runIDs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		runIDs = append(runIDs, r.Header.Get(replay.RunHeader))
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(runIDs)
	}
}

// The deliberate change of v2: the detail of the one order with quantity 2.
var v2Change = []compare.Difference{{Path: "$.total", Kind: compare.KindChanged, Recorded: "25", Replayed: "22.5"}}

func TestReplayEndToEnd(t *testing.T) {
	recorded := record(t)
	tests := []struct {
		version    string
		wantFailed map[string][]compare.Difference // by request target
	}{
		{api.V1, map[string][]compare.Difference{}},
		{api.V2, map[string][]compare.Difference{"/api/orders/1": v2Change}},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			target, runIDs := orders(t, tt.version)
			targets, err := replay.NewTargets(target, nil)
			if err != nil {
				t.Fatal(err)
			}
			r, err := replay.New(replay.Options{Targets: targets, RunID: "run-e2e", Timeout: time.Second,
				Safety: replay.Safety{AllowWrites: true}, Load: replay.Load{Workers: 4}})
			if err != nil {
				t.Fatal(err)
			}
			rep := report.New("run-e2e", target, time.Now())
			if err := r.Run(context.Background(), each(recorded), func(res replay.Result) { rep.Add(res) }); err != nil {
				t.Fatal(err)
			}
			failed := map[string][]compare.Difference{}
			for _, e := range rep.Exchanges {
				if !e.Passed {
					failed[e.Target] = e.Differences
				}
			}
			if !reflect.DeepEqual(failed, tt.wantFailed) {
				t.Errorf("failed exchanges = %+v, want %+v", failed, tt.wantFailed)
			}
			if ids := runIDs(); len(ids) != len(recorded) || slices.ContainsFunc(ids, func(id string) bool { return id != "run-e2e" }) {
				t.Errorf("target saw replay headers %q, want %d times run-e2e", ids, len(recorded))
			}
		})
	}
}

// queryService streams its exchanges, honouring the parts of the filter the
// tests use.
type queryService struct {
	reprisev1.UnimplementedQueryServiceServer
	exchanges []*reprisev1.Exchange
	mu        sync.Mutex
	requests  []*reprisev1.StreamExchangesRequest
}

func (q *queryService) StreamExchanges(req *reprisev1.StreamExchangesRequest, stream grpc.ServerStreamingServer[reprisev1.StreamExchangesResponse]) error {
	q.mu.Lock()
	q.requests = append(q.requests, req)
	q.mu.Unlock()
	f := req.GetFilter()
	sent := int32(0)
	for _, ex := range q.exchanges {
		if req.GetLimit() > 0 && sent == req.GetLimit() {
			break
		}
		if f.GetDirection() != reprisev1.Direction_DIRECTION_UNSPECIFIED && ex.GetDirection() != f.GetDirection() ||
			f.GetMethod() != "" && ex.GetRequest().GetMethod() != f.GetMethod() ||
			!strings.HasPrefix(ex.GetRequest().GetTarget(), f.GetPathPrefix()) {
			continue
		}
		if err := stream.Send(&reprisev1.StreamExchangesResponse{Exchange: ex}); err != nil {
			return err
		}
		sent++
	}
	return nil
}

// collector serves q on a loopback port.
func collector(t *testing.T, q *queryService) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	reprisev1.RegisterQueryServiceServer(srv, q)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func TestRunCommand(t *testing.T) {
	recorded := record(t)
	// The collector also holds an outbound exchange, which the replayer must
	// not ask for, and an upload whose body was cut, which it must skip.
	outbound := &reprisev1.Exchange{Id: "out-1", Direction: reprisev1.Direction_DIRECTION_OUTBOUND,
		Request:  &reprisev1.HttpRequest{Method: "GET", Target: "/payments/1"},
		Response: &reprisev1.HttpResponse{StatusCode: 200}}
	truncated := &reprisev1.Exchange{Id: "cut-1", Direction: reprisev1.Direction_DIRECTION_INBOUND,
		Request:  &reprisev1.HttpRequest{Method: "POST", Target: "/api/uploads", Body: []byte("abc"), BodyTruncated: true, BodySize: 1 << 20},
		Response: &reprisev1.HttpResponse{StatusCode: 201}}
	q := &queryService{exchanges: append(slices.Clone(recorded), outbound, truncated)}
	addr := collector(t, q)

	type counts struct{ Total, Passed, Failed, Errors, Skipped int }
	tests := []struct {
		name       string
		target     string // orders version, "closed", or a literal URL
		args       []string
		wantCode   int
		wantCounts *counts // nil: no report expected
		wantStderr string
		wantLimit  int32
	}{
		{name: "v1 matches", target: api.V1, wantCode: 0, wantCounts: &counts{8, 7, 0, 0, 1}},
		{name: "v2 mismatch", target: api.V2, wantCode: 1, wantCounts: &counts{8, 7 - 1, 1, 0, 1}},
		{name: "limit", target: api.V1, args: []string{"--limit", "3"}, wantCode: 0, wantCounts: &counts{3, 3, 0, 0, 0}, wantLimit: 3},
		{name: "path prefix", target: api.V2, args: []string{"--path-prefix", "/api/orders/1", "--direction", "inbound"}, wantCode: 1, wantCounts: &counts{1, 0, 1, 0, 0}},
		{name: "target unreachable", target: "closed", wantCode: 1, wantCounts: &counts{8, 0, 0, 7, 1}},
		{name: "nothing selected", target: api.V1, args: []string{"--method", "DELETE"}, wantCode: 2, wantCounts: &counts{}, wantStderr: "no inbound exchange matched"},
		{name: "only skipped", target: api.V1, args: []string{"--path-prefix", "/api/uploads"}, wantCode: 2, wantCounts: &counts{1, 0, 0, 0, 1}, wantStderr: "all 1 selected exchanges were skipped"},
		{name: "collector unreachable", target: api.V1, args: []string{"--collector", closedAddr(t)}, wantCode: 2, wantStderr: "Unavailable"},
		{name: "no target", wantCode: 2, wantStderr: "--target is required"},
		{name: "bad target URL", target: "localhost:8080", wantCode: 2, wantStderr: "scheme must be http or https"},
		{name: "outbound", target: api.V1, args: []string{"--direction", "outbound"}, wantCode: 2, wantStderr: "only inbound exchanges can be replayed"},
		{name: "bad status filter", target: api.V1, args: []string{"--status", "42"}, wantCode: 2, wantStderr: "--status"},
		{name: "unknown flag", target: api.V1, args: []string{"--bogus"}, wantCode: 2, wantStderr: "flag provided but not defined"},
		{name: "bad timeout", target: api.V1, args: []string{"--timeout", "0s"}, wantCode: 2, wantStderr: "--timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reportPath := filepath.Join(t.TempDir(), "report.json")
			args := []string{"run", "--collector", addr, "--report-json", reportPath, "--run-id", "run-cli", "--timeout", "2s", "--allow-writes", "--progress", "0"}
			switch tt.target {
			case "":
			case api.V1, api.V2:
				url, _ := orders(t, tt.target)
				args = append(args, "--target", url)
			case "closed":
				args = append(args, "--target", "http://"+closedAddr(t))
			default:
				args = append(args, "--target", tt.target)
			}
			args = append(args, tt.args...)
			q.mu.Lock()
			q.requests = nil
			q.mu.Unlock()

			var stdout, stderr bytes.Buffer
			code := run(context.Background(), args, &stdout, &stderr)
			if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Fatalf("exit %d, stderr %q; want exit %d, stderr containing %q\nstdout:\n%s",
					code, stderr.String(), tt.wantCode, tt.wantStderr, stdout.String())
			}

			q.mu.Lock()
			for _, req := range q.requests {
				if req.GetFilter().GetDirection() != reprisev1.Direction_DIRECTION_INBOUND || req.GetLimit() != tt.wantLimit {
					t.Errorf("collector got filter %v limit %d, want inbound and limit %d", req.GetFilter(), req.GetLimit(), tt.wantLimit)
				}
			}
			q.mu.Unlock()

			raw, err := os.ReadFile(reportPath)
			if tt.wantCounts == nil {
				if err == nil {
					t.Errorf("report written, want none")
				}
				return
			}
			if err != nil {
				t.Fatalf("read report: %v", err)
			}
			var got struct {
				counts
				RunID     string            `json:"run_id"`
				Exchanges []json.RawMessage `json:"exchanges"`
			}
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatalf("parse report: %v", err)
			}
			if got.counts != *tt.wantCounts || got.RunID != "run-cli" || len(got.Exchanges) != got.Total {
				t.Errorf("report counts %+v run_id %q exchanges %d, want %+v run-cli", got.counts, got.RunID, len(got.Exchanges), *tt.wantCounts)
			}
			wantTotals := fmt.Sprintf("%d exchanges: %d passed, %d failed, %d errors", got.Total, got.Passed, got.Failed, got.Errors)
			if !strings.Contains(stdout.String(), wantTotals) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), wantTotals)
			}
		})
	}
}

func TestHelpAndUnknownCommand(t *testing.T) {
	tests := []struct {
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{[]string{"help"}, 0, "Usage: replayer run", ""},
		{[]string{"run", "-h"}, 0, "", "-report-json"},
		{nil, 2, "", "Usage: replayer run"},
		{[]string{"replay"}, 2, "", `unknown command "replay"`},
		{[]string{"run", "--target", "http://127.0.0.1:1", "extra"}, 2, "", "unexpected arguments"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, &stdout, &stderr)
		if code != tt.wantCode || !strings.Contains(stdout.String(), tt.wantStdout) || !strings.Contains(stderr.String(), tt.wantStderr) {
			t.Errorf("run %q = %d, stdout %q, stderr %q; want %d, %q, %q",
				tt.args, code, stdout.String(), stderr.String(), tt.wantCode, tt.wantStdout, tt.wantStderr)
		}
	}
}
