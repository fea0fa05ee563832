// Package pipeline drives captured events through connection tracking on
// one goroutine: the tracker is not safe for concurrent use, and a single
// owner keeps per-connection state free of locks.
package pipeline

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/reprise-dev/reprise/agent/conntrack"
	"github.com/reprise-dev/reprise/agent/event"
)

// Pipeline owns a tracker and publishes its counters to other goroutines.
type Pipeline struct {
	tracker *conntrack.Tracker
	stats   atomic.Pointer[conntrack.Stats]
	// events bounds what waits in memory between the reader and the
	// tracker; when it is full the ring buffer fills and the kernel drops
	// and counts.
	events chan event.Event
}

// New wraps t; only the pipeline may call t after this.
func New(t *conntrack.Tracker) *Pipeline {
	p := &Pipeline{tracker: t, events: make(chan event.Event, 1024)}
	p.publish()
	return p
}

// Stats returns the tracker's counters as of the last tick.
func (p *Pipeline) Stats() conntrack.Stats { return *p.stats.Load() }

// QueueLen returns how many events wait for the tracker.
func (p *Pipeline) QueueLen() int { return len(p.events) }

func (p *Pipeline) publish() {
	s := p.tracker.Stats()
	p.stats.Store(&s)
}

// Run reads events from src into the tracker until src fails; closing src
// is how the caller stops it. It may be called once. Every tick, idle
// connections are expired and the counters published. When src closes,
// everything the tracker still holds is flushed, so exchanges completed by
// the last events are not lost.
func (p *Pipeline) Run(src event.Source, tick time.Duration) error {
	// Reading happens on its own goroutine so expiry runs while the ring
	// buffer is quiet.
	events := p.events
	readErr := make(chan error, 1)
	go func() {
		defer close(events)
		for {
			ev, err := src.Read()
			if err != nil {
				readErr <- err
				return
			}
			events <- ev
		}
	}()

	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				p.tracker.Flush()
				p.publish()
				if err := <-readErr; !errors.Is(err, os.ErrClosed) {
					return fmt.Errorf("read events: %w", err)
				}
				return nil
			}
			p.tracker.Handle(ev)
		case now := <-ticker.C:
			p.tracker.Expire(now)
			p.publish()
		}
	}
}
