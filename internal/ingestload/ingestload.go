// Package ingestload is the load of the collector's ingest benchmarks:
// copies of a template exchange sent over IngestService in batches, with a
// bounded number unacknowledged per stream, as an agent sends them.
package ingestload

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

const (
	// BatchSize is the exchanges in one batch.
	BatchSize = 500
	// InFlight is the batches a stream keeps unacknowledged.
	InFlight = 4
)

// Batch returns n fresh copies of tmpl starting at start and a microsecond
// apart, with time-ordered UUIDv7 ids as agents give them (the id index
// of the store sees the same order as in production).
func Batch(tmpl *reprisev1.Exchange, n int, start time.Time) []*reprisev1.Exchange {
	out := make([]*reprisev1.Exchange, n)
	for i := range out {
		ex := proto.CloneOf(tmpl)
		ex.Id = uuid.Must(uuid.NewV7()).String()
		ex.StartTime = timestamppb.New(start.Add(time.Duration(i) * time.Microsecond))
		out[i] = ex
	}
	return out
}

// Send streams count copies of tmpl on one Ingest stream, batch ids under
// prefix, and returns once all are acknowledged.
func Send(ctx context.Context, client reprisev1.IngestServiceClient, tmpl *reprisev1.Exchange, prefix string, count int, start time.Time) error {
	stream, err := client.Ingest(ctx)
	if err != nil {
		return err
	}
	batches := (count + BatchSize - 1) / BatchSize
	sem := make(chan struct{}, InFlight)
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
		id := prefix + strconv.Itoa(b)
		at := start.Add(time.Duration(b*BatchSize) * time.Microsecond)
		req := &reprisev1.IngestRequest{BatchId: id, AgentId: "bench", Exchanges: Batch(tmpl, min(BatchSize, count-b*BatchSize), at)}
		if err := stream.Send(req); err != nil {
			return err
		}
	}
	if err := <-acks; err != nil {
		return err
	}
	return stream.CloseSend()
}
