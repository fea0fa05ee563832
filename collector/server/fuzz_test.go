package server

import (
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"

	"github.com/reprise-dev/reprise/internal/wirecodec"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// FuzzUTF8Codec feeds arbitrary bytes to the server codec as a query and
// as an ingest batch: it must not panic, and it must accept exactly what
// the strict codec accepts, plus messages it marks for refusal whose only
// fault is invalid UTF-8.
func FuzzUTF8Codec(f *testing.F) {
	strict := encoding.GetCodecV2(wirecodec.Name)
	for _, m := range []interface{ MarshalVT() ([]byte, error) }{
		&reprisev1.CountExchangesRequest{Filter: &reprisev1.ExchangeFilter{Service: "orders\xff", PathGlob: "/a/*"}},
		&reprisev1.IngestRequest{BatchId: "b", AgentId: "a", Exchanges: []*reprisev1.Exchange{{Id: "e\xc3",
			Request: &reprisev1.HttpRequest{Headers: []*reprisev1.Header{{Name: "X", Value: "\xe9"}}}}}},
	} {
		b, _ := m.MarshalVT()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &utf8Codec{CodecV2: strict}
		for _, newMsg := range []func() any{
			func() any { return &reprisev1.CountExchangesRequest{} },
			func() any { return &reprisev1.IngestRequest{} },
		} {
			got, want := newMsg(), newMsg()
			err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got)
			strictErr := strict.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, want)
			marked := err == nil && c.check(got) != nil
			switch {
			case strictErr == nil && (err != nil || marked):
				t.Fatalf("strict codec accepts what the server codec refuses: %v, marked %v", err, marked)
			case strictErr != nil && err == nil && !marked:
				t.Fatalf("server codec accepts unmarked what the strict codec refuses: %v", strictErr)
			}
		}
	})
}
