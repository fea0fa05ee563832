package export

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// fakeCollector acks every batch after recording it; failFirst makes the
// first stream break after receiving one batch without acking it.
type fakeCollector struct {
	reprisev1.UnimplementedIngestServiceServer
	mu        sync.Mutex
	ids       map[string]int // exchange id -> times received
	failFirst bool
	streams   int
}

func (f *fakeCollector) Ingest(stream reprisev1.IngestService_IngestServer) error {
	f.mu.Lock()
	f.streams++
	fail := f.failFirst && f.streams == 1
	f.mu.Unlock()
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		f.mu.Lock()
		for _, ex := range req.Exchanges {
			f.ids[ex.Id]++
		}
		f.mu.Unlock()
		if fail {
			return status.Error(codes.Unavailable, "store down")
		}
		if err := stream.Send(&reprisev1.IngestResponse{BatchId: req.BatchId, Stored: uint32(len(req.Exchanges))}); err != nil {
			return err
		}
	}
}

func (f *fakeCollector) received() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.ids))
	for k, v := range f.ids {
		out[k] = v
	}
	return out
}

func dial(t *testing.T, srv reprisev1.IngestServiceServer) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer()
	reprisev1.RegisterIngestServiceServer(s, srv)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func exchanges(n int) []*reprisev1.Exchange {
	out := make([]*reprisev1.Exchange, n)
	for i := range out {
		out[i] = &reprisev1.Exchange{Id: fmt.Sprintf("ex-%d", i)}
	}
	return out
}

func TestDeliversEverythingBeforeReturning(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failFirst bool
	}{
		{"healthy collector", false},
		{"first stream breaks before ack", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := &fakeCollector{ids: map[string]int{}, failFirst: tc.failFirst}
			// Acked must come once per exchange, after the collector has it.
			var ackMu sync.Mutex
			acked := map[string]int{}
			onAck := func(ex *reprisev1.Exchange) {
				ackMu.Lock()
				defer ackMu.Unlock()
				if fc.received()[ex.Id] == 0 {
					t.Errorf("%s reported acked before the collector had it", ex.Id)
				}
				acked[ex.Id]++
			}
			e := New(dial(t, fc), Config{AgentID: "node-1", Hostname: "h", BatchSize: 7, Backoff: 10 * time.Millisecond, Acked: onAck})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx) }()
			for _, ex := range exchanges(100) {
				e.Add(ex)
			}
			e.Close()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
			got := fc.received()
			if len(got) != 100 {
				t.Fatalf("collector has %d distinct exchanges, want 100", len(got))
			}
			st := e.Stats()
			if st.Acked != 100 || st.Dropped != 0 {
				t.Fatalf("stats = %+v, want 100 acked, 0 dropped", st)
			}
			if tc.failFirst && st.Retries == 0 {
				t.Fatalf("expected a retry after the broken stream, stats %+v", st)
			}
			for _, ex := range exchanges(100) {
				if acked[ex.Id] != 1 {
					t.Errorf("%s reported acked %d times, want once", ex.Id, acked[ex.Id])
				}
			}
		})
	}
}

func TestFillsAgentIdentity(t *testing.T) {
	fc := &fakeCollector{ids: map[string]int{}}
	var got *reprisev1.Exchange
	e := New(dial(t, fc), Config{AgentID: "node-7", Hostname: "host-7"})
	ex := &reprisev1.Exchange{Id: "a"}
	e.Add(ex)
	e.Close()
	if err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got = ex
	if got.Capture.GetAgentId() != "node-7" || got.Capture.GetHostname() != "host-7" {
		t.Fatalf("capture = %v", got.Capture)
	}
}

func TestBacklogIsBoundedWhenCollectorIsDown(t *testing.T) {
	// No server behind the address: every stream fails.
	conn, err := grpc.NewClient("passthrough:///unused",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return nil, fmt.Errorf("collector down") }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	e := New(conn, Config{MaxPending: 10, Backoff: time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	for _, ex := range exchanges(25) {
		e.Add(ex)
	}
	if err := <-done; err == nil {
		t.Fatal("Run returned nil with the collector down")
	}
	// The 15 oldest made room while the collector was down; the 10 left
	// were counted as dropped at shutdown.
	st := e.Stats()
	if st.Drops[DropBacklogFull] != 15 || st.Drops[DropShutdown] != 10 || st.Dropped != 25 || e.Pending() != 0 {
		t.Fatalf("drops %v, pending %d; want 15 backlog_full, 10 shutdown, none pending", st.Drops, e.Pending())
	}
}

func TestBacklogIsBoundedByBytes(t *testing.T) {
	conn, err := grpc.NewClient("passthrough:///unused",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return nil, fmt.Errorf("collector down") }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := make([]byte, 64<<10)
	// Room for three exchanges with a 64 KiB body, whatever MaxPending says.
	e := New(conn, Config{MaxPending: 1000, MaxPendingBytes: 3 * (64<<10 + exchangeOverhead), Backoff: time.Millisecond})
	for i := range 10 {
		e.Add(&reprisev1.Exchange{Id: fmt.Sprint(i), Request: &reprisev1.HttpRequest{Body: body}})
	}
	if st := e.Stats(); st.Drops[DropBacklogFull] != 7 || e.Pending() != 3 || e.PendingBytes() != 3*(64<<10+exchangeOverhead) {
		t.Fatalf("dropped %d pending %d (%d bytes), want 7 dropped, 3 pending", st.Dropped, e.Pending(), e.PendingBytes())
	}
}

func TestBatchesAreBoundedByBytes(t *testing.T) {
	fc := &batchCounter{}
	e := New(dial(t, fc), Config{BatchSize: 100, BatchBytes: 2 * (16<<10 + exchangeOverhead)})
	for i := range 10 {
		e.Add(&reprisev1.Exchange{Id: fmt.Sprint(i), Response: &reprisev1.HttpResponse{Body: make([]byte, 16<<10)}})
	}
	e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if fc.batches.Load() != 5 || e.PendingBytes() != 0 || e.Stats().Acked != 10 {
		t.Fatalf("%d batches, %d bytes pending, %+v; want 5 batches of 2, nothing pending", fc.batches.Load(), e.PendingBytes(), e.Stats())
	}
}

// batchCounter acks every batch and counts them.
type batchCounter struct {
	reprisev1.UnimplementedIngestServiceServer
	batches atomic.Int64
}

func (b *batchCounter) Ingest(stream reprisev1.IngestService_IngestServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		b.batches.Add(1)
		if err := stream.Send(&reprisev1.IngestResponse{BatchId: req.BatchId}); err != nil {
			return err
		}
	}
}
