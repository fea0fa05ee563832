package sanitize

import (
	"encoding/json"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"google.golang.org/protobuf/proto"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// benchExchange is a realistic ~2 KB JSON API exchange: a checkout request
// with credentials, cookies and personal data, and its response.
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
	return &reprisev1.Exchange{
		Id: "ex-bench",
		Request: &reprisev1.HttpRequest{
			Method: "POST", Target: "/api/v1/orders?expand=items&client=web", Host: "shop.internal", Proto: "HTTP/1.1",
			Headers: hdrs("Host", "shop.internal", "User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
				"Accept", "application/json", "Content-Type", "application/json",
				"Authorization", "Bearer "+secJWT, "Cookie", "sid=SESSION-abc-123; theme=dark",
				"X-Request-Id", "7c9e6679-7425-40de-944b-e07fc1f90ae7", "Content-Length", "702"),
			Body: []byte(reqBody), BodySize: int64(len(reqBody)),
		},
		Response: &reprisev1.HttpResponse{
			StatusCode: 201, Proto: "HTTP/1.1",
			Headers: hdrs("Content-Type", "application/json", "Set-Cookie", "sid=SESSION-def-456; Path=/; HttpOnly",
				"Date", "Tue, 24 Nov 2026 10:14:50 GMT", "Content-Length", "560"),
			Body: []byte(respBody), BodySize: int64(len(respBody)),
		},
	}
}

func benchSize(ex *reprisev1.Exchange) int64 {
	return int64(proto.Size(ex))
}

// BenchmarkSanitize is the sanitizer's throughput on one core (MB/s of
// marshalled exchange). Each iteration sanitizes a fresh copy.
func BenchmarkSanitize(b *testing.B) {
	s := Default()
	ex := benchExchange()
	b.SetBytes(benchSize(ex))
	b.ReportAllocs()
	defer cpuTime(b)()
	for b.Loop() {
		c := proto.CloneOf(ex)
		s.Sanitize(c)
	}
}

// cpuTime reports the CPU time of the benchmark's thread per op and the
// MB/s it gives: on a loaded machine wall time mostly measures waiting for
// a core. GC work on other threads is not counted, so compare ratios.
func cpuTime(b *testing.B) func() {
	runtime.LockOSThread()
	start := threadCPU()
	return func() {
		d := threadCPU() - start
		runtime.UnlockOSThread()
		perOp := float64(d.Nanoseconds()) / float64(b.N)
		b.ReportMetric(perOp, "cpu-ns/op")
		b.ReportMetric(float64(benchSize(benchExchange()))/perOp*1e3, "cpu-MB/s")
	}
}

func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSanitizeBaseline does what any body-aware pass must do at least,
// with no rules: copy the exchange and parse both JSON bodies once. The
// ratio Sanitize/Baseline is the figure to compare across runs on a noisy
// machine.
func BenchmarkSanitizeBaseline(b *testing.B) {
	ex := benchExchange()
	b.SetBytes(benchSize(ex))
	b.ReportAllocs()
	defer cpuTime(b)()
	for b.Loop() {
		c := proto.CloneOf(ex)
		var v any
		if json.Unmarshal(c.Request.Body, &v) != nil || json.Unmarshal(c.Response.Body, &v) != nil {
			b.Fatal("bench bodies are not JSON")
		}
	}
}

func TestBenchExchangeIsRealistic(t *testing.T) {
	ex := benchExchange()
	if n := benchSize(ex); n < 1800 || n > 2600 {
		t.Errorf("bench exchange is %d bytes, want about 2 KB", n)
	}
	if !Default().Sanitize(ex) {
		t.Fatal("bench exchange dropped")
	}
	assertNoSecrets(t, ex, []string{"jane.doe@example.com", "4111111111111111", secJWT, "SESSION-abc-123", "SESSION-def-456", "+1 415-555-0132"})
}
