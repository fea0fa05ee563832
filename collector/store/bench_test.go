package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/internal/sample"
	"github.com/reprise-dev/reprise/internal/sanitize"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// BenchmarkPutBatch measures the embedded store alone: batches of 256
// sanitized sample exchanges (UUIDv7 ids as agents make them, start times
// a few µs apart) put by two goroutines at once, as two agent streams do,
// so the writer commits groups as in ingest. "one-endpoint" repeats the
// sample's service and path, as BenchmarkIngest does; "spread" has 20
// services, 40 endpoints and an id in every path, so each commit touches
// many leaf pages of the service, path and stats indexes. One op is one
// batch; cpu-µs/exchange is the process CPU (encoding and writer) per
// exchange, the figure to compare on a shared machine.
func BenchmarkPutBatch(b *testing.B) {
	tmpl := sample.Checkout()
	if !sanitize.Default().Sanitize(tmpl) {
		b.Fatal("sanitizer dropped the sample exchange")
	}
	b.Run("one-endpoint", func(b *testing.B) { benchPutBatch(b, tmpl, false) })
	b.Run("spread", func(b *testing.B) { benchPutBatch(b, tmpl, true) })
}

func benchPutBatch(b *testing.B, tmpl *reprisev1.Exchange, spread bool) {
	const batch, putters = 256, 2
	s, err := OpenSQLite(filepath.Join(b.TempDir(), "reprise.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	// Each putter refills its own batch before a put: ids, times and paths
	// are fresh, the bodies are not copied again.
	start := time.Now()
	var next atomic.Int64
	batches := make([][]*reprisev1.Exchange, putters)
	for p := range batches {
		batches[p] = make([]*reprisev1.Exchange, batch)
		for i := range batches[p] {
			batches[p][i] = proto.CloneOf(tmpl)
		}
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	for _, exs := range batches {
		wg.Go(func() {
			for n := next.Add(1) - 1; n < int64(b.N); n = next.Add(1) - 1 {
				for i, ex := range exs {
					k := int(n)*batch + i
					ex.Id = uuid.Must(uuid.NewV7()).String()
					ex.StartTime = timestamppb.New(start.Add(time.Duration(k) * 3 * time.Microsecond))
					if spread {
						ex.Service = fmt.Sprintf("svc-%02d", k%20)
						ex.Request.Target = fmt.Sprintf("/api/v1/e%02d/%d", k%40, k)
					}
				}
				if _, err := s.PutBatch(context.Background(), Batch{ID: uuid.NewString(), AgentID: "bench", Exchanges: exs}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(b.N*batch), "cpu-µs/exchange")
}

// cpuTime is the CPU the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
