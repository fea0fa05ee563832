package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/collector/metrics"
	queryservice "github.com/reprise-dev/reprise/collector/query"
	"github.com/reprise-dev/reprise/collector/server"
	"github.com/reprise-dev/reprise/collector/store"
	"github.com/reprise-dev/reprise/collector/tail"
	"github.com/reprise-dev/reprise/internal/exchfile"
	"github.com/reprise-dev/reprise/internal/grpcclient"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("collector %v: exit %d, stderr: %s", args, code, stderr.String())
	}
	return stdout.String()
}

func TestCount(t *testing.T) {
	addr := startCollector(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "3"},
		{[]string{"--method", "post"}, "1"},
		{[]string{"--status", "2xx", "--path-glob", "/it*"}, "3"},
		{[]string{"--status", "5xx"}, "0"},
	} {
		got := runOK(t, append([]string{"query", "--addr", addr, "--count"}, tt.args...)...)
		if strings.TrimSpace(got) != tt.want {
			t.Errorf("query --count %v = %q, want %s", tt.args, got, tt.want)
		}
	}
}

func TestStatsCommand(t *testing.T) {
	addr := startCollector(t)
	out := runOK(t, "stats", "--addr", addr)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// Header, then GET and POST on /items, ordered by method.
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "SERVICE") ||
		!strings.Contains(lines[1], "GET") || !strings.Contains(lines[1], "/items") || !strings.Contains(lines[2], "POST") {
		t.Errorf("stats output:\n%s", out)
	}
}

// TestExportImport exports from one collector in both formats and imports
// each file into an empty collector through its ingest path.
func TestExportImport(t *testing.T) {
	from := startCollector(t)
	for _, format := range []string{"har", "jsonl"} {
		t.Run(format, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "traffic."+format)
			runOK(t, "export", "--addr", from, "--out", out)
			n := 0
			for ex, err := range exchfile.ReadFile(out) {
				if err != nil {
					t.Fatal(err)
				}
				if string(ex.GetRequest().GetBody()) != "line1\nline2" {
					t.Errorf("exported body %q", ex.GetRequest().GetBody())
				}
				n++
			}
			if n != 3 {
				t.Fatalf("exported %d exchanges, want 3", n)
			}

			to := startEmpty(t)
			msg := runOK(t, "import", "--addr", to, out)
			if !strings.Contains(msg, "3 stored") {
				t.Errorf("import said %q", msg)
			}
			if got := strings.TrimSpace(runOK(t, "query", "--addr", to, "--count", "--method", "POST")); got != "1" {
				t.Errorf("imported POSTs: %s, want 1", got)
			}
			// Same ids: importing again stores nothing new.
			runOK(t, "import", "--addr", to, out)
			if got := strings.TrimSpace(runOK(t, "query", "--addr", to, "--count")); got != "3" {
				t.Errorf("after a second import: %s exchanges, want 3", got)
			}
		})
	}
}

func startEmpty(t *testing.T) string {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "reprise.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.NewGRPC(st, metrics.Nop{}, server.Config{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestLargeExchangesRoundTrip checks that the CLI reads back what the
// collector accepts: an exchange with a 5 MB header (over gRPC's 4 MiB
// default) goes through query and export, and an export of 48 MiB of bodies
// imports in batches under the message limit.
func TestLargeExchangesRoundTrip(t *testing.T) {
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "reprise.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now()
	exs := []*reprisev1.Exchange{{
		Id:        "big-header",
		StartTime: timestamppb.New(now.Add(-time.Minute)),
		Request: &reprisev1.HttpRequest{Method: "GET", Target: "/h", Headers: []*reprisev1.Header{
			{Name: "X-Big", Value: strings.Repeat("x", 5_000_000)}}},
		Response: &reprisev1.HttpResponse{StatusCode: 200},
	}}
	body := bytes.Repeat([]byte("b"), 2<<20)
	for i := range 24 {
		exs = append(exs, &reprisev1.Exchange{
			Id:        fmt.Sprintf("big-body-%02d", i),
			StartTime: timestamppb.New(now.Add(time.Duration(i-30) * time.Second)),
			Request:   &reprisev1.HttpRequest{Method: "POST", Target: "/b", Body: body, BodySize: int64(len(body))},
			Response:  &reprisev1.HttpResponse{StatusCode: 201},
		})
	}
	if err := st.Put(context.Background(), exs); err != nil {
		t.Fatal(err)
	}
	from := serveGRPC(t, func(srv *grpc.Server) {
		reprisev1.RegisterQueryServiceServer(srv, queryservice.New(st, tail.NewHub(), metrics.Nop{}))
	})

	out := runOK(t, "query", "--addr", from, "--path-prefix", "/h")
	if !strings.Contains(out, `"big-header"`) || len(out) < 5_000_000 {
		t.Errorf("query printed %d bytes, want the exchange with its 5 MB header", len(out))
	}
	file := filepath.Join(t.TempDir(), "big.jsonl")
	runOK(t, "export", "--addr", from, "--out", file)
	n := 0
	for ex, err := range exchfile.ReadFile(file) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if ex.GetId() == "big-header" && len(ex.GetRequest().GetHeaders()[0].GetValue()) != 5_000_000 {
			t.Errorf("exported header of %d bytes, want 5000000", len(ex.GetRequest().GetHeaders()[0].GetValue()))
		}
	}
	if n != len(exs) {
		t.Fatalf("exported %d exchanges, want %d", n, len(exs))
	}
	// Import into a sink that acks what it gets, as the collector's ingest
	// does, without the sanitizer's time over 48 MiB.
	sink := &ackSink{}
	to := serveGRPC(t, func(srv *grpc.Server) { reprisev1.RegisterIngestServiceServer(srv, sink) })
	if msg := runOK(t, "import", "--addr", to, file); !strings.Contains(msg, fmt.Sprintf("%d stored", len(exs))) {
		t.Errorf("import said %q, want all %d stored", msg, len(exs))
	}
	if sink.batches < 2 {
		t.Errorf("import sent %d batches, want the 53 MB split by bytes", sink.batches)
	}
}

// ackSink acks every batch as stored and counts them.
type ackSink struct {
	reprisev1.UnimplementedIngestServiceServer
	batches int
}

func (s *ackSink) Ingest(stream reprisev1.IngestService_IngestServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		s.batches++
		if err := stream.Send(&reprisev1.IngestResponse{BatchId: req.GetBatchId(), Stored: uint32(len(req.GetExchanges()))}); err != nil {
			return err
		}
	}
}

// serveGRPC serves what register adds on a loopback port, with the
// collector's message limit, and returns the address.
func serveGRPC(t *testing.T, register func(*grpc.Server)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(grpcclient.MaxMessageBytes), grpc.MaxSendMsgSize(grpcclient.MaxMessageBytes))
	register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}
