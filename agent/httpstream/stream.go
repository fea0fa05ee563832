package httpstream

import (
	"bytes"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/reprise-dev/reprise/agent/event"
	"github.com/reprise-dev/reprise/agent/http1"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// conn is one tracked connection.
type conn struct {
	id            event.ConnID
	rawComm       string // the process name as events carry it, to see it change
	comm          string // rawComm as exported: valid UTF-8
	commRepaired  bool   // rawComm had bytes that are not UTF-8
	cgroup        uint64
	role          event.Role
	local, remote netip.AddrPort
	lastSeen      time.Time
	midstream     bool
	roleAsked     bool // Config.Roles was asked for role

	dirs    [2]stream // by event.Direction
	decided bool      // reqDir is known and the parsers exist
	reqDir  event.Direction
	// upgraded is set after 101 Switching Protocols or a CONNECT tunnel:
	// the bytes that follow are not HTTP/1.
	upgraded bool

	// streaming is the response emitted before its end (see stream); the
	// parser still frames the rest of it, which is then discarded.
	streaming *http1.Message

	queue    []*pending // requests in order, waiting for their responses
	free     *pending   // emptied by flush, for the next request
	requests int        // requests seen, placeholders aside
	seq      uint32     // sequence of the next exchange emitted

	// Text of the exchanges' fields, made once per connection.
	idText, svcText, svcComm string
	svcPort                  uint16
	localEP, remoteEP        endpointCache
}

// segment is a piece of one direction's stream: the bytes of one data event,
// with lost set a hole of that many bytes, or with skip set that many bytes
// whose content never passed through user memory (sendfile) or, with
// discard, that the kernel did not copy because no body keeps them.
type segment struct {
	pos     uint64
	size    uint32 // stream bytes covered; len(data) is less when truncated
	data    []byte
	lost    uint64
	skip    uint64
	discard bool
	reason  reprisev1.Loss // of a hole
	// afterLoss: the kernel flagged the record before this one as dropped.
	afterLoss bool
	at        time.Time
	tid       uint32
	// borrowed: data points into the event's buffer, which the source
	// reuses once Handle returns (see own).
	borrowed bool
}

// stream is one direction of a connection.
type stream struct {
	next   uint64    // stream position of the next byte expected
	future []segment // segments beyond a hole, by position
	ready  []segment // in order, not yet parsed
	held   int       // bytes in future and ready
	parser *http1.Parser
	// skipTo is the stream position the kernel was last told to skip to.
	skipTo uint64
	// start and tid describe the event holding the first byte of the
	// message being parsed; last is the time of the latest byte parsed.
	start time.Time
	tid   uint32
	last  time.Time
}

// data places the bytes of ev in their stream and parses what it can.
func (t *Tracker) data(c *conn, ev event.Event) {
	d := ev.Dir
	s := &c.dirs[d]
	seg := segment{pos: ev.Pos, size: ev.Size, data: ev.Data[:min(len(ev.Data), int(ev.Size))], at: ev.Time, tid: ev.TID,
		afterLoss: ev.AfterLoss}
	seg.borrowed = len(seg.data) > 0
	if ev.Unavailable || ev.Skipped {
		seg.data, seg.skip, seg.borrowed, seg.discard = nil, uint64(ev.Size), false, ev.Skipped
	}
	switch {
	case c.upgraded:
		t.stats.BytesIgnored += uint64(ev.Size)
		return
	case seg.pos+uint64(seg.size) <= s.next:
		return // bytes already seen
	case seg.pos > s.next:
		i, _ := slices.BinarySearchFunc(s.future, seg.pos, func(f segment, pos uint64) int { return compare(f.pos, pos) })
		s.future = slices.Insert(s.future, i, seg)
		s.held += len(seg.data)
		if len(s.future) > maxFuture || s.held > t.cfg.MaxBuffered {
			t.skipGap(c, d)
		}
		// The kernel says the bytes before seg are lost: do not wait for
		// them (nor hold seg) for the reorder window.
		for ev.AfterLoss && s.next < seg.pos && len(s.future) > 0 {
			t.skipGap(c, d)
		}
	default:
		t.accept(c, d, seg)
		t.drain(c, d)
	}
	t.skipStale(c, ev.Time)
	t.pump(c)
	s.own()
}

// own copies the unparsed bytes of the event just handled, if any are still
// held: usually the parser has consumed them (it copies what it keeps), so
// the event's bytes are copied at most once.
func (s *stream) own() {
	for _, segs := range [2][]segment{s.ready, s.future} {
		for i := range segs {
			if segs[i].borrowed {
				segs[i].data = bytes.Clone(segs[i].data)
				segs[i].borrowed = false
			}
		}
	}
}

func compare(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// accept appends seg, which starts at or before the next byte expected, to
// the ready bytes, trimming what was already seen. A truncated copy leaves a
// hole after it.
func (t *Tracker) accept(c *conn, d event.Direction, seg segment) {
	s := &c.dirs[d]
	if cut := s.next - seg.pos; cut > 0 {
		seg.data = seg.data[min(cut, uint64(len(seg.data))):]
		seg.size -= uint32(cut)
		seg.pos = s.next
	}
	s.next += uint64(seg.size)
	if seg.skip > 0 {
		seg.skip = uint64(seg.size)
		if c.decided {
			s.ready = append(s.ready, seg)
		} else {
			// Without a parser there is no framing to keep.
			t.hole(c, d, seg.skip, reprisev1.Loss_LOSS_GAP)
		}
		return
	}
	if len(seg.data) > 0 {
		s.ready = append(s.ready, seg)
		s.held += len(seg.data)
	}
	if lost := uint64(seg.size) - uint64(len(seg.data)); lost > 0 {
		t.hole(c, d, lost, reprisev1.Loss_LOSS_COPY_FAILED)
	}
}

// hole records lost bytes at the end of the ready bytes of direction d.
func (t *Tracker) hole(c *conn, d event.Direction, lost uint64, reason reprisev1.Loss) {
	s := &c.dirs[d]
	if c.decided {
		// The parser learns of it in stream order, after the bytes before.
		s.ready = append(s.ready, segment{lost: lost, reason: reason})
		return
	}
	// Without parsers yet, the bytes before the hole cannot be joined to
	// those after it: drop them and have the parsers start by resyncing.
	for _, seg := range s.ready {
		lost += uint64(len(seg.data))
		s.held -= len(seg.data)
	}
	s.ready = nil
	t.stats.BytesLost += lost
	c.midstream = true
}

// drain moves the held segments that the stream has reached to ready.
func (t *Tracker) drain(c *conn, d event.Direction) {
	s := &c.dirs[d]
	for len(s.future) > 0 && s.future[0].pos <= s.next {
		f := s.future[0]
		s.future = s.future[1:]
		s.held -= len(f.data)
		if f.pos+uint64(f.size) > s.next {
			t.accept(c, d, f)
		}
	}
}

// skipGap gives up on the hole before the first held segment of direction d.
func (t *Tracker) skipGap(c *conn, d event.Direction) {
	s := &c.dirs[d]
	f := s.future[0]
	reason := reprisev1.Loss_LOSS_GAP
	if f.afterLoss {
		reason = reprisev1.Loss_LOSS_RING_FULL
	}
	t.hole(c, d, f.pos-s.next, reason)
	s.next = f.pos
	t.drain(c, d)
}

// skipStale gives up on holes that segments after them outlived by more
// than the reorder window.
func (t *Tracker) skipStale(c *conn, now time.Time) {
	for d := range c.dirs {
		s := &c.dirs[d]
		for len(s.future) > 0 && now.Sub(s.future[0].at) > reorderWindow {
			t.skipGap(c, event.Direction(d))
		}
	}
}

// pump decides the direction if needed and feeds ready bytes to the parsers:
// all requests, and responses while a request waits for one.
func (t *Tracker) pump(c *conn) {
	if c.upgraded {
		for d := range c.dirs {
			s := &c.dirs[d]
			t.stats.BytesIgnored += uint64(s.held)
			s.ready, s.future, s.held = nil, nil, 0
		}
		return
	}
	if c.decided || t.decide(c) {
		t.feed(c, c.reqDir)
		t.feed(c, c.reqDir^1)
	}
	// Looking for a start line rescans what an undecided direction holds,
	// so it holds less.
	limit := t.cfg.MaxBuffered
	if !c.decided {
		limit = min(limit, maxUndecided)
	}
	for d := range c.dirs {
		if s := &c.dirs[d]; s.held > limit {
			t.overflow(c, event.Direction(d))
		}
	}
}

// overflow drops all the bytes direction d holds. Once the connection is
// known to be HTTP that is a hole the parser resynchronises after; before,
// the bytes are likely not HTTP at all.
func (t *Tracker) overflow(c *conn, d event.Direction) {
	s := &c.dirs[d]
	var dropped uint64
	for _, seg := range s.ready {
		dropped += uint64(len(seg.data)) + seg.lost
	}
	if n := len(s.future); n > 0 {
		// The held segments go too, with the holes between them.
		end := s.future[n-1].pos + uint64(s.future[n-1].size)
		dropped += end - s.next
		s.next = end
	}
	s.ready, s.future, s.held = nil, nil, 0
	if !c.decided {
		t.stats.BytesIgnored += dropped
		c.midstream = true
		return
	}
	// Nothing is left before the hole, so the parser can learn of it now.
	t.stats.Overflows++
	t.desync(c, d, dropped, reprisev1.Loss_LOSS_BUFFER_OVERFLOW)
}

// decide finds which direction carries requests. This is the one place a
// connection's role is decided, in this order:
//  1. the start lines: the direction where a request line shows, or the
//     other one where a status line shows;
//  2. when both directions look like requests, the role the kernel saw at
//     the handshake (an open event, or the role on the data events);
//  3. for a connection opened before the capture, which has none, the
//     role Config.Roles finds (sock_diag: a listener on the local port
//     makes it the server), asked once;
//  4. otherwise the direction stays undecided until one side alone shows
//     a start line.
func (t *Tracker) decide(c *conn) bool {
	var looks [2]bool
	for d := range c.dirs {
		b := c.dirs[d].peek()
		if http1.IndexRequestStart(b) >= 0 {
			looks[d] = true
		}
		if http1.IndexResponseStart(b) >= 0 {
			looks[d^1] = true
		}
	}
	if looks[event.Ingress] && looks[event.Egress] && c.role == event.RoleUnknown && !c.roleAsked && t.cfg.Roles != nil {
		c.roleAsked = true
		c.role, _ = t.cfg.Roles.Role(c.id.TGID, c.local, c.remote) // unknown on error: the process is gone
	}
	switch {
	case looks[event.Ingress] && looks[event.Egress] && c.role == event.RoleServer, looks[event.Ingress] && !looks[event.Egress]:
		c.reqDir = event.Ingress
	case looks[event.Ingress] && looks[event.Egress] && c.role == event.RoleClient, looks[event.Egress] && !looks[event.Ingress]:
		c.reqDir = event.Egress
	default:
		return false
	}
	c.decided = true
	pcfg := http1.Config{BodyCap: t.cfg.BodyCap}
	req, resp := &c.dirs[c.reqDir], &c.dirs[c.reqDir^1]
	req.parser = http1.NewRequestParser(pcfg)
	resp.parser = http1.NewResponseParser(pcfg, c.answeredMethod)
	if c.midstream {
		req.parser.Resync()
		resp.parser.Resync()
	}
	return true
}

// peek returns the ready bytes of s in one slice.
func (s *stream) peek() []byte {
	if len(s.ready) == 1 {
		return s.ready[0].data
	}
	var b []byte
	for _, seg := range s.ready {
		b = append(b, seg.data...)
	}
	return b
}

// feed parses the ready bytes of direction d, stopping on responses when no
// request waits for one: its method is needed to frame it, and its request
// may come on another CPU a little later.
func (t *Tracker) feed(c *conn, d event.Direction) {
	s := &c.dirs[d]
	isReq := d == c.reqDir
	i := 0 // segments consumed
	for i < len(s.ready) && !c.upgraded {
		seg := &s.ready[i]
		if keep, n := s.parser.Discarding(); seg.lost > 0 && keep == 0 && n >= int64(seg.lost) {
			// Bytes of a body past its cap, which it would not keep: the
			// loss costs the exchange nothing.
			seg.skip, seg.discard, seg.lost = seg.lost, true, 0
		}
		if seg.lost > 0 {
			t.desync(c, d, seg.lost, seg.reason)
			i++
			continue
		}
		if !isReq && !s.parser.InMessage() && c.unanswered() == nil {
			break
		}
		if seg.skip > 0 {
			t.skip(c, d, seg)
			i++
			continue
		}
		if !s.parser.InMessage() {
			s.start, s.tid = seg.at, seg.tid
		}
		n, m, err := s.parser.Feed(seg.data)
		seg.data = seg.data[n:]
		s.held -= n
		s.last = seg.at
		if len(seg.data) == 0 {
			i++
		}
		switch {
		case err != nil:
			t.stats.ParseErrors++
			t.desync(c, d, 0, reprisev1.Loss_LOSS_PARSE_ERROR)
		case isReq:
			t.request(c, m)
		case m != nil:
			t.response(c, m)
		default:
			// An event stream never ends: emit it once its body is capped.
			if h := s.parser.Head(); h != nil && h != c.streaming && len(h.Body) >= t.cfg.BodyCap &&
				strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") {
				t.stream(c, h)
			}
		}
	}
	if i == len(s.ready) {
		// Usually all of it: keep the array for the next event's segment.
		clear(s.ready)
		s.ready = s.ready[:0]
	} else {
		s.ready = s.ready[i:]
	}
	t.skipAhead(c, d)
}

// minSkip is the fewest bytes worth telling the kernel to skip: one
// syscall to update its map against the copy of a chunk or two.
const minSkip = 32 << 10

// skipAhead tells the kernel, through Config.Skipper, which bytes of
// direction d the parser will not keep, so it does not copy them: the part
// of a body past the cap. It is known once the head is read, before those
// bytes move, so the kernel need not wait for the agent to catch up.
func (t *Tracker) skipAhead(c *conn, d event.Direction) {
	s := &c.dirs[d]
	keep, n := s.parser.Discarding()
	if t.cfg.Skipper == nil || n < minSkip {
		return
	}
	// The parser's position: what the stream reached less what waits.
	pos := s.next
	for _, seg := range s.ready {
		pos -= uint64(len(seg.data)) + seg.lost + seg.skip
	}
	from := pos + uint64(keep)
	to := from + uint64(n)
	if n == math.MaxInt64 { // a body that ends with the stream
		to = math.MaxUint64
	}
	if to <= s.skipTo {
		return
	}
	s.skipTo = to
	if err := t.cfg.Skipper.Skip(c.id, d, from, to); err != nil {
		t.stats.SkipErrors++
	}
}

// skip accounts for bytes sent with sendfile or left uncopied past a body's
// cap: inside a body the framing goes on and the body is marked unavailable
// or truncated. Those after the body's end are lost, the start of the next
// message among them (the kernel copies only the ends of a syscall past its
// cap, and that message started in the middle): desync counts them and the
// parser resyncs, in the syscall's tail or later.
func (t *Tracker) skip(c *conn, d event.Direction, seg *segment) {
	s := &c.dirs[d]
	pass, counter := s.parser.Skip, &t.stats.BytesUnavailable
	if seg.discard {
		pass, counter = s.parser.Discard, &t.stats.BytesSkipped
	}
	m, used := pass(int64(seg.skip))
	if used > 0 {
		*counter += uint64(used)
		s.last = seg.at
		if d == c.reqDir {
			t.request(c, m)
		} else if m != nil {
			t.response(c, m)
		}
	}
	if rest := seg.skip - uint64(used); rest > 0 {
		t.desync(c, d, rest, reprisev1.Loss_LOSS_GAP)
	}
}
