// Command benchingest is the ingest load of scripts/bench-postgres.sh: the
// load of the collector's BenchmarkIngest (the sample checkout exchange, in
// batches of 500, 4 unacked per stream) sent to running `collector serve`
// processes, with the streams spread over every --target. It prints the
// exchanges per second all collectors acked together.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/internal/sample"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

const (
	batchSize = 500
	inFlight  = 4
)

func main() {
	targets := flag.String("target", "127.0.0.1:7070", "collector gRPC addresses, comma-separated")
	streams := flag.Int("streams", 2, "agents sending at once, spread over the targets")
	n := flag.Int("n", 60000, "exchanges to send in all")
	flag.Parse()
	addrs := strings.Split(*targets, ",")
	tmpl := sample.Checkout()
	run := strconv.FormatInt(time.Now().UnixNano(), 36) // unique ids per run
	start := time.Now()
	var wg sync.WaitGroup
	for s := range *streams {
		conn, err := grpc.NewClient(addrs[s%len(addrs)], grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(32<<20)))
		if err != nil {
			log.Fatal(err)
		}
		defer conn.Close()
		wg.Go(func() {
			if err := send(reprisev1.NewIngestServiceClient(conn), tmpl, fmt.Sprint(run, "-", s, "-"), *n / *streams, start); err != nil {
				log.Fatal(err)
			}
		})
	}
	wg.Wait()
	fmt.Printf("%.0f exchanges/s\n", float64(*n / *streams * *streams)/time.Since(start).Seconds())
}

// send streams count exchanges in batches, at most inFlight unacked.
func send(client reprisev1.IngestServiceClient, tmpl *reprisev1.Exchange, prefix string, count int, start time.Time) error {
	stream, err := client.Ingest(context.Background())
	if err != nil {
		return err
	}
	batches := (count + batchSize - 1) / batchSize
	sem := make(chan struct{}, inFlight)
	acks := make(chan error, 1)
	go func() {
		for range batches {
			if _, err := stream.Recv(); err != nil {
				acks <- err
				return
			}
			<-sem
		}
		acks <- nil
	}()
	for b := range batches {
		select {
		case sem <- struct{}{}:
		case err := <-acks:
			return fmt.Errorf("stream ended early: %w", err)
		}
		req := &reprisev1.IngestRequest{BatchId: fmt.Sprint(prefix, b), AgentId: "bench"}
		for i := range min(batchSize, count-b*batchSize) {
			ex := proto.CloneOf(tmpl)
			ex.Id = fmt.Sprint(prefix, b, "-", i)
			ex.StartTime = timestamppb.New(start.Add(time.Duration(b*batchSize+i) * time.Microsecond))
			req.Exchanges = append(req.Exchanges, ex)
		}
		if err := stream.Send(req); err != nil {
			return err
		}
	}
	if err := <-acks; err != nil {
		return err
	}
	return stream.CloseSend()
}
