package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/collector/ingest"
	"github.com/reprise-dev/reprise/collector/internal/grpctest"
	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/store"
	"github.com/reprise-dev/reprise/collector/tail"
	"github.com/reprise-dev/reprise/internal/sanitize"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

const secret = "Bearer s3cr3t-token-value"

// failingStore fails every Put, as a full disk would.
type failingStore struct{ store.Store }

func (failingStore) PutBatch(context.Context, store.Batch) (bool, error) {
	return false, errors.New("disk full")
}

func start(t *testing.T, wrap func(store.Store) store.Store) (reprisev1.IngestServiceClient, store.Store, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, "reprise.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	served := store.Store(st)
	if wrap != nil {
		served = wrap(st)
	}
	srv := grpc.NewServer()
	reprisev1.RegisterIngestServiceServer(srv, ingest.New(served, sanitize.Default(), tail.NewHub(), metrics.Nop{}, ingest.Limits{}))
	return reprisev1.NewIngestServiceClient(grpctest.Dial(t, srv)), st, dir
}

func exchange(id string) *reprisev1.Exchange {
	return &reprisev1.Exchange{
		Id:        id,
		StartTime: timestamppb.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)),
		Request: &reprisev1.HttpRequest{Method: "GET", Target: "/me", Headers: []*reprisev1.Header{
			{Name: "Authorization", Value: secret},
			{Name: "Accept", Value: "application/json"},
		}},
		Response: &reprisev1.HttpResponse{StatusCode: 200},
	}
}

func TestIngestAcksBatchesInOrder(t *testing.T) {
	client, st, dir := start(t, nil)
	ctx := context.Background()
	stream, err := client.Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for b := range 3 {
		req := &reprisev1.IngestRequest{BatchId: fmt.Sprintf("batch-%d", b), AgentId: "agent-1"}
		for i := range b + 1 {
			req.Exchanges = append(req.Exchanges, exchange(fmt.Sprintf("ex-%d-%d", b, i)))
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	for b := range 3 {
		ack, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ack.GetBatchId() != fmt.Sprintf("batch-%d", b) || ack.GetStored() != uint32(b+1) || ack.GetDropped() != 0 {
			t.Errorf("ack %d = %v, want batch-%d stored %d", b, ack, b, b+1)
		}
		// Acked means committed: every exchange of the batch is readable.
		for i := range b + 1 {
			if _, err := st.Get(ctx, fmt.Sprintf("ex-%d-%d", b, i)); err != nil {
				t.Errorf("acked exchange ex-%d-%d: %v", b, i, err)
			}
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}

	got, err := st.Get(ctx, "ex-2-0")
	if err != nil {
		t.Fatal(err)
	}
	h := got.GetRequest().GetHeaders()
	if h[0].GetValue() != sanitize.Redacted || h[1].GetValue() != "application/json" {
		t.Errorf("stored headers = %v, want Authorization redacted and Accept kept", h)
	}
	if r := got.GetRedactions(); len(r) != 1 || r[0].GetLocation() != "request.headers.Authorization" {
		t.Errorf("redactions = %v, want one for request.headers.Authorization", r)
	}
	if got.GetCapture().GetAgentId() != "agent-1" {
		t.Errorf("agent id = %q, want the batch's agent-1", got.GetCapture().GetAgentId())
	}

	// Nothing unsanitized on disk: not in the database, not in its WAL.
	files, err := filepath.Glob(filepath.Join(dir, "reprise.db*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("store files: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("s3cr3t")) {
			t.Errorf("%s contains the unsanitized Authorization value", filepath.Base(f))
		}
	}
}

func TestIngestErrors(t *testing.T) {
	tests := []struct {
		name string
		wrap func(store.Store) store.Store
		req  *reprisev1.IngestRequest
		code codes.Code
	}{
		{
			name: "no batch id",
			req:  &reprisev1.IngestRequest{Exchanges: []*reprisev1.Exchange{exchange("x-1")}},
			code: codes.InvalidArgument,
		},
		{
			name: "exchange without id",
			req:  &reprisev1.IngestRequest{BatchId: "b", Exchanges: []*reprisev1.Exchange{exchange("x-1"), exchange("")}},
			code: codes.InvalidArgument,
		},
		{
			name: "store fails",
			wrap: func(s store.Store) store.Store { return failingStore{s} },
			req:  &reprisev1.IngestRequest{BatchId: "b", Exchanges: []*reprisev1.Exchange{exchange("x-1")}},
			code: codes.Unavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, st, _ := start(t, tt.wrap)
			ctx := context.Background()
			stream, err := client.Ingest(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(tt.req); err != nil {
				t.Fatal(err)
			}
			ack, err := stream.Recv()
			if status.Code(err) != tt.code {
				t.Fatalf("Recv = %v, %v; want no ack and code %v", ack, err, tt.code)
			}
			if _, err := st.Get(ctx, "x-1"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("exchange of a refused batch is stored (Get err %v)", err)
			}
		})
	}
}
