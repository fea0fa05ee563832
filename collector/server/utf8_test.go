package server

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// rawCodec sends messages as the generated code writes them, without the
// UTF-8 check a well-behaved client makes: what a hostile client sends.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, err := v.(interface{ MarshalVT() ([]byte, error) }).MarshalVT()
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return v.(interface{ UnmarshalVT([]byte) error }).UnmarshalVT(data.Materialize())
}

// TestInvalidUTF8IsInvalidArgument checks that a string that is not UTF-8,
// in a unary request or in an ingest batch, is InvalidArgument naming the
// field, not Internal, and that valid calls on the same server still work.
func TestInvalidUTF8IsInvalidArgument(t *testing.T) {
	addr, _ := startGRPC(t, Config{})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	qc := reprisev1.NewQueryServiceClient(conn)
	_, err = qc.CountExchanges(ctx, &reprisev1.CountExchangesRequest{Filter: &reprisev1.ExchangeFilter{Service: "orders\xff"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "ExchangeFilter.service") {
		t.Errorf("filter with invalid UTF-8: %v, want InvalidArgument naming ExchangeFilter.service", err)
	}
	if _, err := qc.CountExchanges(ctx, &reprisev1.CountExchangesRequest{Filter: &reprisev1.ExchangeFilter{Service: "orders"}}); err != nil {
		t.Errorf("valid filter after it: %v", err)
	}

	s, err := reprisev1.NewIngestServiceClient(conn).Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ex := &reprisev1.Exchange{Id: "e1", Request: &reprisev1.HttpRequest{Method: "GET", Target: "/",
		Headers: []*reprisev1.Header{{Name: "X-Name", Value: "caf\xe9"}}}}
	err = s.Send(&reprisev1.IngestRequest{BatchId: "b1", AgentId: "a", Exchanges: []*reprisev1.Exchange{ex}})
	if err == nil || errors.Is(err, io.EOF) {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "Header.value") {
		t.Errorf("batch with invalid UTF-8: %v, want InvalidArgument naming Header.value", err)
	}
}
