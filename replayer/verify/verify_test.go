package verify

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/reprise-dev/reprise/examples/orders/api"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
	"github.com/reprise-dev/reprise/replayer/compare"
)

// script is the traffic recorded from the order service.
var script = []struct{ method, target, body string }{
	{"POST", "/api/orders", `{"item":"book","quantity":2,"unit_price":10}`},
	{"POST", "/api/orders", `{"item":"pen","quantity":1,"unit_price":1.5}`},
	{"GET", "/api/orders/1", ""},
	{"GET", "/api/orders/2", ""},
	{"GET", "/api/orders", ""},
	{"GET", "/healthz", ""},
}

func orders(t *testing.T, version string) string {
	t.Helper()
	h, err := api.New(version, api.Noisy())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func send(t *testing.T, base, method, target, body string) *reprisev1.HttpResponse {
	t.Helper()
	req, err := http.NewRequest(method, base+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := &reprisev1.HttpResponse{StatusCode: int32(resp.StatusCode), Body: b, BodySize: int64(len(b))}
	for name, vals := range resp.Header {
		for _, v := range vals {
			out.Headers = append(out.Headers, &reprisev1.Header{Name: name, Value: v})
		}
	}
	return out
}

// record runs the script against a fresh service and returns the exchanges.
func record(t *testing.T, base string) []*reprisev1.Exchange {
	var out []*reprisev1.Exchange
	for i, s := range script {
		out = append(out, &reprisev1.Exchange{
			Id:        string(rune('a' + i)),
			Direction: reprisev1.Direction_DIRECTION_INBOUND,
			Request:   &reprisev1.HttpRequest{Method: s.method, Target: s.target, Body: []byte(s.body)},
			Response:  send(t, base, s.method, s.target, s.body),
		})
	}
	return out
}

// replay runs the recording against a fresh service and returns every
// difference found, by exchange id.
func replay(t *testing.T, v *Verifier, recorded []*reprisev1.Exchange, base string) map[string][]compare.Difference {
	out := map[string][]compare.Difference{}
	for _, ex := range recorded {
		got := send(t, base, ex.Request.Method, ex.Request.Target, string(ex.Request.Body))
		if d := v.Check(ex, got, compare.Context{}); len(d) > 0 {
			out[ex.Id] = d
		}
	}
	return out
}

// The point of the package: against a noisy service, built-in and learned
// noise make a replay against the same version pass, and a replay against
// the changed version report exactly the real change.
func TestNoisyServiceEndToEnd(t *testing.T) {
	recorded := record(t, orders(t, api.V1))
	noiseFile := filepath.Join(t.TempDir(), "noise.yaml")
	cfg := Config{Rules: Rules{Headers: []string{"*"}}, NoiseFile: noiseFile}

	naive, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if diffs := replay(t, naive, recorded, orders(t, api.V1)); len(diffs) < len(script)-1 {
		t.Fatalf("without learned noise only %d of %d exchanges differ; the example is not noisy enough: %v", len(diffs), len(script), diffs)
	}

	// Learn from two instances of the reference build, as --learn-noise does.
	learner, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	refA, refB := orders(t, api.V1), orders(t, api.V1)
	for _, ex := range recorded {
		a := send(t, refA, ex.Request.Method, ex.Request.Target, string(ex.Request.Body))
		b := send(t, refB, ex.Request.Method, ex.Request.Target, string(ex.Request.Body))
		learner.Learn(ex, a, b, compare.Context{}, compare.Context{})
	}
	if err := learner.SaveNoise(noiseFile); err != nil {
		t.Fatal(err)
	}
	wantNoise := map[string][]string{
		"POST /api/orders":     {"$.created_at", "$.ref", "$.request_id"},
		"GET /api/orders/{id}": {"$.created_at", "$.ref", "$.request_id"},
		"GET /api/orders":      {"$.orders[*].created_at", "$.orders[*].ref", "$.request_id"},
	}
	if got := learner.Noise(); !reflect.DeepEqual(got, wantNoise) {
		t.Errorf("learned noise %v\nwant %v", got, wantNoise)
	}
	saved, err := os.ReadFile(noiseFile)
	if err != nil || !strings.Contains(string(saved), "Review, then commit") || !strings.Contains(string(saved), "$.orders[*].ref") {
		t.Errorf("noise file not as expected (%v):\n%s", err, saved)
	}

	// A later run loads the reviewed file.
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if diffs := replay(t, v, recorded, orders(t, api.V1)); len(diffs) != 0 {
		t.Errorf("v1 against v1 with noise rules: %v", diffs)
	}
	want := map[string][]compare.Difference{
		"c": {{Path: "$.total", Kind: compare.KindChanged, Recorded: "20", Replayed: "18"}},
	}
	if diffs := replay(t, v, recorded, orders(t, api.V2)); !reflect.DeepEqual(diffs, want) {
		t.Errorf("v1 against v2: %v\nwant %v", diffs, want)
	}
}

func TestBuiltinNoise(t *testing.T) {
	ex := &reprisev1.Exchange{
		Request: &reprisev1.HttpRequest{Method: "GET", Target: "/a"},
		Response: &reprisev1.HttpResponse{StatusCode: 200, Headers: []*reprisev1.Header{
			{Name: "Date", Value: "Mon, 23 Nov 2026 10:00:00 GMT"}, {Name: "X-Request-Id", Value: "1"},
			{Name: "Traceparent", Value: "00-1-1-01"}, {Name: "X-B3-TraceId", Value: "1"}, {Name: "X-Amzn-Trace-Id", Value: "Root=1"},
			{Name: "ETag", Value: `"1"`}, {Name: "Set-Cookie", Value: "s=1; Max-Age=60; Expires=Mon, 23 Nov 2026 10:01:00 GMT"},
		}},
	}
	got := &reprisev1.HttpResponse{StatusCode: 200, Headers: []*reprisev1.Header{
		{Name: "Date", Value: "Tue, 24 Nov 2026 10:00:00 GMT"}, {Name: "X-Request-Id", Value: "2"},
		{Name: "Traceparent", Value: "00-2-2-01"}, {Name: "X-B3-TraceId", Value: "2"}, {Name: "X-Amzn-Trace-Id", Value: "Root=2"},
		{Name: "ETag", Value: `"2"`}, {Name: "Set-Cookie", Value: "s=1; Max-Age=60; Expires=Tue, 24 Nov 2026 10:01:00 GMT"},
	}}
	on, err := New(Config{Rules: Rules{Headers: []string{"*"}}})
	if err != nil {
		t.Fatal(err)
	}
	if d := on.Check(ex, got, compare.Context{}); len(d) != 0 {
		t.Errorf("built-in noise on: %+v", d)
	}
	off := false
	v, err := New(Config{Rules: Rules{Headers: []string{"*"}}, BuiltinNoise: &off})
	if err != nil {
		t.Fatal(err)
	}
	if d := v.Check(ex, got, compare.Context{}); len(d) != 7 {
		t.Errorf("built-in noise off: want all 7 headers to differ, got %+v", d)
	}
}

func TestEndpointRules(t *testing.T) {
	cfg := Config{
		Rules: Rules{Ignore: []string{"$.served_at"}},
		Endpoints: map[string]Rules{
			"/items/{id}":      {Ignore: []string{"$.stock"}},
			"GET /items":       {Arrays: []Array{{Path: "$.items", As: "set", Key: "id"}}},
			"POST /items/{id}": {Headers: []string{"Location"}},
		},
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	check := func(method, target, rec, got string) []compare.Difference {
		ex := &reprisev1.Exchange{Request: &reprisev1.HttpRequest{Method: method, Target: target},
			Response: &reprisev1.HttpResponse{StatusCode: 200, Body: []byte(rec), Headers: []*reprisev1.Header{{Name: "Content-Type", Value: "application/json"}}}}
		return v.Check(ex, &reprisev1.HttpResponse{StatusCode: 200, Body: []byte(got), Headers: []*reprisev1.Header{{Name: "Content-Type", Value: "application/json"}}}, compare.Context{})
	}
	if d := check("GET", "/items/7?x=1", `{"stock":1,"served_at":1}`, `{"stock":2,"served_at":2}`); len(d) != 0 {
		t.Errorf("global and path rule: %+v", d)
	}
	if d := check("GET", "/items", `{"items":[{"id":1},{"id":2}]}`, `{"items":[{"id":2},{"id":1}]}`); len(d) != 0 {
		t.Errorf("set rule of GET /items: %+v", d)
	}
	if d := check("GET", "/other", `{"stock":1}`, `{"stock":2}`); len(d) != 1 || d[0].Path != "$.stock" {
		t.Errorf("rule of another endpoint applied: %+v", d)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Rules: Rules{Ignore: []string{"created_at"}}}, "compare: ignore[0]"},
		{Config{Rules: Rules{Arrays: []Array{{Path: "$.a", As: "bag"}}}}, "compare: arrays[0].as"},
		{Config{Rules: Rules{Arrays: []Array{{Path: "items", As: "set"}}}}, "compare: arrays[0].path"},
		{Config{Endpoints: map[string]Rules{"orders": {}}}, "compare.endpoints"},
		{Config{Endpoints: map[string]Rules{"/o": {Ignore: []string{"$["}}}}, `compare.endpoints["/o"]: ignore[0]`},
		{Config{Rules: Rules{Headers: []string{"bad name"}}}, "compare: headers"},
	}
	for _, tt := range tests {
		_, err := New(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
		}
	}
	bad := filepath.Join(t.TempDir(), "noise.yaml")
	os.WriteFile(bad, []byte("endpoints:\n  GET /a:\n    - \"$.[\"\n"), 0o600)
	if _, err := New(Config{NoiseFile: bad}); err == nil || !strings.Contains(err.Error(), "compare.noise_file") {
		t.Errorf("bad noise file: %v", err)
	}
	os.WriteFile(bad, []byte("endpoint:\n  GET /a: []\n"), 0o600)
	if _, err := New(Config{NoiseFile: bad}); err == nil {
		t.Error("noise file with a misspelt key loaded")
	}
}

// Workers of a replay check and learn at the same time.
func TestConcurrentCheckAndLearn(t *testing.T) {
	v, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ex := &reprisev1.Exchange{Request: &reprisev1.HttpRequest{Method: "GET", Target: "/a"},
		Response: &reprisev1.HttpResponse{StatusCode: 200, Body: []byte(`{"n":0}`), Headers: []*reprisev1.Header{{Name: "Content-Type", Value: "application/json"}}}}
	resp := func(n string) *reprisev1.HttpResponse {
		return &reprisev1.HttpResponse{StatusCode: 200, Body: []byte(`{"n":` + n + `}`), Headers: ex.Response.Headers}
	}
	done := make(chan bool)
	for i := range 4 {
		go func() {
			for range 50 {
				if i%2 == 0 {
					v.Learn(ex, resp("1"), resp("2"), compare.Context{}, compare.Context{})
				} else {
					v.Check(ex, resp("3"), compare.Context{})
				}
			}
			done <- true
		}()
	}
	for range 4 {
		<-done
	}
	if d := v.Check(ex, resp("3"), compare.Context{}); len(d) != 0 {
		t.Errorf("after learning $.n: %+v", d)
	}
}
