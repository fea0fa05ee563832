// Package tail hands committed exchanges to live subscribers (the Tail RPC).
// Ingest publishes after each commit, so a subscriber never sees an
// exchange that is not durable.
package tail

import (
	"sync"

	"github.com/reprise-dev/reprise/collector/store"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// buffer is how many exchanges a subscriber may fall behind before it is cut
// off: publishing never waits for a slow client.
const buffer = 1024

// Hub fans exchanges out to subscribers.
type Hub struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// NewHub returns a hub without subscribers.
func NewHub() *Hub {
	return &Hub{subs: map[*Subscription]struct{}{}}
}

// Subscription receives the published exchanges its matcher accepts.
type Subscription struct {
	match *store.Matcher
	ch    chan *reprisev1.Exchange
	// lagged is set, under the hub's lock, when ch was closed because it was full.
	lagged bool
}

// C delivers the exchanges; it is closed when the subscription falls behind.
func (s *Subscription) C() <-chan *reprisev1.Exchange { return s.ch }

// Subscribe starts a subscription; end it with Unsubscribe.
func (h *Hub) Subscribe(m *store.Matcher) *Subscription {
	s := &Subscription{match: m, ch: make(chan *reprisev1.Exchange, buffer)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// Unsubscribe ends s and reports whether it had fallen behind.
func (h *Hub) Unsubscribe(s *Subscription) (lagged bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
	return s.lagged
}

// Publish offers committed exchanges to every subscriber without blocking.
// The exchanges must not be modified afterwards.
func (h *Hub) Publish(exs []*reprisev1.Exchange) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		for _, ex := range exs {
			if !s.match.Match(ex) {
				continue
			}
			select {
			case s.ch <- ex:
			default:
				s.lagged = true
				delete(h.subs, s)
				close(s.ch)
			}
			if s.lagged {
				break
			}
		}
	}
}
