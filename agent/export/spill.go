package export

// Spooling: the oldest batches go to the disk spool, sanitized, when the
// backlog passes its mark.

import (
	"context"
	"errors"

	"github.com/reprise-dev/reprise/agent/spool"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

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
