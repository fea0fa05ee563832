package export

// The backlog: exchanges waiting in memory, sealed into batches, bounded
// by count and bytes, the oldest dropped and counted past the bounds.

import (
	"slices"

	"github.com/google/uuid"

	"github.com/reprise-dev/reprise/agent/spool"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

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
