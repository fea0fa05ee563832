package ingest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/reprise-dev/reprise/collector/ingest"
	"github.com/reprise-dev/reprise/collector/internal/grpctest"
	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/store"
	"github.com/reprise-dev/reprise/collector/store/pgtest"
	"github.com/reprise-dev/reprise/collector/tail"
	"github.com/reprise-dev/reprise/internal/sanitize"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// TestDuplicateBatchAfterReconnect sends a batch, then sends it again on a
// new stream, as an agent does when the connection broke before the ack: it
// is acked both times, stored and published once, and counted as a
// duplicate. With PostgreSQL the second stream goes to another collector
// replica on the same database.
func TestDuplicateBatchAfterReconnect(t *testing.T) {
	opens := map[string]func(t *testing.T) (store.Store, store.Store){
		"sqlite": func(t *testing.T) (store.Store, store.Store) {
			st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "reprise.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st, st
		},
		"postgres": func(t *testing.T) (store.Store, store.Store) {
			url := pgtest.URL(t)
			var sts [2]store.Store
			for i := range sts {
				st, err := store.OpenPostgres(context.Background(), url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				sts[i] = st
			}
			return sts[0], sts[1]
		},
	}
	for name, open := range opens {
		t.Run(name, func(t *testing.T) {
			first, second := open(t)
			ctx := context.Background()
			reg := prometheus.NewRegistry()
			m := metrics.NewPrometheus(reg)
			hub := tail.NewHub()
			all, err := store.NewMatcher(nil)
			if err != nil {
				t.Fatal(err)
			}
			sub := hub.Subscribe(all)
			var clients []reprisev1.IngestServiceClient
			for _, st := range []store.Store{first, second} {
				srv := grpc.NewServer()
				reprisev1.RegisterIngestServiceServer(srv, ingest.New(st, sanitize.Default(), hub, m, ingest.Limits{}))
				clients = append(clients, reprisev1.NewIngestServiceClient(grpctest.Dial(t, srv)))
			}
			req := &reprisev1.IngestRequest{BatchId: "b-1", AgentId: "agent-1"}
			for i := range 3 {
				req.Exchanges = append(req.Exchanges, exchange(fmt.Sprint("ex-", i)))
			}
			var stored []uint32
			for _, c := range clients {
				stream, err := c.Ingest(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := stream.Send(req); err != nil {
					t.Fatal(err)
				}
				ack, err := stream.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if ack.GetBatchId() != "b-1" {
					t.Fatalf("ack for %q, want b-1", ack.GetBatchId())
				}
				stored = append(stored, ack.GetStored())
				stream.CloseSend()
			}
			if stored[0] != 3 || stored[1] != 0 {
				t.Errorf("acks stored %v, want [3 0]", stored)
			}
			if n, err := second.Count(ctx, nil); err != nil || n != 3 {
				t.Errorf("Count = %d, %v; want 3", n, err)
			}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			counts := map[string]float64{}
			for _, mf := range mfs {
				if len(mf.GetMetric()) == 1 && mf.GetMetric()[0].GetCounter() != nil {
					counts[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
				}
			}
			if counts["reprise_collector_duplicate_batches_total"] != 1 || counts["reprise_collector_ingested_batches_total"] != 1 {
				t.Errorf("counters = %v, want one ingested and one duplicate batch", counts)
			}
			for range 3 {
				select {
				case <-sub.C():
				case <-time.After(10 * time.Second):
					t.Fatal("the stored batch was not published to the tail")
				}
			}
			if len(sub.C()) != 0 {
				t.Errorf("tail got %d more exchanges, want the batch once", len(sub.C()))
			}
		})
	}
}
