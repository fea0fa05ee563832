// Package export ships captured exchanges to the collector over the
// IngestService stream. A batch stays in the agent until the collector has
// acknowledged it as committed; when the collector is down or slow the agent
// keeps a bounded backlog in memory, moves its oldest batches to an optional
// disk spool, and past the bounds drops the oldest exchanges and counts
// them, so capture is never blocked and memory never grows without limit.
// See docs/delivery.md.
package export

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/reprise-dev/reprise/agent/spool"
	"github.com/reprise-dev/reprise/internal/sanitize"
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
