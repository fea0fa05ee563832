package export

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// benchExchange is a JSON API call, about 1.1 KB marshalled: 12 headers,
// a small request body and an order in the response.
func benchExchange(i int) *reprisev1.Exchange {
	hs := func(kv ...string) (out []*reprisev1.Header) {
		for j := 0; j < len(kv); j += 2 {
			out = append(out, &reprisev1.Header{Name: kv[j], Value: kv[j+1]})
		}
		return out
	}
	return &reprisev1.Exchange{
		Id: fmt.Sprintf("01HZX%021d", i), Service: "orders",
		Request: &reprisev1.HttpRequest{Method: "POST", Target: fmt.Sprintf("/api/v1/orders?customer=%d", i%977),
			Headers: hs("Host", "orders.internal:8080", "User-Agent", "checkout/2.14.1 (+grpc-gateway)", "Content-Type", "application/json",
				"Accept", "application/json", "X-Request-Id", fmt.Sprintf("req-%08x", i*2654435761), "Traceparent", fmt.Sprintf("00-%032x-%016x-01", i, i*31)),
			Body: fmt.Appendf(nil, `{"customer_id":%d,"items":[{"sku":"SKU-%04d","qty":2},{"sku":"SKU-0042","qty":1}],"currency":"EUR","coupon":null}`, i%977, i%1000)},
		Response: &reprisev1.HttpResponse{StatusCode: 201,
			Headers: hs("Content-Type", "application/json; charset=utf-8", "Date", "Tue, 24 Nov 2026 12:00:00 GMT", "Server", "orders/1.9.3",
				"Cache-Control", "no-store", "X-Request-Id", fmt.Sprintf("req-%08x", i*2654435761), "Content-Length", "812"),
			Body: fmt.Appendf(nil, `{"id":"ord_%010d","status":"created","total":{"amount":%d,"currency":"EUR"},"items":[`+
				`{"sku":"SKU-%04d","name":"Espresso beans 1kg","qty":2,"price":1890},{"sku":"SKU-0042","name":"Milk frother","qty":1,"price":4990}],`+
				`"shipping":{"method":"standard","eta_days":3,"address_id":"adr_%06d"},"created_at":"2026-11-24T12:00:%02dZ","links":{"self":"/api/v1/orders/ord_%010d","customer":"/api/v1/customers/%d"}}`,
				i, 8770+i%100, i%1000, i%5000, i%60, i, i%977)},
	}
}

// processCPU is the CPU time of the whole process: on a shared machine wall
// time mostly measures waiting for a core.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkExport sends b.N exchanges through an Exporter to an acking
// in-memory collector with each compression: ns/op is the CPU of both
// ends (compression and decompression), wire-B/exchange what the stream
// carried.
func BenchmarkExport(b *testing.B) {
	for _, c := range Compressions {
		b.Run(c, func(b *testing.B) {
			conn, ws := ackingServer(b)
			exs := make([]*reprisev1.Exchange, b.N)
			for i := range exs {
				exs[i] = benchExchange(i)
			}
			e := New(conn, Config{Compression: c, MaxPending: b.N + 1, MaxPendingBytes: 1 << 40})
			cpu0 := processCPU()
			b.ResetTimer()
			for _, ex := range exs {
				e.Add(ex)
			}
			e.Close()
			if err := e.Run(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			if st := e.Stats(); st.Acked != uint64(b.N) {
				b.Fatalf("%d acked of %d", st.Acked, b.N)
			}
			b.ReportMetric(float64(ws.wire)/float64(b.N), "wire-B/exchange")
			b.ReportMetric(float64(ws.length)/float64(b.N), "proto-B/exchange")
		})
	}
}
