// Command benchsink stands in for the collector in scripts/bench-capture.sh:
// an IngestService that counts the exchanges of every batch, acknowledges it
// and discards it. It counts by scanning the batch's wire bytes, not by
// unmarshalling it, so that it takes little of the CPU the benchmark
// shares. In production the collector runs on other nodes, so the
// benchmark measures the agent's cost on the traced host, not the
// collector's sanitizing and storage. GET /stats on --http-listen reports
// "exchanges whole batches": whole means request and response both present
// and neither marked incomplete, as the agent counts it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // as a collector does: the agent pays for its compression
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/status"

	"github.com/reprise-dev/reprise/internal/s2compress"
	"github.com/reprise-dev/reprise/internal/wirecodec"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

type sink struct {
	exchanges, whole, batches atomic.Int64
}

// ingest is IngestService.Ingest on raw batches (see rawBatch).
func (s *sink) ingest(_ any, stream grpc.ServerStream) error {
	for {
		var req rawBatch
		err := stream.RecvMsg(&req)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("receive batch: %w", err)
		}
		id, exchanges, whole, err := count(req.buf.ReadOnlyData())
		req.buf.Free()
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "batch: %v", err)
		}
		s.exchanges.Add(exchanges)
		s.whole.Add(whole)
		s.batches.Add(1)
		ack := &reprisev1.IngestResponse{BatchId: id, Stored: uint32(exchanges)}
		if err := stream.SendMsg(ack); err != nil {
			return fmt.Errorf("ack batch %s: %w", id, err)
		}
	}
}

// newServer returns a gRPC server with the sink's IngestService.
func newServer(s *sink) *grpc.Server {
	// The collector accepts batches up to 32 MiB too; gRPC's default is 4 MiB.
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(32<<20), grpc.ForceServerCodecV2(newRawCodec()),
		experimental.BufferPool(wirecodec.Pool()))
	desc := reprisev1.IngestService_ServiceDesc
	desc.HandlerType = (*any)(nil)
	desc.Streams = []grpc.StreamDesc{{StreamName: "Ingest", Handler: s.ingest, ServerStreams: true, ClientStreams: true}}
	srv.RegisterService(&desc, s)
	return srv
}

func main() {
	wirecodec.Register()
	s2compress.Register() // as a collector does
	grpcAddr := flag.String("grpc-listen", "127.0.0.1:17070", "IngestService address")
	httpAddr := flag.String("http-listen", "127.0.0.1:17071", "address of GET /stats and /healthz")
	flag.Parse()
	lis, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		log.Fatalf("listen %s: %v", *grpcAddr, err)
	}
	s := &sink{}
	srv := newServer(s)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%d %d %d\n", s.exchanges.Load(), s.whole.Load(), s.batches.Load())
	})
	go func() { log.Fatal(http.ListenAndServe(*httpAddr, mux)) }()
	log.Fatal(srv.Serve(lis))
}
