package ingest_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/reprise-dev/reprise/collector/ingest"
	"github.com/reprise-dev/reprise/collector/internal/grpctest"
	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/store"
	"github.com/reprise-dev/reprise/collector/tail"
	"github.com/reprise-dev/reprise/internal/sanitize"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// TestStreamLimit checks that ingest streams past Limits.Streams are
// refused with ResourceExhausted, and that a closed one frees its place.
func TestStreamLimit(t *testing.T) {
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "reprise.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := grpc.NewServer()
	svc := ingest.New(st, sanitize.Default(), tail.NewHub(), metrics.Nop{}, ingest.Limits{Streams: 2})
	reprisev1.RegisterIngestServiceServer(srv, svc)
	client := reprisev1.NewIngestServiceClient(grpctest.Dial(t, srv))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// open starts a stream and returns once the server has acked a batch on
	// it, so it is counted; or returns the stream's error.
	open := func(ctx context.Context, id string) error {
		s, err := client.Ingest(ctx)
		if err == nil {
			err = s.Send(&reprisev1.IngestRequest{BatchId: id, AgentId: "a"})
		}
		if err == nil {
			_, err = s.Recv()
		}
		return err
	}
	first, stopFirst := context.WithCancel(ctx)
	for i, c := range []context.Context{first, ctx} {
		if err := open(c, string(rune('a'+i))); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	if err := open(ctx, "c"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third stream: %v, want ResourceExhausted", err)
	}
	stopFirst()
	// The server sees the cancel shortly after.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := open(ctx, "d")
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("after closing one: %v, want a place", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
