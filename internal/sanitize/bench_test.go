package sanitize

import (
	"encoding/json"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"google.golang.org/protobuf/proto"

	"github.com/reprise-dev/reprise/internal/sample"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func benchSize(ex *reprisev1.Exchange) int64 {
	return int64(proto.Size(ex))
}

// BenchmarkSanitize is the sanitizer's throughput on one core (MB/s of
// marshalled exchange). Each iteration sanitizes a fresh copy.
func BenchmarkSanitize(b *testing.B) {
	s := Default()
	ex := sample.Checkout()
	b.SetBytes(benchSize(ex))
	b.ReportAllocs()
	defer cpuTime(b)()
	for b.Loop() {
		c := proto.CloneOf(ex)
		s.Sanitize(c)
	}
}

// BenchmarkSanitizeOnly is BenchmarkSanitize without the copy: copies are
// made in batches with the timer stopped, and only Sanitize's own thread
// CPU time is counted, so cpu-ns/op is the sanitizer's cost per exchange.
func BenchmarkSanitizeOnly(b *testing.B) {
	s := Default()
	ex := sample.Checkout()
	b.SetBytes(benchSize(ex))
	b.ReportAllocs()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	batch := make([]*reprisev1.Exchange, 512)
	var cpu time.Duration
	for done := 0; done < b.N; {
		b.StopTimer()
		n := min(len(batch), b.N-done)
		for i := range n {
			batch[i] = proto.CloneOf(ex)
		}
		b.StartTimer()
		start := threadCPU()
		for _, c := range batch[:n] {
			s.Sanitize(c)
		}
		cpu += threadCPU() - start
		done += n
	}
	perOp := float64(cpu.Nanoseconds()) / float64(b.N)
	b.ReportMetric(perOp, "cpu-ns/op")
	b.ReportMetric(float64(benchSize(ex))/perOp*1e3, "cpu-MB/s")
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
		b.ReportMetric(float64(benchSize(sample.Checkout()))/perOp*1e3, "cpu-MB/s")
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
	ex := sample.Checkout()
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
	ex := sample.Checkout()
	if n := benchSize(ex); n < 1800 || n > 2600 {
		t.Errorf("bench exchange is %d bytes, want about 2 KB", n)
	}
	if !Default().Sanitize(ex) {
		t.Fatal("bench exchange dropped")
	}
	assertNoSecrets(t, ex, []string{"jane.doe@example.com", "4111111111111111", secJWT, "SESSION-abc-123", "SESSION-def-456", "+1 415-555-0132"})
}
