// Package export ships captured exchanges to the collector over the
// IngestService stream. A batch stays in the agent until the collector has
// acknowledged it as committed; when the collector is down or slow the agent
// keeps a bounded backlog in memory, moves its oldest batches to an optional
// disk spool, and past the bounds drops the oldest exchanges and counts
// them, so capture is never blocked and memory never grows without limit.
// See docs/delivery.md.
package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"

	"github.com/reprise-dev/reprise/agent/spool"
	"github.com/reprise-dev/reprise/internal/s2compress"
	"github.com/reprise-dev/reprise/internal/sanitize"
	_ "github.com/reprise-dev/reprise/internal/wirecodec" // gRPC codec: vtprotobuf code
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// DefaultMaxPendingBytes is the default of Config.MaxPendingBytes.
const DefaultMaxPendingBytes = 16 << 20

// maxBackoff caps the wait between two attempts to reach the collector.
const maxBackoff = 5 * time.Second

// DialOptions are the connection options delivery needs: gRPC's own
// reconnect backoff grows to two minutes, which would keep an agent away
// from a restarted collector long after its own retries; this caps it at
// the exporter's.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxBackoff},
		MinConnectTimeout: 5 * time.Second,
	})}
}

// Compressions are the values Config.Compression accepts, in the order the
// exporter falls back through when a collector refuses one.
var Compressions = []string{s2compress.Name, gzip.Name, "none"}

// Config of an Exporter. Zero fields take the defaults.
type Config struct {
	AgentID  string
	Hostname string
	// BatchSize is the most exchanges in one batch (default 256).
	BatchSize int
	// FlushInterval bounds how long an exchange waits for its batch to fill
	// (default 200ms).
	FlushInterval time.Duration
	// MaxPending bounds exchanges held in memory, queued or unacked
	// (default 10000); beyond it the oldest not on the wire are dropped and
	// counted.
	MaxPending int
	// MaxPendingBytes bounds the same exchanges by their approximate size
	// (bodies, headers and a fixed overhead; default 16 MiB), so that the
	// backlog's memory does not grow with body size.
	MaxPendingBytes int64
	// BatchBytes closes a batch once its exchanges reach this approximate
	// size (default 2 MiB), which also bounds gRPC's marshalling buffer
	// and stays under the 4 MiB a gRPC server accepts by default.
	BatchBytes int64
	// MaxInFlight bounds the batches sent and not yet acknowledged
	// (default 8); they also take at most half of each memory bound, so
	// the other half stays for what capture adds while they wait.
	MaxInFlight int
	// Backoff after a failed stream, doubled up to 5s (default 100ms).
	Backoff time.Duration
	// Compression is the stream's gRPC compressor: "s2", "gzip", or "" or
	// "none" for none.
	Compression string
	// Spool, when set, takes the oldest batches once the memory backlog
	// not on the wire passes half a bound, and at shutdown what the
	// collector did not acknowledge in time. Spooled batches are sent
	// before those in memory.
	Spool *spool.Spool
	// Sanitizer sanitizes every exchange before it is spooled (default
	// sanitize.Default()); the collector sanitizes again.
	Sanitizer *sanitize.Sanitizer
	// Acked, when set, is called with each exchange Add queued once the
	// collector acknowledged it; the exporter no longer refers to it then.
	Acked func(*reprisev1.Exchange)
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
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 8
	}
	if c.Backoff <= 0 {
		c.Backoff = 100 * time.Millisecond
	}
	if c.Spool != nil && c.Sanitizer == nil {
		c.Sanitizer = sanitize.Default()
	}
}

// Why exchanges are dropped; the names are the metric's reason label.
const (
	DropBacklogFull  = "backlog_full"  // oldest in memory, past MaxPending or MaxPendingBytes
	DropSpoolFull    = "spool_full"    // oldest spool files, past the spool's bound
	DropSpoolError   = "spool_error"   // the spool could not write the batch
	DropSpoolCorrupt = "spool_corrupt" // a spool file was not a whole batch
	DropRejected     = "rejected"      // the collector refused the batch as invalid
	DropShutdown     = "shutdown"      // unacknowledged at shutdown, with no spool
)

var dropReasons = []string{DropBacklogFull, DropSpoolFull, DropSpoolError, DropSpoolCorrupt, DropRejected, DropShutdown}

// Stats are the exporter's counters and the spool's size.
type Stats struct {
	Acked   uint64 // exchanges the collector committed
	Dropped uint64 // exchanges lost, the sum of Drops
	// Drops counts lost exchanges by reason (the Drop* constants).
	Drops   map[string]uint64
	Batches uint64 // batches acknowledged
	Retries uint64 // streams re-opened after an error
	// Spooled counts exchanges written to the spool; SanitizeDropped those
	// a drop rule removed on their way there (the collector would have
	// dropped them too).
	Spooled, SanitizeDropped uint64
	// SpoolFiles, SpoolBytes and SpoolExchanges are what the spool holds now.
	SpoolFiles, SpoolExchanges int
	SpoolBytes                 int64
}

// Exporter batches exchanges and sends them to the collector.
type Exporter struct {
	cfg    Config
	client reprisev1.IngestServiceClient
	log    *slog.Logger
	// wake tells the sender that a batch was sealed or spooled, or that
	// Close was called; spill tells the spiller the backlog passed its mark.
	wake, spill chan struct{}

	mu        sync.Mutex
	open      []*reprisev1.Exchange // not in a batch yet, oldest first
	openBytes int64
	batches   []*batch // sealed and in memory, oldest first
	n         int      // exchanges in open and batches
	bytes     int64    // their approximate size
	// busyN and busyBytes are the part of n and bytes on the wire or being
	// spooled, which Add does not drop.
	busyN     int
	busyBytes int64
	closed    bool

	acked, batchesAcked, retries, spooled, sanitizeDropped atomic.Uint64
	drops                                                  map[string]*atomic.Uint64
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

type state uint8

const (
	queued state = iota
	onWire
	spilling
)

type batch struct {
	req   *reprisev1.IngestRequest
	bytes int64
	state state
	// file is set for a batch read back from the spool; such a batch is
	// not in Exporter.batches and leaves the spool once acknowledged.
	file      spool.File
	fromSpool bool
}

// New makes an exporter that sends over conn.
func New(conn grpc.ClientConnInterface, cfg Config) *Exporter {
	cfg.setDefaults()
	e := &Exporter{
		cfg:    cfg,
		client: reprisev1.NewIngestServiceClient(conn),
		log:    slog.With("component", "export"),
		wake:   make(chan struct{}, 1),
		spill:  make(chan struct{}, 1),
		drops:  map[string]*atomic.Uint64{},
	}
	for _, r := range dropReasons {
		e.drops[r] = new(atomic.Uint64)
	}
	return e
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Add queues an exchange. It never blocks on the collector or the disk:
// past the bounds it drops the oldest exchanges not on the wire, and the
// new one only when nothing older can go.
func (e *Exporter) Add(ex *reprisev1.Exchange) {
	n := size(ex)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		e.drops[DropShutdown].Add(1)
		return
	}
	if n > e.cfg.MaxPendingBytes {
		e.mu.Unlock()
		e.drops[DropBacklogFull].Add(1)
		return
	}
	for e.n+1 > e.cfg.MaxPending || e.bytes+n > e.cfg.MaxPendingBytes {
		if !e.dropOldest() {
			e.mu.Unlock()
			e.drops[DropBacklogFull].Add(1)
			return
		}
	}
	e.open = append(e.open, ex)
	e.openBytes += n
	e.n++
	e.bytes += n
	sealed := len(e.open) >= e.cfg.BatchSize || e.openBytes >= e.cfg.BatchBytes
	if sealed {
		e.seal()
	}
	spill := e.cfg.Spool != nil && e.overSpillMark()
	e.mu.Unlock()
	if sealed {
		signal(e.wake)
	}
	if spill {
		signal(e.spill)
	}
}

// dropOldest drops the oldest exchange that is neither on the wire nor
// being spooled; e.mu is held. It returns false when there is none.
func (e *Exporter) dropOldest() bool {
	take := func(exs []*reprisev1.Exchange) int64 {
		s := size(exs[0])
		exs[0] = nil // let the bodies go now
		e.n--
		e.bytes -= s
		e.drops[DropBacklogFull].Add(1)
		return s
	}
	for i, b := range e.batches {
		if b.state != queued {
			continue
		}
		// The batch keeps its id: if the collector committed it before
		// the stream broke, a resend of the rest is a duplicate it ignores.
		b.bytes -= take(b.req.Exchanges)
		b.req.Exchanges = b.req.Exchanges[1:]
		if len(b.req.Exchanges) == 0 {
			e.batches = slices.Delete(e.batches, i, i+1)
		}
		return true
	}
	if len(e.open) == 0 {
		return false
	}
	e.openBytes -= take(e.open)
	e.open = e.open[1:]
	return true
}

// seal closes the open exchanges into a batch; e.mu is held.
func (e *Exporter) seal() {
	if len(e.open) == 0 {
		return
	}
	for _, ex := range e.open {
		if ex.Capture == nil {
			ex.Capture = &reprisev1.Capture{}
		}
		ex.Capture.AgentId = e.cfg.AgentID
		ex.Capture.Hostname = e.cfg.Hostname
	}
	e.batches = append(e.batches, &batch{
		req:   &reprisev1.IngestRequest{BatchId: uuid.NewString(), AgentId: e.cfg.AgentID, Exchanges: e.open},
		bytes: e.openBytes,
	})
	e.open, e.openBytes = nil, 0
}

func (e *Exporter) sealOpen() {
	e.mu.Lock()
	e.seal()
	e.mu.Unlock()
}

// overSpillMark reports whether what waits in memory, not on the wire,
// passed half of a bound; e.mu is held.
func (e *Exporter) overSpillMark() bool {
	return e.n-e.busyN > e.cfg.MaxPending/2 || e.bytes-e.busyBytes > e.cfg.MaxPendingBytes/2
}

// setState moves a memory batch between queued and busy; e.mu is held.
func (e *Exporter) setState(b *batch, s state) {
	n, bytes := len(b.req.Exchanges), b.bytes
	if b.state != queued {
		e.busyN, e.busyBytes = e.busyN-n, e.busyBytes-bytes
	}
	if s != queued {
		e.busyN, e.busyBytes = e.busyN+n, e.busyBytes+bytes
	}
	b.state = s
}

// retire removes a busy memory batch, acknowledged or spooled or dropped;
// e.mu is held.
func (e *Exporter) retire(b *batch, n int) {
	e.setState(b, queued)
	if i := slices.Index(e.batches, b); i >= 0 {
		e.batches = slices.Delete(e.batches, i, i+1)
	}
	e.n -= n
	e.bytes -= b.bytes
}

// Close tells Run that no more exchanges come; Run returns once everything
// held, in memory and in the spool, is acknowledged (or its context ends).
func (e *Exporter) Close() {
	e.mu.Lock()
	e.closed = true
	e.seal()
	e.mu.Unlock()
	signal(e.wake)
}

// Stats returns a snapshot of the counters.
func (e *Exporter) Stats() Stats {
	st := Stats{Acked: e.acked.Load(), Batches: e.batchesAcked.Load(), Retries: e.retries.Load(),
		Spooled: e.spooled.Load(), SanitizeDropped: e.sanitizeDropped.Load(), Drops: map[string]uint64{}}
	for r, c := range e.drops {
		st.Drops[r] = c.Load()
		st.Dropped += st.Drops[r]
	}
	if e.cfg.Spool != nil {
		st.SpoolFiles, st.SpoolBytes, st.SpoolExchanges = e.cfg.Spool.Len()
	}
	return st
}

// Pending is the number of exchanges in memory, queued or awaiting an ack.
func (e *Exporter) Pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n
}

// PendingBytes is the approximate size of the exchanges in memory.
func (e *Exporter) PendingBytes() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.bytes
}

// Run sends until Close was called and all is acknowledged, or until ctx
// ends. Stream errors are retried with backoff; unacknowledged batches are
// sent again, with the same batch id, on the new stream. When ctx ends
// first, what is left in memory goes to the spool, or is dropped and
// counted without one.
func (e *Exporter) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	spillCtx, stopSpill := context.WithCancel(context.Background())
	if e.cfg.Spool != nil {
		wg.Go(func() { e.spillLoop(spillCtx) })
	}
	err := e.deliver(ctx)
	stopSpill()
	wg.Wait()
	if err != nil {
		e.abandon()
	}
	return err
}

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

// spillLoop moves the oldest batches to the spool while the backlog is past
// its mark.
func (e *Exporter) spillLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.spill:
		}
		for ctx.Err() == nil {
			b := e.claim(false)
			if b == nil {
				break
			}
			e.spillBatch(b)
		}
	}
}

// claim marks the oldest queued batch as being spooled and returns it; with
// force it also seals the open exchanges, otherwise it returns nil unless
// the backlog is past its mark.
func (e *Exporter) claim(force bool) *batch {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !force && !e.overSpillMark() {
		return nil
	}
	for range 2 {
		for _, b := range e.batches {
			if b.state == queued {
				e.setState(b, spilling)
				return b
			}
		}
		e.seal()
	}
	return nil
}

// spillBatch sanitizes a claimed batch and writes it to the spool; what
// the spool cannot take is dropped and counted.
func (e *Exporter) spillBatch(b *batch) {
	kept := make([]*reprisev1.Exchange, 0, len(b.req.Exchanges))
	for _, ex := range b.req.Exchanges {
		if e.cfg.Sanitizer.Sanitize(ex) {
			kept = append(kept, ex)
		} else {
			e.sanitizeDropped.Add(1) // a drop rule: not to be stored anywhere
		}
	}
	if len(kept) > 0 {
		evicted, err := e.cfg.Spool.Write(&reprisev1.IngestRequest{BatchId: b.req.BatchId, AgentId: b.req.AgentId, Exchanges: kept})
		for _, f := range evicted {
			e.drops[DropSpoolFull].Add(uint64(f.Exchanges))
		}
		switch {
		case errors.Is(err, spool.ErrFull):
			e.drops[DropSpoolFull].Add(uint64(len(kept)))
		case err != nil:
			e.log.Error("spool batch; dropped", "exchanges", len(kept), "err", err)
			e.drops[DropSpoolError].Add(uint64(len(kept)))
		default:
			e.spooled.Add(uint64(len(kept)))
		}
	}
	e.mu.Lock()
	e.retire(b, len(b.req.Exchanges))
	e.mu.Unlock()
	signal(e.wake)
}

// abandon empties memory after Run gave up: into the spool when there is
// one, else counted as dropped.
func (e *Exporter) abandon() {
	if e.cfg.Spool != nil {
		for b := e.claim(true); b != nil; b = e.claim(true) {
			e.spillBatch(b)
		}
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seal()
	e.drops[DropShutdown].Add(uint64(e.n))
	e.batches, e.n, e.bytes = nil, 0, 0
}
