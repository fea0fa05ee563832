// Package export ships captured exchanges to the collector over the
// IngestService stream. A batch stays in the agent until the collector has
// acknowledged it as committed; when the collector is down or slow the agent
// keeps a bounded backlog and drops (and counts) past it, so capture is never
// blocked.
package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// DefaultMaxPendingBytes is the default of Config.MaxPendingBytes.
const DefaultMaxPendingBytes = 16 << 20

// Config of an Exporter. Zero fields take the defaults.
type Config struct {
	AgentID  string
	Hostname string
	// BatchSize is the most exchanges in one batch (default 256).
	BatchSize int
	// FlushInterval bounds how long an exchange waits for its batch to fill
	// (default 200ms).
	FlushInterval time.Duration
	// MaxPending bounds exchanges held in the agent, queued or unacked
	// (default 10000); beyond it new exchanges are dropped and counted.
	MaxPending int
	// MaxPendingBytes bounds the same exchanges by their approximate size
	// (bodies, headers and a fixed overhead; default 16 MiB), so that the
	// backlog's memory does not grow with body size.
	MaxPendingBytes int64
	// BatchBytes closes a batch once its exchanges reach this approximate
	// size (default 2 MiB), which also bounds gRPC's marshalling buffer
	// and stays under the 4 MiB a gRPC server accepts by default.
	BatchBytes int64
	// Backoff after a failed stream, doubled up to 5s (default 100ms).
	Backoff time.Duration
}

func (c *Config) setDefaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 256
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 200 * time.Millisecond
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 10000
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 2 << 20
	}
	if c.Backoff <= 0 {
		c.Backoff = 100 * time.Millisecond
	}
}

// Stats are the exporter's counters.
type Stats struct {
	Acked   uint64 // exchanges the collector committed
	Dropped uint64 // exchanges dropped because the backlog was full
	Batches uint64 // batches acknowledged
	Retries uint64 // streams re-opened after an error
}

// Exporter batches exchanges and sends them to the collector.
type Exporter struct {
	cfg    Config
	client reprisev1.IngestServiceClient
	queue  chan *reprisev1.Exchange
	log    *slog.Logger

	acked, dropped, batches, retries atomic.Uint64
	// held counts exchanges taken from the queue and not yet acknowledged.
	held atomic.Int64
	// bytes is the approximate size of the exchanges queued or unacked.
	bytes atomic.Int64
}

// exchangeOverhead approximates what an exchange costs besides its bodies
// and headers: about twenty small structs and strings (ids, timestamps,
// addresses, process, capture, one per header) and protobuf framing.
const exchangeOverhead = 1024

// size approximates the memory ex holds without walking it as proto.Size
// would: bodies dominate, and the bound need not be exact.
func size(ex *reprisev1.Exchange) int64 {
	n := int64(exchangeOverhead + len(ex.GetRequest().GetBody()) + len(ex.GetResponse().GetBody()))
	for _, h := range ex.GetRequest().GetHeaders() {
		n += int64(len(h.Name) + len(h.Value))
	}
	for _, h := range ex.GetResponse().GetHeaders() {
		n += int64(len(h.Name) + len(h.Value))
	}
	return n
}

type batch struct {
	req   *reprisev1.IngestRequest
	bytes int64
}

// New makes an exporter that sends over conn.
func New(conn grpc.ClientConnInterface, cfg Config) *Exporter {
	cfg.setDefaults()
	return &Exporter{
		cfg:    cfg,
		client: reprisev1.NewIngestServiceClient(conn),
		queue:  make(chan *reprisev1.Exchange, cfg.MaxPending),
		log:    slog.With("component", "export"),
	}
}

// Add queues an exchange without blocking. It must not be called after Close.
func (e *Exporter) Add(ex *reprisev1.Exchange) {
	n := size(ex)
	if int(e.held.Load())+len(e.queue) >= e.cfg.MaxPending || e.bytes.Load()+n > e.cfg.MaxPendingBytes {
		e.dropped.Add(1)
		return
	}
	e.bytes.Add(n)
	select {
	case e.queue <- ex:
	default:
		e.bytes.Add(-n)
		e.dropped.Add(1)
	}
}

// Close tells Run that no more exchanges come; Run returns once everything
// queued is acknowledged (or its context ends).
func (e *Exporter) Close() { close(e.queue) }

// Stats returns a snapshot of the counters.
func (e *Exporter) Stats() Stats {
	return Stats{Acked: e.acked.Load(), Dropped: e.dropped.Load(), Batches: e.batches.Load(), Retries: e.retries.Load()}
}

// Pending is the number of exchanges queued or awaiting an ack.
func (e *Exporter) Pending() int { return len(e.queue) + int(e.held.Load()) }

// PendingBytes is the approximate size of the exchanges queued or awaiting
// an ack.
func (e *Exporter) PendingBytes() int64 { return e.bytes.Load() }

// Run sends until Close was called and all is acknowledged, or until ctx
// ends. Stream errors are retried with backoff; unacknowledged batches are
// sent again on the new stream (the collector ignores exchange ids it has).
func (e *Exporter) Run(ctx context.Context) error {
	s := &sender{e: e}
	backoff := e.cfg.Backoff
	for {
		err := s.session(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("export stopped with %d exchanges unacknowledged: %w", e.Pending(), ctx.Err())
		}
		e.retries.Add(1)
		e.log.Warn("ingest stream broken, retrying", "err", err, "backoff", backoff, "pending", e.Pending())
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			continue
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// sender holds the state that outlives one stream.
type sender struct {
	e       *Exporter
	unacked []batch // sent, not yet acknowledged, in send order
	current []*reprisev1.Exchange
	curSize int64 // approximate size of current
	closed  bool  // the queue is closed and drained into current
}

var errStreamDone = errors.New("ingest stream closed by collector")

// session runs one stream. It returns nil when everything is delivered
// after Close.
func (s *sender) session(ctx context.Context) error {
	e := s.e
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := e.client.Ingest(sctx)
	if err != nil {
		return fmt.Errorf("open ingest stream: %w", err)
	}
	for _, b := range s.unacked {
		if err := stream.Send(b.req); err != nil {
			return fmt.Errorf("resend batch %s: %w", b.req.BatchId, err)
		}
	}
	acks := make(chan *reprisev1.IngestResponse)
	recvErr := make(chan error, 1)
	go func() {
		for {
			ack, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case acks <- ack:
			case <-sctx.Done():
				return
			}
		}
	}()

	ticker := time.NewTicker(e.cfg.FlushInterval)
	defer ticker.Stop()
	for {
		if s.closed && len(s.current) == 0 && len(s.unacked) == 0 {
			_ = stream.CloseSend()
			return nil
		}
		// Stop taking from the queue while the backlog is at its bound, so
		// the queue fills and Add drops instead of memory growing.
		queue := e.queue
		if s.closed || int(e.held.Load()) >= e.cfg.MaxPending {
			queue = nil
		}
		select {
		case ex, ok := <-queue:
			if !ok {
				s.closed = true
				if err := s.flush(stream); err != nil {
					return err
				}
				continue
			}
			e.held.Add(1)
			s.current = append(s.current, ex)
			s.curSize += size(ex)
			if len(s.current) >= e.cfg.BatchSize || s.curSize >= e.cfg.BatchBytes {
				if err := s.flush(stream); err != nil {
					return err
				}
			}
		case <-ticker.C:
			if err := s.flush(stream); err != nil {
				return err
			}
		case ack := <-acks:
			if err := s.acknowledge(ack); err != nil {
				return err
			}
		case err := <-recvErr:
			if errors.Is(err, context.Canceled) {
				return err
			}
			if errors.Is(err, io.EOF) {
				return errStreamDone
			}
			return fmt.Errorf("receive ack: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// flush sends the current batch, if any.
func (s *sender) flush(stream reprisev1.IngestService_IngestClient) error {
	if len(s.current) == 0 {
		return nil
	}
	for _, ex := range s.current {
		if ex.Capture == nil {
			ex.Capture = &reprisev1.Capture{}
		}
		ex.Capture.AgentId = s.e.cfg.AgentID
		ex.Capture.Hostname = s.e.cfg.Hostname
	}
	b := batch{req: &reprisev1.IngestRequest{
		BatchId:   uuid.NewString(),
		AgentId:   s.e.cfg.AgentID,
		Exchanges: s.current,
	}, bytes: s.curSize}
	s.current, s.curSize = nil, 0
	s.unacked = append(s.unacked, b)
	if err := stream.Send(b.req); err != nil {
		return fmt.Errorf("send batch %s: %w", b.req.BatchId, err)
	}
	return nil
}

// acknowledge retires the oldest batch; acks come in send order.
func (s *sender) acknowledge(ack *reprisev1.IngestResponse) error {
	if len(s.unacked) == 0 || s.unacked[0].req.BatchId != ack.BatchId {
		return fmt.Errorf("unexpected ack for batch %q", ack.BatchId)
	}
	n := len(s.unacked[0].req.Exchanges)
	s.e.bytes.Add(-s.unacked[0].bytes)
	s.unacked[0] = batch{} // let the bodies go now, not when the slice moves
	s.unacked = s.unacked[1:]
	s.e.held.Add(-int64(n))
	s.e.acked.Add(uint64(n))
	s.e.batches.Add(1)
	return nil
}
