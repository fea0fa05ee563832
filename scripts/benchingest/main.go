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

	"github.com/reprise-dev/reprise/internal/ingestload"
	"github.com/reprise-dev/reprise/internal/sample"
	"github.com/reprise-dev/reprise/internal/wirecodec"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func main() {
	wirecodec.Register()
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
			if err := ingestload.Send(context.Background(), reprisev1.NewIngestServiceClient(conn), tmpl, fmt.Sprint(run, "-", s, "-"), *n / *streams, start); err != nil {
				log.Fatal(err)
			}
		})
	}
	wg.Wait()
	fmt.Printf("%.0f exchanges/s\n", float64(*n / *streams * *streams)/time.Since(start).Seconds())
}
