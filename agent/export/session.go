package export

// The acknowledged gRPC session: batches go out on one IngestService
// stream, stay until their ack, and are sent again on the next stream after
// an error.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/status"

	"github.com/reprise-dev/reprise/internal/s2compress"
	"github.com/reprise-dev/reprise/internal/wirecodec"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// maxBackoff caps the wait between two attempts to reach the collector.
const maxBackoff = 5 * time.Second

// DialOptions are the connection options delivery needs: gRPC's own
// reconnect backoff grows to two minutes, which would keep an agent away
// from a restarted collector long after its own retries; this caps it at
// the exporter's. Batches are compressed into buffers gRPC does not clear
// first (wirecodec.Pool).
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxBackoff},
		MinConnectTimeout: 5 * time.Second,
	}), experimental.WithBufferPool(wirecodec.Pool())}
}

// Compressions are the values Config.Compression accepts, in the order the
// exporter falls back through when a collector refuses one.
var Compressions = []string{s2compress.Name, gzip.Name, "none"}

// compressorName is the gRPC compressor of a Config.Compression value.
func compressorName(c string) string {
	if c == "none" {
		return ""
	}
	return c
}

func (e *Exporter) deliver(ctx context.Context) error {
	s := &sender{e: e, compressor: compressorName(e.cfg.Compression)}
	backoff := e.cfg.Backoff
	for {
		err := s.session(ctx)
		if err == nil {
			return nil
		}
		signal(e.spill) // the backlog may be past its mark now nothing is on the wire
		if ctx.Err() != nil {
			return fmt.Errorf("export stopped with %d exchanges unacknowledged: %w", e.Pending(), ctx.Err())
		}
		if s.progress {
			backoff, s.progress = e.cfg.Backoff, false
		}
		if status.Code(err) == codes.Unimplemented && s.compressor != "" {
			// A collector without this decompressor (an older one) refuses
			// every stream: try the next.
			next := Compressions[slices.Index(Compressions, s.compressor)+1]
			e.log.Warn("collector does not accept this compression; falling back", "compression", s.compressor, "next", next, "err", err)
			s.compressor = compressorName(next)
		}
		e.retries.Add(1)
		switch status.Code(err) {
		case codes.Unauthenticated, codes.PermissionDenied:
			// Only a fix of the credentials or of the collector's agents
			// file helps; retrying keeps the backlog until it comes.
			backoff = maxBackoff
			e.log.Error("collector refused this agent; check --token-file, --tls-cert and --agent-id against the collector's --agents-file",
				"agent_id", e.cfg.AgentID, "err", err, "retry_in", backoff, "pending", e.Pending())
		default:
			e.log.Warn("ingest stream broken, retrying", "err", err, "backoff", backoff, "pending", e.Pending())
		}
		// Jitter spreads the agents of a cluster over the collector's restart.
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// sender holds the state of delivery that outlives one stream.
type sender struct {
	e          *Exporter
	compressor string   // gRPC compressor of the stream, "" for none
	progress   bool     // an ack came since the last backoff
	wire       []*batch // sent on the current stream, not yet acknowledged, in send order
	wireN      int
	wireB      int64
}

var errStreamDone = errors.New("ingest stream closed by collector")

// session runs one stream. It returns nil when everything is delivered
// after Close.
func (s *sender) session(ctx context.Context) error {
	e := s.e
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer s.requeue()
	var opts []grpc.CallOption
	if s.compressor != "" {
		opts = append(opts, grpc.UseCompressor(s.compressor))
	}
	stream, err := e.client.Ingest(sctx, opts...)
	if err != nil {
		return fmt.Errorf("open ingest stream: %w", err)
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
		if err := s.fill(stream); err != nil {
			// Send fails with io.EOF when the stream ended; its status
			// comes with Recv, after the acks before it.
			if !errors.Is(err, io.EOF) {
				return err
			}
			for {
				select {
				case ack := <-acks:
					if err := s.acknowledge(ack); err != nil {
						return err
					}
					continue
				case err := <-recvErr:
					return s.streamErr(err)
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		if s.done() {
			_ = stream.CloseSend()
			return nil
		}
		select {
		case <-e.wake:
		case <-ticker.C:
			e.sealOpen()
		case ack := <-acks:
			if err := s.acknowledge(ack); err != nil {
				return err
			}
		case err := <-recvErr:
			return s.streamErr(err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// streamErr turns the end of the ack stream into the session's error.
func (s *sender) streamErr(err error) error {
	switch {
	case errors.Is(err, io.EOF):
		return errStreamDone
	case status.Code(err) == codes.InvalidArgument && len(s.wire) > 0:
		// The collector acked the batches before it and refused this one;
		// sending it again would be refused again.
		b := s.wire[0]
		s.wire = s.wire[1:]
		s.wireN, s.wireB = s.wireN-len(b.req.Exchanges), s.wireB-b.bytes
		s.e.log.Error("collector refused a batch; dropped", "batch_id", b.req.BatchId, "exchanges", len(b.req.Exchanges), "err", err)
		s.retire(b, DropRejected)
	}
	return fmt.Errorf("receive ack: %w", err)
}

// done reports whether everything is delivered after Close.
func (s *sender) done() bool {
	e := s.e
	e.mu.Lock()
	idle := e.closed && e.n == 0
	e.mu.Unlock()
	if !idle || len(s.wire) > 0 {
		return false
	}
	if e.cfg.Spool != nil {
		if files, _, _ := e.cfg.Spool.Len(); files > 0 {
			return false
		}
	}
	return true
}

// fits reports whether a batch of n exchanges and size bytes may go on the
// wire now.
func (s *sender) fits(n int, bytes int64) bool {
	cfg := s.e.cfg
	return len(s.wire) == 0 || len(s.wire) < cfg.MaxInFlight &&
		s.wireN+n <= cfg.MaxPending/2 && s.wireB+bytes <= cfg.MaxPendingBytes/2
}

// fill sends batches while the window has room: spooled ones first (they
// are older), then those in memory.
func (s *sender) fill(stream reprisev1.IngestService_IngestClient) error {
	for {
		b := s.next()
		if b == nil {
			return nil
		}
		s.wire = append(s.wire, b)
		s.wireN, s.wireB = s.wireN+len(b.req.Exchanges), s.wireB+b.bytes
		if err := stream.Send(b.req); err != nil {
			return fmt.Errorf("send batch %s: %w", b.req.BatchId, err)
		}
	}
}

// next returns the next batch to send, marked as on the wire, or nil.
func (s *sender) next() *batch {
	e := s.e
	if sp := e.cfg.Spool; sp != nil {
		for {
			f, ok := sp.Take()
			if !ok {
				break
			}
			if !s.fits(f.Exchanges, f.Size) {
				sp.Release(f)
				return nil
			}
			req, err := sp.Read(f)
			if err != nil {
				e.log.Error("spool file unreadable; dropped", "exchanges", f.Exchanges, "err", err)
				e.drops[DropSpoolCorrupt].Add(uint64(f.Exchanges))
				if err := sp.Remove(f); err != nil {
					e.log.Error("remove spool file", "err", err)
				}
				continue
			}
			return &batch{req: req, bytes: f.Size, state: onWire, file: f, fromSpool: true}
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, b := range e.batches {
		if b.state != queued {
			continue
		}
		if !s.fits(len(b.req.Exchanges), b.bytes) {
			return nil
		}
		e.setState(b, onWire)
		return b
	}
	return nil
}

// acknowledge retires the oldest batch on the wire; acks come in send
// order. An ack with stored=0 is the collector recognising a resent batch:
// it is still an ack.
func (s *sender) acknowledge(ack *reprisev1.IngestResponse) error {
	if len(s.wire) == 0 || s.wire[0].req.BatchId != ack.BatchId {
		return fmt.Errorf("unexpected ack for batch %q", ack.BatchId)
	}
	b := s.wire[0]
	s.wire[0] = nil
	s.wire = s.wire[1:]
	n := len(b.req.Exchanges)
	s.wireN, s.wireB = s.wireN-n, s.wireB-b.bytes
	s.retire(b, "")
	s.e.acked.Add(uint64(n))
	s.e.batchesAcked.Add(1)
	s.progress = true
	if f := s.e.cfg.Acked; f != nil && !b.fromSpool {
		for _, ex := range b.req.Exchanges {
			f(ex)
		}
	}
	return nil
}

// retire forgets a batch that left the wire for good, counting its
// exchanges as dropped for reason unless reason is "".
func (s *sender) retire(b *batch, reason string) {
	e := s.e
	n := len(b.req.Exchanges)
	if reason != "" {
		e.drops[reason].Add(uint64(n))
	}
	if b.fromSpool {
		if err := e.cfg.Spool.Remove(b.file); err != nil {
			e.log.Error("remove spool file", "err", err)
		}
		return
	}
	e.mu.Lock()
	e.retire(b, n)
	e.mu.Unlock()
}

// requeue puts the batches of a broken stream back: they are the oldest,
// and go first on the next stream, or to the spool, or are dropped first.
func (s *sender) requeue() {
	e := s.e
	e.mu.Lock()
	for _, b := range s.wire {
		if !b.fromSpool {
			e.setState(b, queued)
		}
	}
	e.mu.Unlock()
	for _, b := range s.wire {
		if b.fromSpool {
			e.cfg.Spool.Release(b.file)
		}
	}
	s.wire, s.wireN, s.wireB = nil, 0, 0
}
