package export

// Shutdown: Close, the end of Run, and what happens to what is left.

import (
	"context"
	"sync"
)

// Close tells Run that no more exchanges come; Run returns once everything
// held, in memory and in the spool, is acknowledged (or its context ends).
func (e *Exporter) Close() {
	e.mu.Lock()
	e.closed = true
	e.seal()
	e.mu.Unlock()
	signal(e.wake)
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
