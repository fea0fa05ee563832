package ingest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"

	"github.com/reprise-dev/reprise/collector/ingest"
	"github.com/reprise-dev/reprise/collector/internal/grpctest"
	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/store"
	"github.com/reprise-dev/reprise/collector/tail"
	"github.com/reprise-dev/reprise/internal/sanitize"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// TestDropRuleIsNotStored checks that an exchange a drop rule matches is
// acked as dropped, never written, and never shown to a tail.
func TestDropRuleIsNotStored(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte("deny:\n  - name: drop-admin\n    keys: [admin_secret]\n    action: drop\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	san, err := sanitize.Load(rules, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(filepath.Join(dir, "reprise.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := store.NewMatcher(nil)
	if err != nil {
		t.Fatal(err)
	}
	hub := tail.NewHub()
	sub := hub.Subscribe(m)
	srv := grpc.NewServer()
	reprisev1.RegisterIngestServiceServer(srv, ingest.New(st, san, hub, metrics.Nop{}, ingest.Limits{}))
	client := reprisev1.NewIngestServiceClient(grpctest.Dial(t, srv))

	kept, dropped := exchange("kept"), exchange("dropped")
	dropped.Request.Target = "/admin?admin_secret=hunter2hunter2"
	stream, err := client.Ingest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reprisev1.IngestRequest{BatchId: "b", Exchanges: []*reprisev1.Exchange{kept, dropped}}); err != nil {
		t.Fatal(err)
	}
	ack, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if ack.GetStored() != 1 || ack.GetDropped() != 1 {
		t.Errorf("ack stored %d dropped %d, want 1 and 1", ack.GetStored(), ack.GetDropped())
	}
	if _, err := st.Get(context.Background(), "dropped"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("dropped exchange in the store: %v", err)
	}
	if _, err := st.Get(context.Background(), "kept"); err != nil {
		t.Errorf("kept exchange: %v", err)
	}
	if got := (<-sub.C()).GetId(); got != "kept" || len(sub.C()) != 0 {
		t.Errorf("tail got %s then %d more, want only kept", got, len(sub.C()))
	}
}
