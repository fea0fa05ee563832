package conntrack

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/google/uuid"
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
	// streaming is set when resp was emitted before its end.
	streaming bool
	// placeholder stands in the queue for a request lost to a hole, so
	// that its response is not paired with the next request.
	placeholder bool
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
		t.push(c, &pending{req: h, start: s.start, tid: s.tid})
		c.requests++
	}
	if m == nil {
		return
	}
	e := c.last()
	if e == nil || e.req != m {
		e = &pending{req: m, start: s.start, tid: s.tid}
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
// direction d. The message they cut is kept as far as it was read, or a
// placeholder takes the place of a lost request; then the parser resyncs.
func (t *Tracker) desync(c *conn, d event.Direction, lost uint64) {
	s := &c.dirs[d]
	t.stats.BytesLost += lost
	t.stats.Resyncs++
	if d == c.reqDir {
		if h, e := s.parser.Head(), c.last(); h != nil && e != nil && e.req == h {
			h.Incomplete, e.reqDone, e.lost = true, true, e.lost+lost
			e.seen(s.last)
		} else if c.requests > 0 {
			t.push(c, &pending{placeholder: true, reqDone: true})
		}
	} else {
		t.cut(c, s.parser.Head(), lost)
	}
	s.parser.Resync()
	t.flush(c)
}

// cut gives the oldest unanswered request the response that was cut short,
// or nil when none of it was read.
func (t *Tracker) cut(c *conn, partial *http1.Message, lost uint64) {
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
func (t *Tracker) flush(c *conn) {
	for len(c.queue) > 0 && c.queue[0].answered && c.queue[0].reqDone {
		if e := c.queue[0]; !e.placeholder {
			t.send(c, e)
		}
		c.queue[0] = nil
		c.queue = c.queue[1:]
	}
	if len(c.queue) == 0 {
		c.queue = nil
	}
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
			t.cut(c, m, 0)
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
	x := &reprisev1.Exchange{
		Id:        uuid.Must(uuid.NewV7()).String(),
		StartTime: timestamppb.New(e.start),
		Duration:  durationpb.New(max(e.end.Sub(e.start), 0)),
		Direction: dir,
		Local:     c.localEP.endpoint(c.local),
		Remote:    c.remoteEP.endpoint(c.remote),
		Process:   &reprisev1.Process{Pid: c.id.TGID, Tid: e.tid, Comm: c.comm, CgroupId: c.cgroup},
		Service:   c.service(port),
		Request: &reprisev1.HttpRequest{
			Method:        e.req.Method,
			Target:        e.req.Target,
			Host:          e.req.Get("Host"),
			Proto:         e.req.Proto,
			Headers:       headers(e.req.Headers),
			Body:          e.req.Body,
			BodyTruncated: e.req.BodyTruncated,
			BodySize:      e.req.BodySize,
		},
		ConnectionId: c.idString(),
		Sequence:     c.seq,
		Capture: &reprisev1.Capture{
			Source:                 reprisev1.CaptureSource_CAPTURE_SOURCE_SYSCALL,
			BytesLost:              e.lost,
			RequestIncomplete:      e.req.Incomplete || e.req.BodyTruncated,
			ResponseIncomplete:     e.resp == nil || e.resp.Incomplete || e.resp.BodyTruncated || e.streaming,
			ResponseStreaming:      e.streaming,
			RequestBodyUnavailable: e.req.BodyUnavailable,
		},
	}
	if r := e.resp; r != nil {
		x.Capture.ResponseBodyUnavailable = r.BodyUnavailable
		x.Response = &reprisev1.HttpResponse{
			StatusCode:    int32(r.StatusCode),
			Proto:         r.Proto,
			Headers:       headers(r.Headers),
			Body:          r.Body,
			BodyTruncated: r.BodyTruncated,
			BodySize:      r.BodySize,
		}
	} else {
		t.stats.UnansweredRequests++
	}
	c.seq++
	t.stats.Exchanges++
	if x.Capture.RequestIncomplete || x.Capture.ResponseIncomplete {
		t.stats.Incomplete++
	}
	t.emit(x)
}

func headers(hs []http1.Header) []*reprisev1.Header {
	out := make([]*reprisev1.Header, len(hs))
	for i, h := range hs {
		out[i] = &reprisev1.Header{Name: h.Name, Value: h.Value}
	}
	return out
}

// endpointCache keeps the text of a connection's address: formatting it
// for every exchange of a keep-alive connection showed in profiles.
type endpointCache struct {
	ap netip.AddrPort
	ip string
}

// endpoint returns nil for an unknown address. IPv4-mapped addresses of
// dual-stack sockets are shown as IPv4.
func (e *endpointCache) endpoint(ap netip.AddrPort) *reprisev1.Endpoint {
	if !ap.IsValid() {
		return nil
	}
	if ap.Addr() != e.ap.Addr() || e.ip == "" {
		e.ap, e.ip = ap, ap.Addr().Unmap().String()
	}
	return &reprisev1.Endpoint{Ip: e.ip, Port: uint32(ap.Port())}
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
