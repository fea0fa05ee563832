package wirecodec

import (
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/reprise-dev/reprise/internal/ingestload"
	"github.com/reprise-dev/reprise/internal/sample"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// BenchmarkCodec marshals and unmarshals the batches BenchmarkIngest sends
// (500 sample checkout exchanges, ~2 KB each) with gRPC's stock codec
// ("proto") and with this one ("vt"), in the same process: ns/op and
// cpu-ns/op (the process's CPU, garbage collection included, which a busy
// machine does not inflate) are per exchange.
func BenchmarkCodec(b *testing.B) {
	req := &reprisev1.IngestRequest{BatchId: "b", AgentId: "bench",
		Exchanges: ingestload.Batch(sample.Checkout(), ingestload.BatchSize, time.Unix(1e9, 0))}
	n := len(req.GetExchanges())
	b.SetBytes(int64(proto.Size(req) / n))
	for _, c := range []struct {
		name  string
		codec encoding.CodecV2
	}{{"proto", fallback()}, {"vt", codec{}}} {
		b.Run("marshal/"+c.name, func(b *testing.B) {
			defer reportCPU(b)()
			for i := 0; i < b.N; i += n {
				data, err := c.codec.Marshal(req)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
		})
		data, err := c.codec.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		wire := data.Materialize()
		data.Free()
		b.Run("unmarshal/"+c.name, func(b *testing.B) {
			defer reportCPU(b)()
			for i := 0; i < b.N; i += n {
				if err := c.codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, &reprisev1.IngestRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// reportCPU starts counting the process's CPU time; the function it returns
// reports it per op.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	cpu0 := cpu()
	return func() { b.ReportMetric(float64(cpu()-cpu0)/float64(b.N), "cpu-ns/op") }
}
