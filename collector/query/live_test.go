package query_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/collector/internal/grpctest"
	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/server"
	"github.com/reprise-dev/reprise/collector/store"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// startFull serves ingest and query over one store, as the collector does.
func startFull(t *testing.T) (reprisev1.IngestServiceClient, reprisev1.QueryServiceClient) {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "reprise.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	conn := grpctest.Dial(t, server.NewGRPC(st, metrics.Nop{}, server.Config{}))
	return reprisev1.NewIngestServiceClient(conn), reprisev1.NewQueryServiceClient(conn)
}

func ingest(t *testing.T, ctx context.Context, c reprisev1.IngestServiceClient, batch string, exs ...*reprisev1.Exchange) {
	t.Helper()
	s, err := c.Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&reprisev1.IngestRequest{BatchId: batch, Exchanges: exs}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	s.CloseSend()
}

func ex(id, target string, status int32) *reprisev1.Exchange {
	return &reprisev1.Exchange{
		Id: id, StartTime: timestamppb.New(t0), Service: "orders",
		Request:  &reprisev1.HttpRequest{Method: "GET", Target: target},
		Response: &reprisev1.HttpResponse{StatusCode: status},
	}
}

func TestTailFollowsIngest(t *testing.T) {
	in, q := startFull(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Stored before the tail starts: not part of it.
	ingest(t, ctx, in, "before", ex("old", "/orders/1", 500))
	tail, err := q.Tail(ctx, &reprisev1.TailRequest{Filter: &reprisev1.ExchangeFilter{StatusClass: 5, PathGlob: "/orders/*"}})
	if err != nil {
		t.Fatal(err)
	}
	// The client cannot tell when the server has subscribed, so batches go
	// in until two matches arrive.
	var got []string
	deadline := time.After(10 * time.Second)
	recv := make(chan string)
	go func() {
		for {
			resp, err := tail.Recv()
			if err != nil {
				close(recv)
				return
			}
			recv <- resp.GetExchange().GetId()
		}
	}()
	for i := 0; len(got) < 2; i++ {
		ingest(t, ctx, in, fmt.Sprint("b", i),
			ex(fmt.Sprint("ok-", i), "/orders/2", 200),
			ex(fmt.Sprint("other-", i), "/users/2", 503),
			ex(fmt.Sprint("hit-", i), "/orders/3", 502))
		select {
		case id := <-recv:
			got = append(got, id)
		case <-time.After(200 * time.Millisecond):
			continue
		case <-deadline:
			t.Fatalf("tail got %v, want hit-N exchanges", got)
		}
	}
	for _, id := range got {
		if id[:4] != "hit-" {
			t.Errorf("tail delivered %s, which the filter excludes", id)
		}
	}
	cancel()
}

func TestCountStatsServices(t *testing.T) {
	in, q := startFull(t)
	ctx := context.Background()
	ingest(t, ctx, in, "b", ex("1", "/orders/1", 200), ex("2", "/orders/2?x=1", 500), ex("3", "/health", 200))
	n, err := q.CountExchanges(ctx, &reprisev1.CountExchangesRequest{Filter: &reprisev1.ExchangeFilter{PathPrefix: "/orders"}})
	if err != nil || n.GetCount() != 2 {
		t.Errorf("CountExchanges = %v, %v; want 2", n, err)
	}
	st, err := q.GetStats(ctx, &reprisev1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.GetEndpoints()) != 2 || st.GetEndpoints()[1].GetEndpoint() != "/orders/{id}" ||
		st.GetEndpoints()[1].GetStats().GetCount() != 2 || st.GetEndpoints()[1].GetStats().GetErrorRate() != 0.5 {
		t.Errorf("GetStats = %v", st)
	}
	svcs, err := q.ListServices(ctx, &reprisev1.ListServicesRequest{})
	if err != nil || len(svcs.GetServices()) != 1 || svcs.GetServices()[0].GetStats().GetCount() != 3 {
		t.Errorf("ListServices = %v, %v", svcs, err)
	}
}

func TestStreamCursorResumes(t *testing.T) {
	client := start(t, 300)
	ctx := context.Background()
	s, err := client.StreamExchanges(ctx, &reprisev1.StreamExchangesRequest{Limit: 120})
	if err != nil {
		t.Fatal(err)
	}
	var last string
	n := 0
	for {
		resp, err := s.Recv()
		if err != nil {
			break
		}
		last, n = resp.GetCursor(), n+1
	}
	rest, err := stream(ctx, client, &reprisev1.StreamExchangesRequest{AfterCursor: last})
	if err != nil {
		t.Fatal(err)
	}
	if n != 120 || len(rest) != 180 || rest[0] != "ex-0120" {
		t.Errorf("first stream %d, resumed stream %d starting %v; want 120 then 180 from ex-0120", n, len(rest), rest[:1])
	}
}
