package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
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
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// benchExchange is a realistic ~2 KB JSON API exchange with credentials,
// cookies and personal data for the sanitizer to find.
func benchExchange() *reprisev1.Exchange {
	reqBody := `{"customer":{"id":"cus_000184","email":"jane.doe@example.com","phone":"+1 415-555-0132",
"name":"Jane Doe","address":{"line1":"1 Market St","city":"San Francisco","zip":"94105","country":"US"}},
"items":[{"sku":"SKU-12-RED-XL","qty":2,"price":19.99},{"sku":"SKU-7-BLU-M","qty":1,"price":49.5},
{"sku":"SKU-3-GRN-S","qty":3,"price":5.25}],"payment":{"method":"card","card_number":"4111111111111111",
"exp":"12/29","cvv":"737"},"coupon":"SUMMER-2026","notes":"Leave at the door, ring twice. If nobody answers, leave it with the neighbour at number 3.",
"shipping":{"method":"express","carrier":"UPS","instructions":"Call on arrival","gift":true,"gift_message":"Happy birthday!"},
"created_at":"2026-11-24T10:14:49Z","request_id":"7c9e6679-7425-40de-944b-e07fc1f90ae7"}`
	respBody := `{"order":{"id":"ORD-2026-000123","status":"confirmed","total":121.23,"currency":"USD",
"items":[{"sku":"SKU-12-RED-XL","qty":2},{"sku":"SKU-7-BLU-M","qty":1},{"sku":"SKU-3-GRN-S","qty":3}],
"customer":{"id":"cus_000184","email":"jane.doe@example.com"},"payment":{"last4":"1111","brand":"visa"},
"tracking_url":"https://track.example/t/1Z999AA10123456784","eta":"2026-11-27",
"created_at":"2026-11-24T10:14:49Z","updated_at":"2026-11-24T10:14:50Z"},"links":{"self":"/api/v1/orders/ORD-2026-000123"}}`
	h := func(kv ...string) []*reprisev1.Header {
		var out []*reprisev1.Header
		for i := 0; i < len(kv); i += 2 {
			out = append(out, &reprisev1.Header{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	return &reprisev1.Exchange{
		Service: "shop", Direction: reprisev1.Direction_DIRECTION_INBOUND,
		Duration: durationpb.New(12 * time.Millisecond),
		Request: &reprisev1.HttpRequest{
			Method: "POST", Target: "/api/v1/orders?expand=items&client=web", Host: "shop.internal", Proto: "HTTP/1.1",
			Headers: h("Host", "shop.internal", "User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
				"Accept", "application/json", "Content-Type", "application/json",
				"Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
				"Cookie", "sid=SESSION-abc-123; theme=dark", "X-Request-Id", "7c9e6679-7425-40de-944b-e07fc1f90ae7"),
			Body: []byte(reqBody), BodySize: int64(len(reqBody)),
		},
		Response: &reprisev1.HttpResponse{
			StatusCode: 201, Proto: "HTTP/1.1",
			Headers: h("Content-Type", "application/json", "Set-Cookie", "sid=SESSION-def-456; Path=/; HttpOnly",
				"Date", "Tue, 24 Nov 2026 10:14:50 GMT"),
			Body: []byte(respBody), BodySize: int64(len(respBody)),
		},
		Capture: &reprisev1.Capture{AgentId: "bench", Source: reprisev1.CaptureSource_CAPTURE_SOURCE_SYSCALL},
	}
}

// benchBatch returns n fresh copies of the template with unique ids.
func benchBatch(tmpl *reprisev1.Exchange, prefix string, n int, start time.Time) []*reprisev1.Exchange {
	out := make([]*reprisev1.Exchange, n)
	for i := range out {
		ex := proto.CloneOf(tmpl)
		ex.Id = prefix + strconv.Itoa(i)
		ex.StartTime = timestamppb.New(start.Add(time.Duration(i) * time.Microsecond))
		out[i] = ex
	}
	return out
}

const (
	benchBatchSize = 500
	benchStreams   = 2 // agents sending at once
	benchInFlight  = 4 // unacked batches per stream
)

// BenchmarkIngest measures exchanges per second into the embedded store:
// "grpc" is the whole path (gRPC on loopback, default sanitizer, zstd,
// SQLite commit per batch); "store" is the baseline of the same batches put
// straight into the store, without gRPC or the sanitizer.
func BenchmarkIngest(b *testing.B) {
	tmpl := benchExchange()
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
			wg.Add(1)
			go func() {
				defer wg.Done()
				stream, err := client.Ingest(context.Background())
				if err != nil {
					b.Error(err)
					return
				}
				batches := (b.N/benchStreams + benchBatchSize - 1) / benchBatchSize
				// At most benchInFlight batches unacked, as an agent keeps them.
				sem := make(chan struct{}, benchInFlight)
				acks := make(chan error, 1)
				go func() {
					for range batches {
						if _, err := stream.Recv(); err != nil {
							acks <- err
							return
						}
						<-sem
					}
					acks <- nil
				}()
				for n := range batches {
					select {
					case sem <- struct{}{}:
					case err := <-acks: // the stream failed before all acks came
						b.Error(err)
						return
					}
					req := &reprisev1.IngestRequest{BatchId: fmt.Sprint(s, "-", n),
						Exchanges: benchBatch(tmpl, fmt.Sprintf("%d-%d-", s, n), benchBatchSize, start)}
					if err := stream.Send(req); err != nil {
						b.Error(err)
						return
					}
				}
				if err := <-acks; err != nil {
					b.Error(err)
				}
				stream.CloseSend()
			}()
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
		for n := 0; n*benchBatchSize < b.N; n++ {
			if err := st.Put(context.Background(), benchBatch(tmpl, fmt.Sprint(n, "-"), benchBatchSize, start)); err != nil {
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
