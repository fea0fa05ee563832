// Package ingest implements IngestService: agents stream batches, the
// collector sanitizes and stores each one, and acks it once it is durable.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/reprise-dev/reprise/collector/auth"
	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/store"
	"github.com/reprise-dev/reprise/collector/tail"
	"github.com/reprise-dev/reprise/internal/sanitize"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Service implements reprisev1.IngestServiceServer.
//
// A batch whose batch_id was committed before (resent after a lost ack,
// maybe to another replica) is acked with stored=0 and not stored again.
//
// An invalid batch (no batch_id, or an exchange without an id) ends the
// stream with InvalidArgument and nothing of it is stored: it is an agent
// bug, and failing loudly beats silently dropping traffic. Agents must not
// retry a batch refused with InvalidArgument.
type Service struct {
	reprisev1.UnimplementedIngestServiceServer
	store      store.Store
	sanitizer  *sanitize.Sanitizer
	hub        *tail.Hub
	metrics    metrics.Metrics
	log        *slog.Logger
	limits     Limits
	memory     *semaphore.Weighted // of wireMemory: messages and what replaces them
	decoding   *semaphore.Weighted // of limits.BatchDecoded: decoded bodies
	wireMemory int64               // limits.Memory less the decode room
	reserved   reservations        // taken by Codec, not yet claimed
	streams    streams
}

// New returns the ingest service writing to st and publishing each
// committed batch to hub, within the limits (see Limits.Check).
func New(st store.Store, sanitizer *sanitize.Sanitizer, hub *tail.Hub, m metrics.Metrics, limits Limits) *Service {
	limits = limits.withDefaults()
	wire := max(limits.Memory-limits.BatchDecoded, 1)
	return &Service{store: st, sanitizer: sanitizer, hub: hub, metrics: m, log: slog.With("component", "ingest"),
		limits: limits, wireMemory: wire, memory: semaphore.NewWeighted(wire), decoding: semaphore.NewWeighted(limits.BatchDecoded)}
}

// maxInFlight is how many batches of one stream are sanitized or committed
// at once: an agent keeps several unacked, and working on them together lets
// the next batches sanitize while one commits and lets the store fold them
// into one transaction. It also bounds the memory a stream can hold.
const maxInFlight = 4

// minChunk is the fewest exchanges worth a goroutine of their own.
const minChunk = 32

// batch is one received batch on its way to its ack.
type batch struct {
	req        *reprisev1.IngestRequest
	kept       []*reprisev1.Exchange
	redactions int
	duplicate  bool       // committed before: acked, not stored again
	done       chan error // buffered; a status error, nil once committed
	held       int64      // bytes of Service.memory it holds
	decode     int64      // bytes of Service.decoding it holds
}

// Ingest implements reprisev1.IngestServiceServer. Batches are processed
// concurrently, but each is acked only after its own commit, in the order
// they came.
func (s *Service) Ingest(stream reprisev1.IngestService_IngestServer) error {
	agent := auth.Agent(stream.Context())
	if reason, err := s.streams.acquire(s.limits, agent); err != nil {
		s.metrics.IngestLimited(reason)
		return err
	}
	defer s.streams.release(agent)
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel() // stops the receiver and the batches still in flight
	// A stream that sends nothing for the idle time is closed: it holds a
	// connection's stream and goroutines for nothing.
	var idle atomic.Bool
	idleTimer := time.AfterFunc(s.limits.Idle, func() { idle.Store(true); cancel() })
	defer idleTimer.Stop()
	// The queue holds the batches in arrival order; with the one awaiting
	// its ack it bounds the batches in flight.
	queue := make(chan *batch, maxInFlight-1)
	recvErr := make(chan error, 1)
	go func() {
		defer close(queue)
		for {
			req, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					recvErr <- err
				}
				return
			}
			idleTimer.Reset(s.limits.Idle)
			b := &batch{req: req, done: make(chan error, 1), held: s.reserved.claim(req)}
			invalid := s.reject(req)
			if invalid != nil {
				s.memory.Release(b.held)
				b.held = 0
				b.done <- invalid
			} else if err := s.admit(ctx, b); err != nil {
				return
			}
			select {
			case queue <- b:
			case <-ctx.Done():
				s.release(b)
				return
			}
			if invalid != nil {
				return // the earlier batches are still acked, then the stream ends
			}
			// Started once queued, so at most maxInFlight batches are in work.
			go func() { b.done <- s.process(ctx, b) }()
		}
	}()
	// Whatever is still queued when the stream ends gives its memory back
	// once its work has stopped.
	defer func() {
		go func() {
			for b := range queue {
				<-b.done
				s.release(b)
			}
		}()
	}()
	for {
		var b *batch
		select {
		case b = <-queue:
		case <-ctx.Done():
		}
		if b == nil {
			break
		}
		err := s.ack(stream, b)
		s.release(b)
		if err != nil {
			return err
		}
		idleTimer.Reset(s.limits.Idle)
	}
	if idle.Load() {
		s.metrics.IngestLimited("idle")
		return status.Errorf(codes.Unavailable, "ingest stream idle for %s; open a new one when there is something to send", s.limits.Idle)
	}
	select {
	case err := <-recvErr:
		return err
	default:
		return status.FromContextError(ctx.Err()).Err() // nil after the sender's EOF
	}
}

// admit makes the batch hold its share of the ingest memory: for its
// message, what Codec took for it (or, decoded by another codec, that much
// taken now), then its decode room. It fails only when ctx ends.
func (s *Service) admit(ctx context.Context, b *batch) error {
	if b.held == 0 {
		n := min(wireCost(b.req.SizeVT()), s.wireMemory)
		if err := s.memory.Acquire(ctx, n); err != nil {
			return err
		}
		b.held = n
	}
	decode := s.limits.decodeCost(b.req)
	if err := s.decoding.Acquire(ctx, decode); err != nil {
		s.release(b)
		return err
	}
	b.decode = decode
	return nil
}

// release gives back what the batch holds.
func (s *Service) release(b *batch) {
	s.memory.Release(b.held)
	s.decoding.Release(b.decode)
	b.held, b.decode = 0, 0
}

// ack sends the batch's ack once it is committed, then publishes it.
func (s *Service) ack(stream reprisev1.IngestService_IngestServer, b *batch) error {
	if err := <-b.done; err != nil {
		return err
	}
	stored := len(b.kept)
	if b.duplicate {
		stored = 0
	}
	if err := stream.Send(&reprisev1.IngestResponse{
		BatchId: b.req.GetBatchId(),
		Stored:  uint32(stored),
		Dropped: uint32(len(b.req.GetExchanges()) - len(b.kept)),
	}); err != nil {
		return err
	}
	if b.duplicate {
		// Already published and counted when it was first committed.
		s.metrics.BatchDuplicate()
		s.log.Debug("duplicate batch", "batch_id", b.req.GetBatchId(), "agent_id", b.req.GetAgentId())
		return nil
	}
	// Published in stream order, after the commit, as a tail expects.
	s.hub.Publish(b.kept)
	s.metrics.BatchIngested(len(b.kept), b.redactions)
	s.log.Debug("batch stored", "batch_id", b.req.GetBatchId(), "agent_id", b.req.GetAgentId(), "exchanges", len(b.kept))
	return nil
}

// reject returns the InvalidArgument status of an invalid batch, else nil.
func (s *Service) reject(req *reprisev1.IngestRequest) error {
	err := validate(req)
	if err == nil {
		return nil
	}
	s.metrics.BatchRejected()
	s.log.Warn("batch rejected", "batch_id", req.GetBatchId(), "agent_id", req.GetAgentId(), "err", err)
	return status.Error(codes.InvalidArgument, err.Error())
}

// process sanitizes and commits one valid batch; errors are status errors.
func (s *Service) process(ctx context.Context, b *batch) error {
	req := b.req
	budget := &decodeBudget{}
	budget.left.Store(b.decode)
	b.kept, b.redactions = s.sanitize(req, budget)
	// Only what the sanitized batch keeps stays held until its ack.
	unused := budget.left.Load()
	s.decoding.Release(unused)
	b.decode -= unused
	var err error
	b.duplicate, err = s.store.PutBatch(ctx, store.Batch{ID: req.GetBatchId(), AgentID: req.GetAgentId(), Exchanges: b.kept})
	if err != nil {
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		s.metrics.StoreError("put")
		s.log.Error("store batch", "batch_id", req.GetBatchId(), "agent_id", req.GetAgentId(), "exchanges", len(req.GetExchanges()), "err", err)
		// Unavailable: the batch is not acked, so the agent resends it later.
		return status.Errorf(codes.Unavailable, "store batch %s: %v", req.GetBatchId(), err)
	}
	return nil
}

// sanitize sanitizes the batch's exchanges on all cores and returns those to
// store, in batch order, and how many redactions were made.
//
// A compressed body is decoded only with room for its worst case in the
// batch's decode budget; what it keeps (a rewritten body is stored decoded)
// stays taken. Without room it is removed undecoded.
func (s *Service) sanitize(req *reprisev1.IngestRequest, budget *decodeBudget) ([]*reprisev1.Exchange, int) {
	exs := req.GetExchanges()
	keep := make([]bool, len(exs))
	workers := max(1, min(runtime.GOMAXPROCS(0), len(exs)/minChunk))
	counts := make([]int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*len(exs)/workers, (w+1)*len(exs)/workers
		wg.Go(func() {
			n := 0 // counted here: counts[w] shares a cache line with the others
			for i := lo; i < hi; i++ {
				ex := exs[i]
				need := int64(encodedBodies(ex)) * decodeFactor * s.limits.BodyDecoded
				var shed []*reprisev1.Redaction
				if need > 0 && !budget.take(need) {
					shed, need = shedBodies(ex), 0
					s.metrics.IngestLimited("batch_memory")
				}
				size := bodyBytes(ex)
				// Sanitize replaces the Redactions the agent sent.
				keep[i] = s.sanitizer.Sanitize(ex)
				if need > 0 {
					budget.give(need - max(0, bodyBytes(ex)-size))
				}
				// After Sanitize, which does not trust redactions it did not make.
				ex.Redactions = append(ex.Redactions, shed...)
				n += len(ex.GetRedactions())
			}
			counts[w] = n
		})
	}
	wg.Wait()
	redactions := 0
	for _, c := range counts {
		redactions += c
	}
	kept := make([]*reprisev1.Exchange, 0, len(exs))
	for i, ex := range exs {
		if !keep[i] {
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
	return kept, redactions
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
