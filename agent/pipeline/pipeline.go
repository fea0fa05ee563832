// Package pipeline drives captured events through connection tracking: the
// tracker is not safe for concurrent use, so one goroutine reads and
// handles events and a ticker takes turns with it under a lock.
package pipeline

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reprise-dev/reprise/agent/event"
	"github.com/reprise-dev/reprise/agent/httpstream"
)

// Pipeline owns a tracker and publishes its counters to other goroutines.
type Pipeline struct {
	// mu serialises the tracker between the reading loop and the ticker.
	mu      sync.Mutex
	tracker *httpstream.Tracker
	stats   atomic.Pointer[httpstream.Stats]
}

// New wraps t; only the pipeline may call t after this.
func New(t *httpstream.Tracker) *Pipeline {
	p := &Pipeline{tracker: t}
	p.publish()
	return p
}

// Stats returns the tracker's counters as of the last tick.
func (p *Pipeline) Stats() httpstream.Stats { return *p.stats.Load() }

// publish is called with mu held.
func (p *Pipeline) publish() {
	s := p.tracker.Stats()
	p.stats.Store(&s)
}

// Run reads events from src into the tracker until src fails; closing src
// is how the caller stops it. It may be called once. Every tick, idle
// connections are expired and the counters published. When src closes,
// everything the tracker still holds is flushed, so exchanges completed by
// the last events are not lost.
//
// Each event is handled on the goroutine that read it, before the next
// Read: its Data may point into the source's buffer (the kernel's record),
// and the tracker copies only the bytes it keeps. Events wait in the ring
// buffer, not in a queue of copies.
func (p *Pipeline) Run(src event.Source, tick time.Duration) error {
	stop := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		ticker := time.NewTicker(tick)
		defer ticker.Stop()
		for {
			select {
			case now := <-ticker.C:
				p.mu.Lock()
				p.tracker.Expire(now)
				p.publish()
				p.mu.Unlock()
			case <-stop:
				return
			}
		}
	}()
	for {
		ev, err := src.Read()
		if err != nil {
			close(stop)
			<-ticked
			p.mu.Lock()
			p.tracker.Flush()
			p.publish()
			p.mu.Unlock()
			if !errors.Is(err, os.ErrClosed) {
				return fmt.Errorf("read events: %w", err)
			}
			return nil
		}
		p.mu.Lock()
		p.tracker.Handle(ev)
		p.mu.Unlock()
	}
}
