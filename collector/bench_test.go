package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/server"
	"github.com/reprise-dev/reprise/collector/store"
	"github.com/reprise-dev/reprise/internal/grpcclient"
	"github.com/reprise-dev/reprise/internal/ingestload"
	"github.com/reprise-dev/reprise/internal/sample"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// benchStreams is the agents sending at once.
const benchStreams = 2

// BenchmarkIngest measures exchanges per second into the embedded store:
// "grpc" is the whole path (gRPC on loopback, default sanitizer, s2,
// SQLite commit per batch); "store" is the baseline of the same batches put
// straight into the store, without gRPC or the sanitizer.
//
// Both run with the GC settings serve uses (tuneGC): set GOGC=100 in the
// environment to measure the Go default instead.
func BenchmarkIngest(b *testing.B) {
	gcPercent := debug.SetGCPercent(-1)
	debug.SetGCPercent(gcPercent)
	defer debug.SetGCPercent(gcPercent)
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1)) // -1 reads it
	tuneGC(cgroupMemoryMax, 0)
	tmpl := sample.Checkout()
	b.Run("grpc", func(b *testing.B) {
		st, err := store.OpenSQLite(filepath.Join(b.TempDir(), "reprise.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := server.NewGRPC(st, metrics.Nop{}, server.Config{})
		go srv.Serve(lis)
		defer srv.Stop()
		conn, err := (&grpcclient.Flags{}).Dial(lis.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		client := reprisev1.NewIngestServiceClient(conn)
		b.SetBytes(int64(proto.Size(tmpl)))
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for s := range benchStreams {
			wg.Go(func() {
				if err := ingestload.Send(context.Background(), client, tmpl, fmt.Sprint(s, "-"), b.N/benchStreams, start); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "exchanges/s")
	})
	b.Run("store", func(b *testing.B) {
		st, err := store.OpenSQLite(filepath.Join(b.TempDir(), "reprise.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		b.SetBytes(int64(proto.Size(tmpl)))
		b.ResetTimer()
		start := time.Now()
		for n := 0; n*ingestload.BatchSize < b.N; n++ {
			if err := st.Put(context.Background(), ingestload.Batch(tmpl, ingestload.BatchSize, start)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "exchanges/s")
	})
}

// BenchmarkQuery measures query latency over gRPC with REPRISE_BENCH_ROWS
// stored exchanges (default 1,000,000) spread over 20 services, 40
// endpoints and a day. REPRISE_BENCH_DB keeps the filled store between runs.
func BenchmarkQuery(b *testing.B) {
	rows := 1_000_000
	if v := os.Getenv("REPRISE_BENCH_ROWS"); v != "" {
		var err error
		if rows, err = strconv.Atoi(v); err != nil {
			b.Fatalf("REPRISE_BENCH_ROWS: %v", err)
		}
	}
	path := os.Getenv("REPRISE_BENCH_DB")
	if path == "" {
		path = filepath.Join(b.TempDir(), "reprise.db")
	}
	st, err := store.OpenSQLite(path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	day := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	have, err := st.Count(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	if have < int64(rows) {
		fillStore(b, st, int(have), rows, day)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := server.NewGRPC(st, metrics.Nop{}, server.Config{})
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := (&grpcclient.Flags{}).Dial(lis.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	q := reprisev1.NewQueryServiceClient(conn)
	rnd := rand.New(rand.NewPCG(1, 2))
	filter := func() *reprisev1.ExchangeFilter {
		// One service, 5xx, one hour of the day: a typical "what failed" page.
		h := rnd.IntN(23)
		return &reprisev1.ExchangeFilter{
			Service: fmt.Sprintf("svc-%02d", rnd.IntN(20)), StatusClass: 5,
			StartTime: timestamppb.New(day.Add(time.Duration(h) * time.Hour)),
			EndTime:   timestamppb.New(day.Add(time.Duration(h+1) * time.Hour)),
		}
	}
	calls := map[string]func() error{
		"get": func() error { // baseline: a point lookup by primary key
			_, err := q.GetExchange(ctx, &reprisev1.GetExchangeRequest{Id: fmt.Sprint("q", rnd.IntN(rows))})
			return err
		},
		"page": func() error {
			_, err := q.ListExchanges(ctx, &reprisev1.ListExchangesRequest{Filter: filter(), PageSize: 100})
			return err
		},
		"page-glob": func() error {
			_, err := q.ListExchanges(ctx, &reprisev1.ListExchangesRequest{PageSize: 100, Filter: &reprisev1.ExchangeFilter{
				PathGlob: fmt.Sprintf("/api/e%02d/*", rnd.IntN(40)), MinDuration: durationpb.New(50 * time.Millisecond)}})
			return err
		},
		"count": func() error {
			_, err := q.CountExchanges(ctx, &reprisev1.CountExchangesRequest{Filter: filter()})
			return err
		},
		"stats-service": func() error {
			_, err := q.GetStats(ctx, &reprisev1.GetStatsRequest{Filter: &reprisev1.ExchangeFilter{Service: fmt.Sprintf("svc-%02d", rnd.IntN(20))}})
			return err
		},
		"stats-all": func() error {
			_, err := q.GetStats(ctx, &reprisev1.GetStatsRequest{})
			return err
		},
	}
	for _, name := range []string{"get", "page", "page-glob", "count", "stats-service", "stats-all"} {
		b.Run(name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t := time.Now()
				if err := calls[name](); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t))
			}
			slices.Sort(lat)
			pct := func(p int) float64 { return float64(lat[(len(lat)-1)*p/100]) / 1e6 }
			b.ReportMetric(pct(50), "p50-ms")
			b.ReportMetric(pct(99), "p99-ms")
		})
	}
}

// fillStore adds exchanges from index from to to, about 500 bytes each.
func fillStore(b *testing.B, st store.Store, from, to int, day time.Time) {
	b.Helper()
	rnd := rand.New(rand.NewPCG(3, 4))
	start := time.Now()
	for i := from; i < to; {
		batch := make([]*reprisev1.Exchange, 0, 5000)
		for ; i < to && len(batch) < 5000; i++ {
			status := int32(200)
			if rnd.IntN(50) == 0 {
				status = 503
			}
			batch = append(batch, &reprisev1.Exchange{
				Id: fmt.Sprint("q", i), Service: fmt.Sprintf("svc-%02d", rnd.IntN(20)),
				StartTime: timestamppb.New(day.Add(time.Duration(rnd.Int64N(int64(24 * time.Hour))))),
				Duration:  durationpb.New(time.Duration(rnd.ExpFloat64() * float64(20*time.Millisecond))),
				Direction: reprisev1.Direction_DIRECTION_INBOUND,
				Request: &reprisev1.HttpRequest{Method: "GET", Target: fmt.Sprintf("/api/e%02d/%d?page=2", rnd.IntN(40), rnd.IntN(100000)),
					Host: "api.internal", Body: []byte(`{"query":"status:open","page":2,"size":50}`)},
				Response: &reprisev1.HttpResponse{StatusCode: status,
					Body: []byte(`{"items":[{"id":1,"name":"widget","price":9.99},{"id":2,"name":"gadget","price":19.99}],"total":2}`)},
				Capture: &reprisev1.Capture{AgentId: fmt.Sprint("agent-", rnd.IntN(5))},
			})
		}
		if err := st.Put(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("filled the store to %d exchanges in %s", to, time.Since(start).Round(time.Second))
}
