package httpstream

import (
	"net/netip"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/agent/event"
	"github.com/reprise-dev/reprise/agent/http1"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// pending is a request waiting to be emitted with its response.
type pending struct {
	req     *http1.Message // head read; body complete once reqDone
	reqDone bool
	resp    *http1.Message
	// answered is set once resp is final: a response, a part of one, or
	// nil when none will come.
	answered bool
	start    time.Time // event of the first request byte
	tid      uint32
	end      time.Time // event of the last byte seen
	lost     uint64
	loss     reprisev1.Loss // the first cause of an incomplete part
	// streaming is set when resp was emitted before its end.
	streaming bool
	// placeholder stands in the queue for a request lost to a hole, so
	// that its response is not paired with the next request.
	placeholder bool
}

// lose records a cause of an incomplete part; the first one stays.
func (e *pending) lose(reason reprisev1.Loss) {
	if e.loss == reprisev1.Loss_LOSS_UNSPECIFIED {
		e.loss = reason
	}
}

func (e *pending) seen(at time.Time) {
	if at.After(e.end) {
		e.end = at
	}
}

// unanswered returns the oldest request still waiting for a response.
func (c *conn) unanswered() *pending {
	for _, e := range c.queue {
		if !e.answered {
			return e
		}
	}
	return nil
}

// answeredMethod tells the response parser which request it is answering.
func (c *conn) answeredMethod() string {
	if e := c.unanswered(); e != nil && e.req != nil {
		return e.req.Method
	}
	return ""
}

func (c *conn) last() *pending {
	if len(c.queue) == 0 {
		return nil
	}
	return c.queue[len(c.queue)-1]
}

func (t *Tracker) push(c *conn, e *pending) {
	if len(c.queue) >= maxPending {
		// Responses are not coming (or not seen): let the oldest go
		// without one rather than hold requests without bound.
		c.queue[0].answered, c.queue[0].reqDone = true, true
		t.flush(c)
	}
	c.queue = append(c.queue, e)
}

// request queues a request once its head is read, so that its response can
// be parsed before its body ends (100-continue), and completes it with m.
func (t *Tracker) request(c *conn, m *http1.Message) {
	s := &c.dirs[c.reqDir]
	if h := s.parser.Head(); h != nil && (c.last() == nil || c.last().req != h) {
		e := c.newPending()
		e.req, e.start, e.tid = h, s.start, s.tid
		t.push(c, e)
		c.requests++
	}
	if m == nil {
		return
	}
	e := c.last()
	if e == nil || e.req != m {
		e = c.newPending()
		e.req, e.start, e.tid = m, s.start, s.tid
		t.push(c, e)
		c.requests++
	}
	e.reqDone = true
	e.seen(s.last)
	t.flush(c)
}

// response pairs a complete response with the oldest unanswered request.
func (t *Tracker) response(c *conn, m *http1.Message) {
	if m == c.streaming {
		c.streaming = nil // already emitted
		return
	}
	if m.StatusCode < 200 && m.StatusCode != 101 {
		return // interim responses such as 100 Continue
	}
	s := &c.dirs[c.reqDir^1]
	e := c.unanswered()
	switch {
	case e == nil || s.start.Before(e.start):
		// A response cannot start before its request: this one answers a
		// request the agent did not see.
		t.stats.UnmatchedResponses++
		return
	case e.placeholder:
		t.stats.UnmatchedResponses++
		e.answered = true
		t.flush(c)
		return
	}
	e.resp, e.answered = m, true
	e.seen(s.last)
	if m.StatusCode == 101 || e.req.Method == "CONNECT" && m.StatusCode < 300 {
		c.upgraded = true
	}
	t.flush(c)
}

// desync handles lost bytes (or, with lost 0, a malformed message) in
// direction d, for reason. The message they cut is kept as far as it was
// read, or a placeholder takes the place of a lost request; then the parser
// resyncs.
func (t *Tracker) desync(c *conn, d event.Direction, lost uint64, reason reprisev1.Loss) {
	s := &c.dirs[d]
	t.stats.BytesLost += lost
	t.stats.Resyncs++
	if d == c.reqDir {
		if h, e := s.parser.Head(), c.last(); h != nil && e != nil && e.req == h {
			h.Incomplete, e.reqDone, e.lost = true, true, e.lost+lost
			e.lose(reason)
			e.seen(s.last)
		} else if c.requests > 0 {
			e := c.newPending()
			e.placeholder, e.reqDone = true, true
			t.push(c, e)
		}
	} else {
		t.cut(c, s.parser.Head(), lost, reason)
	}
	s.parser.Resync()
	t.flush(c)
}

// cut gives the oldest unanswered request the response that was cut short
// for reason, or nil when none of it was read.
func (t *Tracker) cut(c *conn, partial *http1.Message, lost uint64, reason reprisev1.Loss) {
	if partial != nil && partial == c.streaming {
		c.streaming = nil // already emitted
		return
	}
	e := c.unanswered()
	if e == nil {
		return
	}
	e.answered = true
	if e.placeholder {
		return
	}
	if partial != nil {
		partial.Incomplete = true
	}
	e.resp, e.lost = partial, e.lost+lost
	e.lose(reason)
	e.seen(c.dirs[c.reqDir^1].last)
}

// respStream returns the response direction when a response is being read
// and was not emitted yet, or nil.
func (c *conn) respStream() *stream {
	if !c.decided || c.upgraded {
		return nil
	}
	rs := &c.dirs[c.reqDir^1]
	if h := rs.parser.Head(); h == nil || h == c.streaming {
		return nil
	}
	return rs
}

// stream emits the exchange of the response m before it ends, so that a
// response that never ends (server-sent events) is recorded and does not
// hold the requests behind it.
func (t *Tracker) stream(c *conn, m *http1.Message) {
	e := c.unanswered()
	if e == nil || e.placeholder || !e.reqDone {
		return
	}
	e.resp, e.answered, e.streaming = m, true, true
	e.seen(c.dirs[c.reqDir^1].last)
	c.streaming = m
	t.stats.Streamed++
	t.flush(c)
}

// flush emits the exchanges at the head of the queue that are complete.
// The queue's array, one pending and the messages sent are kept for the
// next requests: on a keep-alive connection each exchange otherwise
// allocated them all again.
func (t *Tracker) flush(c *conn) {
	i := 0
	for i < len(c.queue) && c.queue[i].answered && c.queue[i].reqDone {
		e := c.queue[i]
		if !e.placeholder {
			t.send(c, e)
		}
		// The exchange holds copies of the messages' fields, and the
		// queue held their only pointers, but for a response emitted
		// while its parser still reads it.
		if e.req != nil {
			c.dirs[c.reqDir].parser.Recycle(e.req)
		}
		if e.resp != nil && e.resp != c.streaming {
			c.dirs[c.reqDir^1].parser.Recycle(e.resp)
		}
		*e = pending{}
		c.free = e
		i++
	}
	if i == 0 {
		return
	}
	n := copy(c.queue, c.queue[i:])
	clear(c.queue[n:])
	c.queue = c.queue[:n]
}

// newPending returns a pending to fill, the one flush freed last if any.
func (c *conn) newPending() *pending {
	e := c.free
	if e == nil {
		return &pending{}
	}
	c.free = nil
	return e
}

// finish ends a connection: holes are given up, the end of the stream ends
// close-delimited responses, and requests still waiting are emitted without
// a response.
func (t *Tracker) finish(c *conn) {
	for d := range c.dirs {
		for len(c.dirs[d].future) > 0 {
			t.skipGap(c, event.Direction(d))
		}
	}
	t.pump(c)
	if c.decided && !c.upgraded {
		req, resp := &c.dirs[c.reqDir], &c.dirs[c.reqDir^1]
		if m := req.parser.Close(); m != nil {
			if e := c.last(); e != nil && e.req == m {
				e.reqDone = true
				if m.Incomplete {
					e.lose(reprisev1.Loss_LOSS_CONNECTION_CLOSED)
				}
				e.seen(req.last)
			}
		}
		if len(resp.ready) > 0 {
			// Response bytes no request was seen for.
			t.stats.UnmatchedResponses++
		}
		switch m := resp.parser.Close(); {
		case m == nil:
		case m.Incomplete:
			t.cut(c, m, 0, reprisev1.Loss_LOSS_CONNECTION_CLOSED)
		default:
			t.response(c, m) // delimited by the close
		}
	}
	for _, s := range c.dirs {
		t.stats.BytesIgnored += uint64(s.held)
	}
	for _, e := range c.queue {
		e.answered, e.reqDone = true, true
	}
	t.flush(c)
}

// send builds and emits the exchange of e.
func (t *Tracker) send(c *conn, e *pending) {
	if !t.cfg.Filter.Match(e.req.Method, e.req.Target) {
		c.seq++
		t.stats.Filtered++
		return
	}
	dir, port := reprisev1.Direction_DIRECTION_OUTBOUND, c.remote.Port()
	if c.reqDir == event.Ingress {
		dir, port = reprisev1.Direction_DIRECTION_INBOUND, c.local.Port()
	}
	// One allocation for the messages of the exchange and, up to eight of
	// them, the header fields: they were most of the agent's allocations
	// under small GETs.
	nh := len(e.req.Headers)
	if e.resp != nil {
		nh += len(e.resp.Headers)
	}
	var a *exchangeAlloc
	var hs []*reprisev1.Header
	if nh <= len(smallExchange{}.vals) {
		sa := &smallExchange{}
		a, hs = &sa.exchangeAlloc, headers(sa.ptrs[:nh], sa.vals[:nh])
	} else {
		a, hs = &exchangeAlloc{}, headers(make([]*reprisev1.Header, nh), make([]reprisev1.Header, nh))
	}
	a.start.Seconds, a.start.Nanos = e.start.Unix(), int32(e.start.Nanosecond())
	d := max(e.end.Sub(e.start), 0)
	a.duration.Seconds, a.duration.Nanos = int64(d/time.Second), int32(d%time.Second)
	a.process.Pid, a.process.Tid, a.process.Comm, a.process.CgroupId = c.id.TGID, e.tid, c.comm, c.cgroup
	a.req.Method, a.req.Target, a.req.Host, a.req.Proto = e.req.Method, e.req.Target, e.req.Get("Host"), e.req.Proto
	a.req.Headers, hs = fill(hs, e.req.Headers)
	a.req.Body, a.req.BodyTruncated, a.req.BodySize = e.req.Body, e.req.BodyTruncated, e.req.BodySize
	a.capture.Source = reprisev1.CaptureSource_CAPTURE_SOURCE_SYSCALL
	a.capture.BytesLost = e.lost
	// A body cut at the cap is marked truncated, not incomplete: its
	// message was framed to its end.
	a.capture.RequestIncomplete = e.req.Incomplete
	a.capture.ResponseIncomplete = e.resp == nil || e.resp.Incomplete || e.streaming
	a.capture.ResponseStreaming = e.streaming
	a.capture.RequestBodyUnavailable = e.req.BodyUnavailable
	x := &a.x
	x.Id = t.ids.next(time.Now())
	x.StartTime, x.Duration, x.Direction = &a.start, &a.duration, dir
	x.Local, x.Remote = c.localEP.endpoint(c.local, &a.local), c.remoteEP.endpoint(c.remote, &a.remote)
	x.Process, x.Service = &a.process, c.service(port)
	x.Request, x.ConnectionId, x.Sequence, x.Capture = &a.req, c.idString(), c.seq, &a.capture
	repaired := e.req.TextRepaired || c.commRepaired
	if r := e.resp; r != nil {
		a.capture.ResponseBodyUnavailable = r.BodyUnavailable
		a.resp.StatusCode, a.resp.Proto = int32(r.StatusCode), r.Proto
		a.resp.Headers, _ = fill(hs, r.Headers)
		repaired = repaired || r.TextRepaired
		a.resp.Body, a.resp.BodyTruncated, a.resp.BodySize = r.Body, r.BodyTruncated, r.BodySize
		x.Response = &a.resp
	} else {
		t.stats.UnansweredRequests++
		e.lose(reprisev1.Loss_LOSS_NO_RESPONSE)
	}
	if repaired {
		t.stats.InvalidText++
	}
	c.seq++
	t.stats.Exchanges++
	if x.Capture.RequestIncomplete || x.Capture.ResponseIncomplete {
		t.stats.Incomplete++
		if int(e.loss) < len(t.stats.IncompleteBy) {
			t.stats.IncompleteBy[e.loss]++
		}
		a.capture.Loss = e.loss
	}
	t.emit(x)
}

// Release gives the bodies of x, an exchange a Tracker emitted, back to the
// parsers once nothing refers to x any more (the collector acknowledged
// it). The bodies of exchanges emitted incomplete or streaming are left to
// the GC: a parser may still write to them.
func Release(x *reprisev1.Exchange) {
	if c := x.GetCapture(); c == nil || c.RequestIncomplete || c.ResponseIncomplete {
		return
	}
	http1.ReleaseBody(x.GetRequest().GetBody())
	http1.ReleaseBody(x.GetResponse().GetBody())
}

// exchangeAlloc holds the messages of one exchange, allocated together.
type exchangeAlloc struct {
	x             reprisev1.Exchange
	start         timestamppb.Timestamp
	duration      durationpb.Duration
	process       reprisev1.Process
	local, remote reprisev1.Endpoint
	req           reprisev1.HttpRequest
	resp          reprisev1.HttpResponse
	capture       reprisev1.Capture
}

// smallExchange is an exchange with room for a few header fields.
type smallExchange struct {
	exchangeAlloc
	vals [8]reprisev1.Header
	ptrs [8]*reprisev1.Header
}

// headers points ptrs at vals, as room for the header fields of both
// messages: they share two allocations (or the exchange's) instead of two
// each.
func headers(ptrs []*reprisev1.Header, vals []reprisev1.Header) []*reprisev1.Header {
	for i := range ptrs {
		ptrs[i] = &vals[i]
	}
	return ptrs
}

// fill sets the first len(hs) of room to hs and returns them and the rest.
func fill(room []*reprisev1.Header, hs []http1.Header) (used, rest []*reprisev1.Header) {
	for i, h := range hs {
		room[i].Name, room[i].Value = h.Name, h.Value
	}
	return room[:len(hs):len(hs)], room[len(hs):]
}

// endpointCache keeps the text of a connection's address: formatting it
// for every exchange of a keep-alive connection showed in profiles.
type endpointCache struct {
	ap netip.AddrPort
	ip string
}

// endpoint fills ep with ap and returns it, or nil for an unknown address.
// IPv4-mapped addresses of dual-stack sockets are shown as IPv4.
func (e *endpointCache) endpoint(ap netip.AddrPort, ep *reprisev1.Endpoint) *reprisev1.Endpoint {
	if !ap.IsValid() {
		return nil
	}
	if ap.Addr() != e.ap.Addr() || e.ip == "" {
		e.ap, e.ip = ap, ap.Addr().Unmap().String()
	}
	ep.Ip, ep.Port = e.ip, uint32(ap.Port())
	return ep
}

// idString returns the connection id as exported, formatted once.
func (c *conn) idString() string {
	if c.idText == "" {
		c.idText = c.id.String()
	}
	return c.idText
}

// service returns comm:port, kept while comm and port stay the same.
func (c *conn) service(port uint16) string {
	if c.svcText == "" || c.svcComm != c.comm || c.svcPort != port {
		c.svcComm, c.svcPort, c.svcText = c.comm, port, c.comm+":"+strconv.Itoa(int(port))
	}
	return c.svcText
}
