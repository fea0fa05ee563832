package replay

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func TestRateOffset(t *testing.T) {
	tests := []struct {
		load Load
		n    float64
		want time.Duration
	}{
		{Load{RateFrom: 100, RateTo: 100}, 0, 0},
		{Load{RateFrom: 100, RateTo: 100}, 50, 500 * time.Millisecond},
		{Load{RateFrom: 20000, RateTo: 20000}, 20000, time.Second},
		// 0 to 10/s over 10s: n = t²/2 in the ramp (50 requests), then 10/s.
		{Load{RateFrom: 0, RateTo: 10, Ramp: 10 * time.Second}, 12.5, 5 * time.Second},
		{Load{RateFrom: 0, RateTo: 10, Ramp: 10 * time.Second}, 50, 10 * time.Second},
		{Load{RateFrom: 0, RateTo: 10, Ramp: 10 * time.Second}, 60, 11 * time.Second},
		// Ramping down 10 to 0... 10 to 2 over 4s: n = 10t - t² → 21 at t=3.
		{Load{RateFrom: 10, RateTo: 2, Ramp: 4 * time.Second}, 21, 3 * time.Second},
	}
	for _, tt := range tests {
		got := rateOffset(tt.load, tt.n)
		if d := got - tt.want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("rateOffset(%+v, %v) = %s, want %s", tt.load, tt.n, got, tt.want)
		}
	}
}

func TestRecordedSchedule(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	starts := []time.Duration{0, 100 * time.Millisecond, 10 * time.Second, 9 * time.Second, 9200 * time.Millisecond}
	tests := []struct {
		speed  float64
		maxGap time.Duration
		want   []time.Duration
	}{
		{1, 0, []time.Duration{0, 100 * time.Millisecond, 10 * time.Second, 10 * time.Second, 10200 * time.Millisecond}},
		// Twice as fast, each gap capped at 1s: the out-of-order start is no gap.
		{2, time.Second, []time.Duration{0, 50 * time.Millisecond, 1050 * time.Millisecond, 1050 * time.Millisecond, 1150 * time.Millisecond}},
	}
	for _, tt := range tests {
		s := &schedule{load: Load{Model: Recorded, Speed: tt.speed, MaxGap: tt.maxGap}}
		var got []time.Duration
		for _, d := range starts {
			at, ok := s.next(&reprisev1.Exchange{StartTime: timestamppb.New(t0.Add(d))})
			if !ok {
				t.Fatal("recorded model without a schedule")
			}
			got = append(got, at)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("speed %v max gap %s: offsets %v, want %v", tt.speed, tt.maxGap, got, tt.want)
		}
	}
}

// seq yields exchanges without error.
func seq(exs ...*reprisev1.Exchange) iter.Seq2[*reprisev1.Exchange, error] {
	return func(yield func(*reprisev1.Exchange, error) bool) {
		for _, ex := range exs {
			if !yield(ex, nil) {
				return
			}
		}
	}
}

// onConn is an exchange of a recorded connection.
func onConn(conn, target string, at time.Duration) *reprisev1.Exchange {
	ex := exchange("GET", target, nil, "", 200, "ok")
	ex.Id, ex.ConnectionId = conn+target, conn
	ex.StartTime = timestamppb.New(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC).Add(at))
	ex.Duration = durationpb.New(3 * time.Millisecond)
	return ex
}

// collect runs r over exs and returns the results by exchange id.
func collect(t *testing.T, r *Replayer, exs ...*reprisev1.Exchange) map[string]Result {
	t.Helper()
	results := map[string]Result{}
	if err := r.Run(context.Background(), seq(exs...), func(res Result) { results[res.ID] = res }); err != nil {
		t.Fatal(err)
	}
	if len(results) != len(exs) {
		t.Fatalf("%d results for %d exchanges", len(results), len(exs))
	}
	return results
}

// Each load model keeps the order of a connection's requests while
// connections run in parallel: the first request of every connection is
// held until all of them have arrived, which only parallel sessions reach.
func TestSessionsKeepOrderAndRunInParallel(t *testing.T) {
	const conns, perConn = 4, 5
	models := map[string]Load{
		"fastest":  {Model: Fastest, Workers: conns},
		"recorded": {Model: Recorded, Speed: 10},
		"rate":     {Model: Rate, RateFrom: 500, RateTo: 500},
		"ramp":     {Model: Rate, RateFrom: 100, RateTo: 1000, Ramp: 50 * time.Millisecond},
	}
	for name, load := range models {
		t.Run(name, func(t *testing.T) {
			var firsts sync.WaitGroup
			firsts.Add(conns)
			allFirst := make(chan struct{})
			go func() { firsts.Wait(); close(allFirst) }()
			srv, got := target(t, func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/0") {
					firsts.Done()
					select {
					case <-allFirst:
					case <-time.After(5 * time.Second):
						w.WriteHeader(http.StatusGatewayTimeout)
						return
					}
				}
				w.Header().Set("Content-Type", "text/plain")
				w.Write([]byte("ok"))
			})
			r, err := New(options(t, srv.URL, 10*time.Second, func(o *Options) { o.Load = load }))
			if err != nil {
				t.Fatal(err)
			}
			var exs []*reprisev1.Exchange
			for i := range perConn {
				for c := range conns {
					exs = append(exs, onConn(fmt.Sprintf("c%d", c), fmt.Sprintf("/c%d/%d", c, i), time.Duration(i*conns+c)*time.Millisecond))
				}
			}
			for id, res := range collect(t, r, exs...) {
				if !res.Passed() {
					t.Errorf("%s: %+v", id, res)
				}
			}
			order := map[string][]string{}
			for _, s := range got() {
				conn := strings.Split(s.uri, "/")[1]
				order[conn] = append(order[conn], s.uri)
			}
			for c := range conns {
				conn := fmt.Sprintf("c%d", c)
				var want []string
				for i := range perConn {
					want = append(want, fmt.Sprintf("/%s/%d", conn, i))
				}
				if !reflect.DeepEqual(order[conn], want) {
					t.Errorf("connection %s replayed as %v, want %v", conn, order[conn], want)
				}
			}
			if s := r.Stats(); s.Sent != conns*perConn || s.Selected != conns*perConn {
				t.Errorf("stats %+v, want %d sent", s, conns*perConn)
			}
		})
	}
}

// The open model starts requests on schedule whatever the latency: all of
// them reach a server that answers none until they have.
func TestRateIsAnOpenModel(t *testing.T) {
	const n = 10
	var arrived atomic.Int32
	release := make(chan struct{})
	srv, _ := target(t, func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == n {
			close(release)
		}
		select {
		case <-release:
		case <-time.After(5 * time.Second):
			w.WriteHeader(http.StatusGatewayTimeout)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok"))
	})
	r, err := New(options(t, srv.URL, 10*time.Second, func(o *Options) { o.Load = Load{Model: Rate, RateFrom: 200, RateTo: 200} }))
	if err != nil {
		t.Fatal(err)
	}
	var exs []*reprisev1.Exchange
	for i := range n {
		exs = append(exs, onConn("", fmt.Sprintf("/%d", i), 0))
	}
	begin := time.Now()
	for id, res := range collect(t, r, exs...) {
		if !res.Passed() {
			t.Errorf("%s: %+v", id, res)
		}
	}
	s := r.Stats()
	// Never early: the last of n requests at 200/s is due (n-1)/200 s in.
	if due := begin.Add(time.Duration(n-1) * 5 * time.Millisecond); s.LastSend.Before(due) {
		t.Errorf("last send %s after the start, before its schedule %s", s.LastSend.Sub(begin), due.Sub(begin))
	}
	if s.Sent != n || s.Dropped != 0 {
		t.Errorf("stats %+v, want %d sent, none dropped", s, n)
	}
}

// A request due while the bound of requests in flight is reached is dropped
// and reported, not queued.
func TestDroppedWhenInFlightBoundReached(t *testing.T) {
	release := make(chan struct{})
	srv, got := target(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok"))
	})
	r, err := New(options(t, srv.URL, 10*time.Second, func(o *Options) {
		o.Load = Load{Model: Rate, RateFrom: 1000, RateTo: 1000, MaxInFlight: 2}
	}))
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	var exs []*reprisev1.Exchange
	for i := range n {
		exs = append(exs, onConn("", fmt.Sprintf("/%d", i), 0))
	}
	var dropped, passed atomic.Int32
	err = r.Run(context.Background(), seq(exs...), func(res Result) {
		switch {
		case res.Dropped && strings.HasPrefix(res.Skipped, "dropped: 2 requests in flight"):
			// Release the two in flight once all the others were dropped.
			if dropped.Add(1) == n-2 {
				close(release)
			}
		case res.Passed():
			passed.Add(1)
		default:
			t.Errorf("unexpected result %+v", res)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if dropped.Load() != n-2 || passed.Load() != 2 || len(got()) != 2 {
		t.Errorf("%d dropped, %d passed, %d reached the target; want %d, 2, 2", dropped.Load(), passed.Load(), len(got()), n-2)
	}
	if s := r.Stats(); s.Dropped != n-2 || s.Sent != 2 {
		t.Errorf("stats %+v, want %d dropped and 2 sent", s, n-2)
	}
}

// A request that waits behind a slow one of its connection starts late; its
// latency counts from the schedule, not from the late start.
func TestLateSendsAreCountedAndInLatency(t *testing.T) {
	const slow = 50 * time.Millisecond
	srv, _ := target(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(slow)
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok"))
	})
	r, err := New(options(t, srv.URL, 10*time.Second, func(o *Options) { o.Load = Load{Model: Rate, RateFrom: 1000, RateTo: 1000} }))
	if err != nil {
		t.Fatal(err)
	}
	results := collect(t, r, onConn("c", "/slow", 0), onConn("c", "/next", time.Millisecond))
	next := results["c/next"]
	// /next is due 1ms in and can start only after /slow's 50ms.
	if next.Late < slow-time.Millisecond || next.Latency < next.Late {
		t.Errorf("next: late %s latency %s; want late ≥ %s and latency ≥ late", next.Late, next.Latency, slow-time.Millisecond)
	}
	if results["c/slow"].Latency < slow {
		t.Errorf("slow: latency %s, want ≥ %s", results["c/slow"].Latency, slow)
	}
	if s := r.Stats(); s.Late < 1 {
		t.Errorf("stats %+v, want the late send counted", s)
	}
	if next.RecordedLatency != 3*time.Millisecond || next.Endpoint != "/next" {
		t.Errorf("next: recorded latency %s endpoint %q", next.RecordedLatency, next.Endpoint)
	}
}
