package replay

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
	"github.com/reprise-dev/reprise/replayer/compare"
)

func TestWritesAreSkippedUnlessAllowed(t *testing.T) {
	srv, got := target(t, nil)
	exs := []*reprisev1.Exchange{
		exchange("GET", "/api/orders", nil, "", 200, "ok"),
		exchange("HEAD", "/api/orders", nil, "", 200, ""),
		exchange("POST", "/api/orders", nil, "{}", 200, "ok"),
		exchange("PUT", "/api/orders/1", nil, "{}", 200, "ok"),
		exchange("patch", "/api/orders/1?x=1", nil, "{}", 200, "ok"),
		exchange("DELETE", "/api/orders/1", nil, "", 200, "ok"),
	}
	exs[1].Response.Body = nil
	tests := []struct {
		name   string
		safety Safety
		sent   []string
	}{
		{"default", Safety{}, []string{"GET", "HEAD"}},
		{"allow writes", Safety{AllowWrites: true}, []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}},
		{"routes", Safety{Routes: []Route{{Method: "POST", Path: "/api/orders"}, {Path: "/api/orders/*"}}},
			[]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}},
		{"route of another method", Safety{Routes: []Route{{Method: "PUT", Path: "/api/orders"}, {Method: "delete", Path: "/api/orders/*"}}},
			[]string{"GET", "HEAD", "DELETE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(got())
			r, err := New(options(t, srv.URL, time.Second, func(o *Options) { o.Safety = tt.safety }))
			if err != nil {
				t.Fatal(err)
			}
			var sent []string
			for _, ex := range exs {
				res := r.Replay(context.Background(), ex)
				switch {
				case res.Skipped == "":
					sent = append(sent, strings.ToUpper(res.Method))
				case !strings.Contains(res.Skipped, "is not idempotent: replayed only with --allow-writes"):
					t.Errorf("%s skipped for %q", res.Method, res.Skipped)
				}
			}
			if strings.Join(sent, " ") != strings.Join(tt.sent, " ") || len(got())-before != len(tt.sent) {
				t.Errorf("sent %v (%d reached the target), want %v", sent, len(got())-before, tt.sent)
			}
			if s := r.Stats(); s.Skipped != int64(len(exs)-len(tt.sent)) {
				t.Errorf("stats %+v, want %d skipped", s, len(exs)-len(tt.sent))
			}
		})
	}
}

// Exchanges go to the target named for their service or recorded host, and
// to no other: without a fallback, an unnamed one is skipped.
func TestTargetMap(t *testing.T) {
	orders, ordersGot := target(t, nil)
	payments, paymentsGot := target(t, nil)
	fallback, fallbackGot := target(t, nil)
	ex := func(service, host, path string) *reprisev1.Exchange {
		e := exchange("GET", path, nil, "", 200, "ok")
		e.Service, e.Request.Host, e.Id = service, host, path
		return e
	}
	exs := []*reprisev1.Exchange{
		ex("orders", "orders.prod:8080", "/by-service"),
		ex("", "payments.prod:443", "/by-host-and-port"),
		ex("", "payments.prod", "/by-host"),
		ex("billing", "billing.prod", "/unnamed"),
	}
	byName := map[string]string{"orders": orders.URL, "payments.prod": payments.URL}
	for _, withFallback := range []bool{false, true} {
		fb := ""
		if withFallback {
			fb = fallback.URL
		}
		targets, err := NewTargets(fb, byName)
		if err != nil {
			t.Fatal(err)
		}
		r, err := New(Options{Targets: targets, RunID: "run-map", Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		results := collect(t, r, exs...)
		unnamed := results["/unnamed"]
		if withFallback && !unnamed.Passed() || !withFallback && unnamed.Skipped != `no target for service "billing" or host "billing.prod"` {
			t.Errorf("fallback %v: unnamed exchange %+v", withFallback, unnamed)
		}
	}
	paths := func(ss []seen) (out []string) {
		for _, s := range ss {
			out = append(out, s.uri+" "+s.header.Get(RunHeader))
		}
		return out
	}
	if got := strings.Join(paths(ordersGot()), ","); got != "/by-service run-map,/by-service run-map" {
		t.Errorf("orders target got %s", got)
	}
	if got := strings.Join(paths(paymentsGot()), ","); got != "/by-host-and-port run-map,/by-host run-map,/by-host-and-port run-map,/by-host run-map" {
		t.Errorf("payments target got %s", got)
	}
	if got := strings.Join(paths(fallbackGot()), ","); got != "/unnamed run-map" {
		t.Errorf("fallback target got %s", got)
	}
}

// learner records what it is told.
type learner struct {
	mu    sync.Mutex
	pairs [][2]string
}

func (l *learner) Learn(rec *reprisev1.Exchange, a, b *reprisev1.HttpResponse, _, _ compare.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pairs = append(l.pairs, [2]string{string(a.GetBody()), string(b.GetBody())})
}

// With a reference, each request goes twice to it, the learner hears both
// answers, and the target still gets it once.
func TestLearnNoiseSendsTwiceToReference(t *testing.T) {
	var mu sync.Mutex
	n := 0
	ref, refGot := target(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		body := "answer " + string(rune('0'+n))
		mu.Unlock()
		w.Write([]byte(body))
	})
	srv, got := target(t, nil)
	l := &learner{}
	r, err := New(options(t, srv.URL, time.Second, func(o *Options) { o.References, o.Learner = []*url.URL{mustURL(t, ref.URL)}, l }))
	if err != nil {
		t.Fatal(err)
	}
	res := r.Replay(context.Background(), exchange("GET", "/x", nil, "", 200, "ok"))
	if !res.Passed() || len(refGot()) != 2 || len(got()) != 1 {
		t.Fatalf("result %+v; reference got %d requests, target %d; want 2 and 1", res, len(refGot()), len(got()))
	}
	if len(l.pairs) != 1 || l.pairs[0] != [2]string{"answer 1", "answer 2"} {
		t.Errorf("learner heard %v", l.pairs)
	}
	if h := refGot()[0].header.Get(RunHeader); h != "run-1" {
		t.Errorf("reference request carried %s %q", RunHeader, h)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// With two references (two fresh instances of the known-good build), each
// gets the request once.
func TestLearnNoiseFromTwoReferences(t *testing.T) {
	refA, gotA := target(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("a")) })
	refB, gotB := target(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("b")) })
	srv, got := target(t, nil)
	l := &learner{}
	r, err := New(options(t, srv.URL, time.Second, func(o *Options) {
		o.References, o.Learner = []*url.URL{mustURL(t, refA.URL), mustURL(t, refB.URL)}, l
	}))
	if err != nil {
		t.Fatal(err)
	}
	r.Replay(context.Background(), exchange("GET", "/x", nil, "", 200, "ok"))
	if len(gotA()) != 1 || len(gotB()) != 1 || len(got()) != 1 {
		t.Fatalf("references got %d and %d requests, target %d; want 1, 1, 1", len(gotA()), len(gotB()), len(got()))
	}
	if len(l.pairs) != 1 || l.pairs[0] != [2]string{"a", "b"} {
		t.Errorf("learner heard %v", l.pairs)
	}
}
