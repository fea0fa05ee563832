// Package httpstream turns raw capture events into HTTP exchanges: it
// reassembles each direction of each TCP connection in stream order (by the
// kernel's stream positions), parses it with package http1, pairs requests
// with responses and emits one reprisev1.Exchange per pair.
//
// A Tracker is not safe for concurrent use: one goroutine owns it and calls
// Handle and Expire (see agent/pipeline).
package httpstream

import (
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/reprise-dev/reprise/agent/event"
	"github.com/reprise-dev/reprise/agent/http1"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Defaults of Config.
const (
	DefaultMaxConns    = 10000
	DefaultBodyCap     = http1.DefaultBodyCap
	DefaultIdleTimeout = 2 * time.Minute
	DefaultMaxBuffered = 256 << 10
	// DefaultStreamTimeout is how long a response may stream before what
	// was read of it is emitted.
	DefaultStreamTimeout = 30 * time.Second
)

const (
	// maxFuture bounds the segments held ahead of a hole in a stream.
	maxFuture = 16
	// reorderWindow is how far in event time a hole may lag the segments
	// after it before it is taken as lost: events from different CPUs
	// arrive out of order by a little, not by this much.
	reorderWindow = 100 * time.Millisecond
	// maxUndecided bounds the bytes held per direction before a start line
	// shows which direction carries requests.
	maxUndecided = 16 << 10
	// maxPending bounds the requests of one connection waiting for their
	// responses.
	maxPending = 64
)

// Config bounds what a Tracker holds. Zero values take defaults.
type Config struct {
	// MaxConns is how many connections are tracked at once (default
	// 10000); events of further connections are dropped and counted.
	MaxConns int
	// BodyCap is how many body bytes a message keeps (default 1 MiB).
	BodyCap int
	// IdleTimeout is how long a connection may go without events before
	// Expire closes it (default 2 minutes).
	IdleTimeout time.Duration
	// MaxBuffered bounds, per direction, the bytes held outside the parser:
	// segments after a hole and responses waiting for their request
	// (default 256 KiB). Beyond it the held bytes are dropped and counted
	// as lost. Before a start line shows which direction carries requests,
	// at most 16 KiB are held and the rest is ignored.
	MaxBuffered int
	// StreamTimeout is how long a response may go on (server-sent events, a
	// long download) before the exchange is emitted as far as read, marked
	// streaming (default 30 seconds). A text/event-stream response is also
	// emitted once its body reaches BodyCap. The rest of the response is
	// framed and discarded.
	StreamTimeout time.Duration
	// Filter selects the exchanges emitted; the others are counted in
	// Stats.Filtered.
	Filter Filter
	// Skipper, when set, is told which bytes of a body are past BodyCap,
	// so that the kernel does not copy them (capture.Capture).
	Skipper Skipper
	// Roles, when set, finds the role of a connection opened before the
	// capture when its start lines leave it ambiguous (see decide).
	Roles Roles
}

// Skipper stops the copy of a connection direction's bytes at stream
// positions [from, to).
type Skipper interface {
	Skip(id event.ConnID, d event.Direction, from, to uint64) error
}

// Roles finds the role of process pid on the connection local→remote
// (sockdiag.Resolver).
type Roles interface {
	Role(pid uint32, local, remote netip.AddrPort) (event.Role, error)
}

func (c Config) withDefaults() Config {
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.BodyCap <= 0 {
		c.BodyCap = DefaultBodyCap
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxBuffered <= 0 {
		c.MaxBuffered = DefaultMaxBuffered
	}
	if c.StreamTimeout <= 0 {
		c.StreamTimeout = DefaultStreamTimeout
	}
	return c
}

// NumLosses is the number of reprisev1.Loss values.
const NumLosses = int(reprisev1.Loss_LOSS_NO_RESPONSE) + 1

// Stats counts what a Tracker saw and dropped, since it was created.
type Stats struct {
	Events    uint64 // events handled
	Bytes     uint64 // stream bytes covered by data events
	Exchanges uint64 // exchanges emitted
	Filtered  uint64 // exchanges Config.Filter left out
	// Incomplete counts exchanges emitted with a part missing or cut
	// (request or response incomplete, or no response).
	Incomplete uint64
	// IncompleteBy counts them by their first cause (a streaming response
	// is incomplete with none).
	IncompleteBy [NumLosses]uint64
	// BytesLost counts stream bytes never seen (holes, truncated copies) or
	// dropped because MaxBuffered was exceeded.
	BytesLost   uint64
	ParseErrors uint64 // malformed messages
	Resyncs     uint64 // parsers sent to look for the next message start
	// BytesIgnored counts bytes not parsed on purpose: after a protocol
	// upgrade, or of a connection never recognised as HTTP.
	BytesIgnored uint64
	DroppedConns uint64 // connections not tracked because of MaxConns
	// UnmatchedResponses counts responses with no request to pair with.
	UnmatchedResponses uint64
	// UnansweredRequests counts exchanges emitted without a response.
	UnansweredRequests uint64
	// BytesUnavailable counts body bytes sent with sendfile, framed but
	// never seen.
	BytesUnavailable uint64
	// BytesSkipped counts body bytes past the body cap that the kernel did
	// not copy, framed and counted in body_size (not a loss).
	BytesSkipped uint64
	// SkipErrors counts failed requests to the kernel to skip a body.
	SkipErrors uint64
	// Streamed counts responses emitted before their end (StreamTimeout or
	// the body cap of an event stream).
	Streamed uint64
	// InvalidText counts exchanges with a header, target, host or process
	// name that was not UTF-8; its invalid bytes were sent as U+FFFD.
	InvalidText uint64
	Overflows   uint64 // times MaxBuffered was exceeded
	Expired     uint64 // connections closed by Expire
	Conns       int    // connections tracked now
}

// Tracker follows connections and emits their exchanges.
type Tracker struct {
	cfg   Config
	emit  func(*reprisev1.Exchange)
	conns map[event.ConnID]*conn
	// refused remembers connections dropped over MaxConns, so each counts
	// once; bounded like conns.
	refused map[event.ConnID]struct{}
	stats   Stats
	ids     idSource
}

// New returns a Tracker that calls emit, on the goroutine calling Handle or
// Expire, for every exchange it completes.
func New(cfg Config, emit func(*reprisev1.Exchange)) *Tracker {
	return &Tracker{
		cfg:     cfg.withDefaults(),
		emit:    emit,
		conns:   make(map[event.ConnID]*conn),
		refused: make(map[event.ConnID]struct{}),
	}
}

// Stats returns the counters.
func (t *Tracker) Stats() Stats {
	s := t.stats
	s.Conns = len(t.conns)
	return s
}

// Handle processes one event. It copies the bytes of ev.Data it keeps, so
// the caller may reuse ev.Data once Handle returns.
func (t *Tracker) Handle(ev event.Event) {
	t.stats.Events++
	switch ev.Kind {
	case event.KindOpen:
		t.lookup(ev)
	case event.KindClose:
		delete(t.refused, ev.Conn)
		if c := t.conns[ev.Conn]; c != nil {
			t.finish(c)
			delete(t.conns, ev.Conn)
		}
	case event.KindData:
		t.stats.Bytes += uint64(ev.Size)
		if ev.Dir > event.Egress || ev.Size == 0 {
			return
		}
		if c := t.lookup(ev); c != nil {
			t.data(c, ev)
		}
	}
}

// Expire closes and flushes the connections without events for longer than
// Config.IdleTimeout before now, and gives up waiting on holes older than
// the reorder window.
func (t *Tracker) Expire(now time.Time) {
	for id, c := range t.conns {
		if now.Sub(c.lastSeen) > t.cfg.IdleTimeout {
			t.finish(c)
			delete(t.conns, id)
			t.stats.Expired++
			continue
		}
		t.skipStale(c, now)
		t.pump(c)
		if rs := c.respStream(); rs != nil && now.Sub(rs.start) > t.cfg.StreamTimeout {
			t.stream(c, rs.parser.Head())
		}
	}
}

// Flush closes and flushes every connection, as at shutdown.
func (t *Tracker) Flush() {
	for id, c := range t.conns {
		t.finish(c)
		delete(t.conns, id)
	}
}

// lookup returns the connection of ev, creating it, or nil when it is over
// the limit.
func (t *Tracker) lookup(ev event.Event) *conn {
	c := t.conns[ev.Conn]
	if c == nil {
		if len(t.conns) >= t.cfg.MaxConns {
			if _, ok := t.refused[ev.Conn]; !ok {
				t.stats.DroppedConns++
				if len(t.refused) < t.cfg.MaxConns {
					t.refused[ev.Conn] = struct{}{}
				}
			}
			return nil
		}
		// Without an open event or a known role the connection predates the
		// agent, and its first bytes may fall inside a message.
		c = &conn{id: ev.Conn, midstream: ev.Kind != event.KindOpen && ev.Role == event.RoleUnknown}
		t.conns[ev.Conn] = c
	}
	c.lastSeen = ev.Time
	if ev.Comm != "" && ev.Comm != c.rawComm {
		// A process name may hold any byte; protobuf strings must be UTF-8.
		c.rawComm, c.comm, c.commRepaired = ev.Comm, ev.Comm, !utf8.ValidString(ev.Comm)
		if c.commRepaired {
			c.comm = strings.ToValidUTF8(c.comm, "\uFFFD")
		}
	}
	if ev.CgroupID != 0 {
		c.cgroup = ev.CgroupID
	}
	if ev.Role != event.RoleUnknown {
		c.role = ev.Role
	}
	if ev.Local.IsValid() {
		c.local = ev.Local
	}
	if ev.Remote.IsValid() {
		c.remote = ev.Remote
	}
	return c
}
