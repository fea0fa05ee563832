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
	// events and queued (payload bytes in events) bound what waits in
	// memory between the reader and the tracker; past either bound the
	// reader waits, the ring buffer fills and the kernel drops and counts.
	events chan event.Event
	queued atomic.Int64
	// room wakes a reader waiting for queued to fall below maxQueueBytes.
	room chan struct{}
}

const (
	// maxQueueEvents absorbs bursts of small events (a GET is a few).
	maxQueueEvents = 4096
	// maxQueueBytes keeps the queue's memory independent of payload size:
	// 4096 events of 64 KiB would be 256 MiB. The 16 MiB ring behind it
	// holds more.
	maxQueueBytes = 8 << 20
)

// New wraps t; only the pipeline may call t after this.
func New(t *conntrack.Tracker) *Pipeline {
	p := &Pipeline{tracker: t, events: make(chan event.Event, maxQueueEvents), room: make(chan struct{}, 1)}
	p.publish()
	return p
}

// Stats returns the tracker's counters as of the last tick.
func (p *Pipeline) Stats() conntrack.Stats { return *p.stats.Load() }

// QueueLen returns how many events wait for the tracker.
func (p *Pipeline) QueueLen() int { return len(p.events) }

// QueueBytes returns the payload bytes of the events waiting for the tracker.
func (p *Pipeline) QueueBytes() int64 { return p.queued.Load() }

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
			for p.queued.Load() > maxQueueBytes {
				<-p.room
			}
			p.queued.Add(int64(len(ev.Data)))
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
			if n := int64(len(ev.Data)); n > 0 && p.queued.Add(-n) <= maxQueueBytes {
				select {
				case p.room <- struct{}{}:
				default:
				}
			}
		case now := <-ticker.C:
			p.tracker.Expire(now)
			p.publish()
		}
	}
}
