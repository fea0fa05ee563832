// Package ingest implements IngestService: agents stream batches, the
// collector sanitizes and stores each one, and acks it once it is durable.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/store"
	"github.com/reprise-dev/reprise/collector/tail"
	"github.com/reprise-dev/reprise/internal/sanitize"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Service implements reprisev1.IngestServiceServer.
//
// An invalid batch (no batch_id, or an exchange without an id) ends the
// stream with InvalidArgument and nothing of it is stored: it is an agent
// bug, and failing loudly beats silently dropping traffic. Agents must not
// retry a batch refused with InvalidArgument.
type Service struct {
	reprisev1.UnimplementedIngestServiceServer
	store     store.Store
	sanitizer *sanitize.Sanitizer
	hub       *tail.Hub
	metrics   metrics.Metrics
	log       *slog.Logger
}

// New returns the ingest service writing to st and publishing each
// committed batch to hub.
func New(st store.Store, sanitizer *sanitize.Sanitizer, hub *tail.Hub, m metrics.Metrics) *Service {
	return &Service{store: st, sanitizer: sanitizer, hub: hub, metrics: m, log: slog.With("component", "ingest")}
}

// Ingest implements reprisev1.IngestServiceServer.
func (s *Service) Ingest(stream reprisev1.IngestService_IngestServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		stored, err := s.ingest(ctx, req)
		if err != nil {
			return err
		}
		if err := stream.Send(&reprisev1.IngestResponse{
			BatchId: req.GetBatchId(),
			Stored:  uint32(stored),
			Dropped: uint32(len(req.GetExchanges()) - stored),
		}); err != nil {
			return err
		}
	}
}

// ingest sanitizes and commits one batch and returns how many exchanges it
// stored (the others were dropped by a sanitize rule); errors are status errors.
func (s *Service) ingest(ctx context.Context, req *reprisev1.IngestRequest) (stored int, err error) {
	if err := validate(req); err != nil {
		s.metrics.BatchRejected()
		s.log.Warn("batch rejected", "batch_id", req.GetBatchId(), "agent_id", req.GetAgentId(), "err", err)
		return 0, status.Error(codes.InvalidArgument, err.Error())
	}
	redactions := 0
	kept := make([]*reprisev1.Exchange, 0, len(req.GetExchanges()))
	for _, ex := range req.GetExchanges() {
		before := len(ex.GetRedactions())
		keep := s.sanitizer.Sanitize(ex)
		redactions += len(ex.GetRedactions()) - before
		if !keep {
			continue // a drop rule matched: the exchange must not be stored
		}
		// The agent filter needs an agent on every exchange; the batch knows it.
		if ex.GetCapture().GetAgentId() == "" && req.GetAgentId() != "" {
			if ex.Capture == nil {
				ex.Capture = &reprisev1.Capture{}
			}
			ex.Capture.AgentId = req.GetAgentId()
		}
		kept = append(kept, ex)
	}
	if err := s.store.Put(ctx, kept); err != nil {
		if ctx.Err() != nil {
			return 0, status.FromContextError(ctx.Err()).Err()
		}
		s.metrics.StoreError("put")
		s.log.Error("store batch", "batch_id", req.GetBatchId(), "agent_id", req.GetAgentId(), "exchanges", len(req.GetExchanges()), "err", err)
		// Unavailable: the batch is not acked, so the agent resends it later.
		return 0, status.Errorf(codes.Unavailable, "store batch %s: %v", req.GetBatchId(), err)
	}
	s.hub.Publish(kept)
	s.metrics.BatchIngested(len(kept), redactions)
	s.log.Debug("batch stored", "batch_id", req.GetBatchId(), "agent_id", req.GetAgentId(), "exchanges", len(kept))
	return len(kept), nil
}

func validate(req *reprisev1.IngestRequest) error {
	if req.GetBatchId() == "" {
		return errors.New("batch_id must not be empty")
	}
	for i, ex := range req.GetExchanges() {
		if ex.GetId() == "" {
			return fmt.Errorf("batch %s: exchanges[%d].id must not be empty", req.GetBatchId(), i)
		}
	}
	return nil
}
