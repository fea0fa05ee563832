package httpstream

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/agent/event"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// sendfile adds a data event of n bytes whose content is unavailable.
func (s *script) sendfile(n uint32) *script {
	s.at = s.at.Add(time.Millisecond)
	ev := s.event(event.KindData)
	ev.Dir, ev.Pos, ev.Size, ev.Unavailable = event.Egress, s.pos[event.Egress], n, true
	s.pos[event.Egress] += uint64(n)
	s.events = append(s.events, ev)
	return s
}

func TestMessageKinds(t *testing.T) {
	tests := []struct {
		name string
		s    *script
		want string
	}{
		{
			name: "HTTP/1.0 keep-alive with content-length",
			s: server(id1).open().in("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").
				out("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\na").
				in("GET /b HTTP/1.0\r\n\r\n").out("HTTP/1.0 200 OK\r\n\r\nb until close").close(),
			want: "#0 GET /a -> 200 [a]\n#1 GET /b -> 200 [b until close]\n",
		},
		{
			name: "chunked request and response with trailers",
			s: server(id1).open().in("POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-Sum: 1\r\n\r\n").
				out("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n1\r\nz\r\n0\r\nX-T: v\r\n\r\n").close(),
			want: "#0 POST /t [ab] -> 200 [z]\n",
		},
		{
			name: "103 early hints, 204 and 304",
			s: server(id1).open().in("GET /1 HTTP/1.1\r\n\r\n").
				out("HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1").
				in("DELETE /2 HTTP/1.1\r\n\r\n").out("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n").
				in("GET /3 HTTP/1.1\r\nIf-None-Match: \"x\"\r\n\r\n").out("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n").
				in("GET /4 HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n4").close(),
			want: "#0 GET /1 -> 200 [1]\n#1 DELETE /2 -> 204\n#2 GET /3 -> 304\n#3 GET /4 -> 200 [4]\n",
		},
		{
			name: "compressed body kept as sent",
			s: server(id1).open().in("GET /z HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n").
				out("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\n\x1f\x8b\x08\x00").close(),
			want: "#0 GET /z -> 200 [\x1f\x8b\x08\x00]\n",
		},
		{
			name: "response written in many small writes",
			s: server(id1).open().in("GET /w HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\n").out("Content-Length: 5\r\n").
				out("\r\n").out("he").out("llo").close(),
			want: "#0 GET /w -> 200 [hello]\n",
		},
	}
	for _, tt := range tests {
		for name, evs := range map[string][]event.Event{
			"whole":          tt.s.events,
			"bytes, swapped": swap(split(tt.s.events, 1)),
		} {
			tr, got := run(Config{}, evs)
			if s := summaries(got); s != tt.want {
				t.Errorf("%s, %s:\n got %s\nwant %s", tt.name, name, s, tt.want)
			}
			if st := tr.Stats(); st.BytesLost != 0 || st.ParseErrors != 0 || st.UnmatchedResponses != 0 {
				t.Errorf("%s, %s: stats %+v", tt.name, name, st)
			}
		}
	}
}

func TestSendfile(t *testing.T) {
	// nginx writes the head, then sends the file with sendfile; the next
	// request on the connection must still pair with its own response.
	s := server(id1).open().in("GET /static HTTP/1.1\r\n\r\n").
		out("HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n").sendfile(200000).sendfile(100000).
		in("GET /next HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").close()
	tr, got := run(Config{}, s.events)
	if s := summaries(got); s != "#0 GET /static -> 200\n#1 GET /next -> 200 [ok]\n" {
		t.Fatalf("got %s", s)
	}
	r := got[0].Response
	if r.BodySize != 300000 || !r.BodyTruncated || len(r.Body) != 0 || !got[0].Capture.ResponseBodyUnavailable {
		t.Fatalf("response body size %d truncated %v kept %d unavailable %v", r.BodySize, r.BodyTruncated, len(r.Body), got[0].Capture.ResponseBodyUnavailable)
	}
	if got[1].Capture.ResponseBodyUnavailable || got[1].Capture.ResponseIncomplete {
		t.Fatalf("second exchange marked: %+v", got[1].Capture)
	}
	if st := tr.Stats(); st.BytesUnavailable != 300000 || st.BytesLost != 0 || st.Resyncs != 0 || st.Incomplete != 0 {
		t.Fatalf("stats %+v", st)
	}

	// sendfile bytes beyond the framed body end it; the rest are lost and
	// the next message resyncs.
	s = server(id1).open().in("GET /a HTTP/1.1\r\n\r\n").
		out("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n").sendfile(50).
		in("GET /b HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb").close()
	tr, got = run(Config{}, s.events)
	if s := summaries(got); s != "#0 GET /a -> 200\n#1 GET /b -> 200 [b]\n" {
		t.Fatalf("got %s", s)
	}
	if st := tr.Stats(); st.BytesLost != 40 || st.BytesUnavailable != 10 || st.Resyncs != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestKeepAliveStateDoesNotGrow(t *testing.T) {
	const n = 5000
	s := server(id1).open()
	for i := range n {
		body := fmt.Sprint(i)
		s.in(fmt.Sprintf("POST /r/%d HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)).
			out(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	}
	var count int
	tr := New(Config{}, func(x *reprisev1.Exchange) {
		if want := fmt.Sprintf("/r/%d", count); x.Request.Target != want || string(x.Response.Body) != fmt.Sprint(count) {
			t.Fatalf("exchange %d: %s", count, summary(x))
		}
		count++
	})
	for _, ev := range s.events {
		tr.Handle(ev)
	}
	c := tr.conns[id1]
	if count != n || len(c.queue) != 0 || c.dirs[0].held != 0 || c.dirs[1].held != 0 ||
		cap(c.dirs[0].ready) > 1 || cap(c.dirs[1].ready) > 1 {
		t.Fatalf("after %d exchanges: queue %d held %d/%d ready caps %d/%d", count, len(c.queue),
			c.dirs[0].held, c.dirs[1].held, cap(c.dirs[0].ready), cap(c.dirs[1].ready))
	}
}

func TestLargeBodies(t *testing.T) {
	const size = 3 << 20
	chunk := strings.Repeat("u", 64<<10)
	s := server(id1).open().in(fmt.Sprintf("PUT /up HTTP/1.1\r\nContent-Length: %d\r\n\r\n", size))
	for range size / len(chunk) {
		s.in(chunk)
	}
	s.out(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size))
	for range size / len(chunk) {
		s.out(chunk)
	}
	s.in("GET /after HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").close()
	_, got := run(Config{}, s.events)
	if len(got) != 2 || got[1].Request.Target != "/after" {
		t.Fatalf("got %s", summaries(got))
	}
	rq, rs := got[0].Request, got[0].Response
	if len(rq.Body) != DefaultBodyCap || rq.BodySize != size || !rq.BodyTruncated ||
		len(rs.Body) != DefaultBodyCap || rs.BodySize != size || !rs.BodyTruncated {
		t.Fatalf("request kept %d of %d, response kept %d of %d", len(rq.Body), rq.BodySize, len(rs.Body), rs.BodySize)
	}
	if got[0].Capture.BytesLost != 0 || got[0].Capture.ResponseBodyUnavailable {
		t.Fatalf("capture %+v", got[0].Capture)
	}
}

func TestStreamingResponse(t *testing.T) {
	id2 := id1
	id2.FD++
	sse := server(id1).open().in("GET /events HTTP/1.1\r\n\r\n").
		out("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n").
		out("9\r\ndata: 1\n\n\r\n")
	other := server(id2).open().in("GET /other HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	var got []*reprisev1.Exchange
	tr := New(Config{StreamTimeout: 30 * time.Second}, func(x *reprisev1.Exchange) { got = append(got, x) })
	for _, ev := range append(sse.events, other.events...) {
		tr.Handle(ev)
	}
	// The stream does not hold the other connection's exchange.
	if s := summaries(got); s != "#0 GET /other -> 200\n" {
		t.Fatalf("before the timeout: %s", s)
	}
	// More events keep the connection from idling; the stream timeout
	// emits what was read.
	sse.events = nil
	sse.at = sse.at.Add(20 * time.Second)
	sse.out("9\r\ndata: 2\n\n\r\n")
	for _, ev := range sse.events {
		tr.Handle(ev)
	}
	tr.Expire(sse.at.Add(11 * time.Second))
	if len(got) != 2 || got[1].Response == nil || got[1].Request.Target != "/events" || string(got[1].Response.Body) != "data: 1\n\ndata: 2\n\n" ||
		!got[1].Capture.ResponseStreaming || !got[1].Capture.ResponseIncomplete {
		t.Fatalf("after the timeout: %s", summaries(got))
	}
	// The rest of the stream is framed, not emitted again, and the
	// connection goes on.
	sse.events = nil
	sse.out("9\r\ndata: 3\n\n\r\n0\r\n\r\n").in("GET /after HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA").close()
	for _, ev := range sse.events {
		tr.Handle(ev)
	}
	if s := summaries(got[2:]); s != "#1 GET /after -> 200 [A]\n" {
		t.Fatalf("after the stream: %s", s)
	}
	if st := tr.Stats(); st.Streamed != 1 || st.UnmatchedResponses != 0 || st.BytesLost != 0 {
		t.Fatalf("stats %+v", st)
	}

	// An event stream that reaches the body cap is emitted at once, and the
	// connection's close does not emit it again.
	s := server(id1).open().in("GET /events HTTP/1.1\r\n\r\n").
		out("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
	for range 10 {
		s.out("data: 0123456789\n\n")
	}
	s.close()
	tr, got = run(Config{BodyCap: 64}, s.events)
	if len(got) != 1 || len(got[0].Response.Body) != 64 || !got[0].Capture.ResponseStreaming {
		t.Fatalf("capped stream: %s", summaries(got))
	}
	if st := tr.Stats(); st.Streamed != 1 || st.Conns != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCgroupID(t *testing.T) {
	s := server(id1).open().in("GET / HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").close()
	for i := range s.events {
		s.events[i].CgroupID = 4242
	}
	_, got := run(Config{}, s.events)
	if len(got) != 1 || got[0].Process.CgroupId != 4242 {
		t.Fatalf("got %v", got)
	}
}
