// Command benchsink stands in for the collector in scripts/bench-capture.sh:
// an IngestService that counts the exchanges of every batch, acknowledges it
// and discards it. In production the collector runs on other nodes, so the
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

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

type sink struct {
	reprisev1.UnimplementedIngestServiceServer
	exchanges, whole, batches atomic.Int64
}

func (s *sink) Ingest(stream reprisev1.IngestService_IngestServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("receive batch: %w", err)
		}
		var whole int64
		for _, x := range req.Exchanges {
			c := x.GetCapture()
			if x.Response != nil && !c.GetRequestIncomplete() && !c.GetResponseIncomplete() {
				whole++
			}
		}
		s.exchanges.Add(int64(len(req.Exchanges)))
		s.whole.Add(whole)
		s.batches.Add(1)
		ack := &reprisev1.IngestResponse{BatchId: req.BatchId, Stored: uint32(len(req.Exchanges))}
		if err := stream.Send(ack); err != nil {
			return fmt.Errorf("ack batch %s: %w", req.BatchId, err)
		}
	}
}

func main() {
	grpcAddr := flag.String("grpc-listen", "127.0.0.1:17070", "IngestService address")
	httpAddr := flag.String("http-listen", "127.0.0.1:17071", "address of GET /stats and /healthz")
	flag.Parse()
	lis, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		log.Fatalf("listen %s: %v", *grpcAddr, err)
	}
	s := &sink{}
	// The collector accepts batches up to 32 MiB too; gRPC's default is 4 MiB.
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(32 << 20))
	reprisev1.RegisterIngestServiceServer(srv, s)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%d %d %d\n", s.exchanges.Load(), s.whole.Load(), s.batches.Load())
	})
	go func() { log.Fatal(http.ListenAndServe(*httpAddr, mux)) }()
	log.Fatal(srv.Serve(lis))
}
