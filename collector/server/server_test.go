package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/store"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// startGRPC serves the collector's gRPC services with cfg on a loopback
// port, over a fresh SQLite store, until the test ends.
func startGRPC(t *testing.T, cfg Config) (string, store.Store) {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "reprise.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := NewGRPC(st, metrics.Nop{}, cfg)
	lis := listen(t)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), st
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestServe runs the whole collector on real ports: ingest one batch, see it
// in the metrics, check reflection and health, then shut down.
func TestServe(t *testing.T) {
	st, err := OpenStore(filepath.Join(t.TempDir(), "data", "reprise.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	grpcLis, httpLis := listen(t), listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, grpcLis, httpLis, st, Config{}) }()

	conn, err := grpc.NewClient(grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := reprisev1.NewIngestServiceClient(conn).Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = stream.Send(&reprisev1.IngestRequest{BatchId: "b1", Exchanges: []*reprisev1.Exchange{{
		Id:      "e1",
		Request: &reprisev1.HttpRequest{Headers: []*reprisev1.Header{{Name: "Cookie", Value: "sid=1"}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := stream.Recv(); err != nil || ack.GetBatchId() != "b1" {
		t.Fatalf("ack %v, %v", ack, err)
	}

	refl, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := refl.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var services []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	for _, want := range []string{"reprise.v1.IngestService", "reprise.v1.QueryService"} {
		if !strings.Contains(strings.Join(services, " "), want) {
			t.Errorf("reflection lists %v, want %s", services, want)
		}
	}

	base := "http://" + httpLis.Addr().String()
	tests := []struct {
		path string
		want []string
	}{
		{"/healthz", []string{"ok"}},
		{"/readyz", []string{"ok"}},
		{"/metrics", []string{
			"reprise_collector_ingested_batches_total 1",
			"reprise_collector_ingested_exchanges_total 1",
			"reprise_collector_redactions_total 1",
			"reprise_collector_rejected_batches_total 0",
			`reprise_collector_store_errors_total{op="put"} 0`,
			"reprise_collector_pruned_exchanges_total 0",
			`reprise_collector_sanitize_matches_total{rule="`,
		}},
	}
	for _, tt := range tests {
		code, body := get(t, base+tt.path)
		for _, w := range tt.want {
			if code != http.StatusOK || !strings.Contains(body, w) {
				t.Errorf("GET %s = %d, want 200 with %q; body:\n%s", tt.path, code, w, body)
			}
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after shutdown: %v", err)
		}
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatal("Serve did not return after shutdown")
	}
}

func TestReadyzStoreDown(t *testing.T) {
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "reprise.db"))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	lis := listen(t)
	srv := &http.Server{Handler: NewHTTP(st, nil)}
	go srv.Serve(lis)
	defer srv.Close()
	if code, _ := get(t, "http://"+lis.Addr().String()+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with a closed store = %d, want 503", code)
	}
}

// TestOpenStorePostgres checks that a postgres:// spec goes to PostgreSQL
// (the store's tests open a real one) and that a failure does not print the
// password of the URL.
func TestOpenStorePostgres(t *testing.T) {
	for _, spec := range []string{
		"postgres://reprise:hunter2@127.0.0.1:1/reprise?connect_timeout=5",
		"postgresql://reprise:hunter2@127.0.0.1:1/reprise?connect_timeout=5",
		"postgres://reprise:hunter2@127.0.0.1:1/reprise?pool_max_conns=x",
	} {
		_, err := OpenStore(spec)
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "store") {
			t.Errorf("OpenStore(unreachable PostgreSQL) error = %v, want a store error without the password", err)
		}
	}
}

func TestRetentionRunsInBackground(t *testing.T) {
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "reprise.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	now := time.Now()
	exs := []*reprisev1.Exchange{
		{Id: "old", StartTime: timestamppb.New(now.Add(-48 * time.Hour))},
		{Id: "new", StartTime: timestamppb.New(now)},
	}
	if err := st.Put(ctx, exs); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		RunRetention(ctx, st, store.Retention{MaxAge: 24 * time.Hour}, 10*time.Millisecond, metrics.Nop{})
		close(done)
	}()
	for {
		if _, err := st.Get(ctx, "old"); errors.Is(err, store.ErrNotFound) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("retention did not delete the old exchange")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if _, err := st.Get(ctx, "new"); err != nil {
		t.Errorf("retention deleted a recent exchange: %v", err)
	}
	cancel()
	<-done
}
