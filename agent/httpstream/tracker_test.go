package httpstream

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/agent/event"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

var (
	t0      = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	srvAddr = netip.MustParseAddrPort("10.0.0.1:8080")
	cliAddr = netip.MustParseAddrPort("10.0.0.2:51000")
)

// script writes the events of one connection, seen from the traced process.
type script struct {
	id            event.ConnID
	role          event.Role
	comm          string
	local, remote netip.AddrPort
	pos           [2]uint64
	at            time.Time
	events        []event.Event
}

func server(id event.ConnID) *script {
	return &script{id: id, role: event.RoleServer, comm: "api", local: srvAddr, remote: cliAddr, at: t0}
}

func client(id event.ConnID) *script {
	return &script{id: id, role: event.RoleClient, comm: "worker", local: cliAddr, remote: srvAddr, at: t0}
}

func (s *script) event(k event.Kind) event.Event {
	return event.Event{Kind: k, Conn: s.id, TID: s.id.TGID + 1, Comm: s.comm, Time: s.at,
		Role: s.role, Local: s.local, Remote: s.remote}
}

func (s *script) open() *script {
	s.events = append(s.events, s.event(event.KindOpen))
	return s
}

func (s *script) close() *script {
	s.at = s.at.Add(time.Millisecond)
	s.events = append(s.events, s.event(event.KindClose))
	return s
}

// io adds one data event 1 ms after the previous one.
func (s *script) io(d event.Direction, data string) *script {
	s.at = s.at.Add(time.Millisecond)
	ev := s.event(event.KindData)
	ev.Dir, ev.Pos, ev.Size, ev.Data = d, s.pos[d], uint32(len(data)), []byte(data)
	s.pos[d] += uint64(len(data))
	s.events = append(s.events, ev)
	return s
}

func (s *script) in(data string) *script  { return s.io(event.Ingress, data) }
func (s *script) out(data string) *script { return s.io(event.Egress, data) }

// lose advances direction d by n bytes that no event carries, and the clock
// past the reorder window.
func (s *script) lose(d event.Direction, n uint64) *script {
	s.pos[d] += n
	s.at = s.at.Add(2 * reorderWindow)
	return s
}

// split cuts every data event into pieces of n bytes with the same time.
func split(evs []event.Event, n int) []event.Event {
	var out []event.Event
	for _, ev := range evs {
		if ev.Kind != event.KindData {
			out = append(out, ev)
			continue
		}
		for off := 0; off < len(ev.Data); off += n {
			p := ev
			p.Data = ev.Data[off:min(off+n, len(ev.Data))]
			p.Pos, p.Size = ev.Pos+uint64(off), uint32(len(p.Data))
			out = append(out, p)
		}
	}
	return out
}

// swap exchanges neighbouring data events pairwise: events from two CPUs
// arrive out of order by one, within and across directions.
func swap(evs []event.Event) []event.Event {
	out := append([]event.Event(nil), evs...)
	for i := 0; i+1 < len(out); i += 2 {
		if out[i].Kind == event.KindData && out[i+1].Kind == event.KindData {
			out[i], out[i+1] = out[i+1], out[i]
		}
	}
	return out
}

// run hands every event's bytes to the tracker in one buffer that is
// overwritten after each Handle, as the ring buffer reader reuses its
// record: what the tracker keeps it must have copied.
func run(cfg Config, evs []event.Event) (*Tracker, []*reprisev1.Exchange) {
	var got []*reprisev1.Exchange
	tr := New(cfg, func(x *reprisev1.Exchange) { got = append(got, x) })
	var buf []byte
	for _, ev := range evs {
		if ev.Data != nil {
			buf = append(buf[:0], ev.Data...)
			ev.Data = buf
		}
		tr.Handle(ev)
		for i := range buf {
			buf[i] = '#'
		}
	}
	return tr, got
}

// summary is the part of an exchange most tests compare.
func summary(x *reprisev1.Exchange) string {
	s := fmt.Sprintf("#%d %s %s", x.Sequence, x.Request.Method, x.Request.Target)
	if len(x.Request.Body) > 0 {
		s += fmt.Sprintf(" [%s]", x.Request.Body)
	}
	if x.Response == nil {
		s += " -> none"
	} else {
		s += fmt.Sprintf(" -> %d", x.Response.StatusCode)
		if len(x.Response.Body) > 0 {
			s += fmt.Sprintf(" [%s]", x.Response.Body)
		}
	}
	// An exchange without a response is incomplete by definition.
	if x.Capture.RequestIncomplete || x.Capture.ResponseIncomplete && x.Response != nil || x.Capture.BytesLost > 0 {
		s += fmt.Sprintf(" incomplete=%v/%v lost=%d", x.Capture.RequestIncomplete, x.Capture.ResponseIncomplete, x.Capture.BytesLost)
	}
	return s
}

func summaries(xs []*reprisev1.Exchange) string {
	var b strings.Builder
	for _, x := range xs {
		b.WriteString(summary(x) + "\n")
	}
	return b.String()
}

var id1 = event.ConnID{TGID: 100, FD: 7, Start: 1}

func TestExchanges(t *testing.T) {
	tests := []struct {
		name string
		s    *script
		want string
	}{
		{
			name: "get",
			s: server(id1).open().in("GET /a HTTP/1.1\r\nHost: h\r\n\r\n").
				out("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").close(),
			want: "#0 GET /a -> 200 [ok]\n",
		},
		{
			name: "post with content-length",
			s: server(id1).open().in("POST /p HTTP/1.1\r\nContent-Length: 7\r\n\r\n").in("{\"a\":1}").
				out("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n").close(),
			want: "#0 POST /p [{\"a\":1}] -> 201\n",
		},
		{
			name: "chunked response",
			s: server(id1).open().in("GET /c HTTP/1.1\r\n\r\n").
				out("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").out("3\r\nabc\r\n").out("2;x=y\r\nde\r\n0\r\n\r\n").close(),
			want: "#0 GET /c -> 200 [abcde]\n",
		},
		{
			name: "keep-alive",
			s: server(id1).open().
				in("GET /1 HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1").
				in("GET /2 HTTP/1.1\r\n\r\n").out("HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\n2").
				in("DELETE /3 HTTP/1.1\r\n\r\n").out("HTTP/1.1 204 No Content\r\n\r\n").close(),
			want: "#0 GET /1 -> 200 [1]\n#1 GET /2 -> 404 [2]\n#2 DELETE /3 -> 204\n",
		},
		{
			name: "pipelining",
			s: server(id1).open().
				in("GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n").
				out("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nAHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB").
				out("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nC").close(),
			want: "#0 GET /1 -> 200 [A]\n#1 GET /2 -> 200 [B]\n#2 GET /3 -> 200 [C]\n",
		},
		{
			name: "head",
			s: server(id1).open().
				in("HEAD /h HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n").
				in("GET /g HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx").close(),
			want: "#0 HEAD /h -> 200\n#1 GET /g -> 200 [x]\n",
		},
		{
			name: "100-continue",
			s: server(id1).open().
				in("PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n").
				out("HTTP/1.1 100 Continue\r\n\r\n").in("data").
				out("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").close(),
			want: "#0 PUT /u [data] -> 200\n",
		},
		{
			name: "close-delimited response",
			s: server(id1).open().in("GET /old HTTP/1.0\r\n\r\n").
				out("HTTP/1.0 200 OK\r\n\r\nuntil").out(" the end").close(),
			want: "#0 GET /old -> 200 [until the end]\n",
		},
		{
			name: "request without response at close",
			s: server(id1).open().in("GET /1 HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").
				in("GET /2 HTTP/1.1\r\n\r\n").close(),
			want: "#0 GET /1 -> 200\n#1 GET /2 -> none\n",
		},
		{
			name: "connection closed inside the response body",
			s:    server(id1).open().in("GET /1 HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\npart").close(),
			want: "#0 GET /1 -> 200 [part] incomplete=false/true lost=0\n",
		},
		{
			name: "outbound",
			s: client(id1).open().out("GET /dep HTTP/1.1\r\nHost: dep\r\n\r\n").
				in("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ndep").close(),
			want: "#0 GET /dep -> 200 [dep]\n",
		},
		{
			name: "upgrade stops parsing",
			s: server(id1).open().in("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").
				out("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello").in("\x81\x85abcd\x00\x00").close(),
			want: "#0 GET /ws -> 101\n",
		},
	}
	for _, tt := range tests {
		for name, evs := range map[string][]event.Event{
			"whole":               tt.s.events,
			"in 3-byte chunks":    split(tt.s.events, 3),
			"swapped":             swap(tt.s.events),
			"chunks, swapped":     swap(split(tt.s.events, 5)),
			"bytes, swapped":      swap(split(tt.s.events, 1)),
			"chunks, swapped odd": append(tt.s.events[:1:1], swap(split(tt.s.events[1:], 4))...),
		} {
			tr, got := run(Config{}, evs)
			if s := summaries(got); s != tt.want {
				t.Errorf("%s, %s:\n got %s\nwant %s", tt.name, name, s, tt.want)
			}
			if st := tr.Stats(); st.Conns != 0 || st.BytesLost != 0 || st.ParseErrors != 0 || st.UnmatchedResponses != 0 {
				t.Errorf("%s, %s: stats %+v", tt.name, name, st)
			}
		}
	}
}

func TestExchangeFields(t *testing.T) {
	tests := []struct {
		name string
		s    *script
		want *reprisev1.Exchange
	}{
		{
			name: "inbound",
			s: server(id1).open().in("POST /v1/items?x=1 HTTP/1.1\r\nHost: api.local\r\ncontent-type: text/plain\r\nContent-Length: 3\r\n\r\nabc").
				out("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-B: 2\r\nX-A: 1\r\n\r\nok").close(),
			want: &reprisev1.Exchange{
				StartTime: timestamppb.New(t0.Add(time.Millisecond)),
				Duration:  durationpb.New(time.Millisecond),
				Direction: reprisev1.Direction_DIRECTION_INBOUND,
				Local:     &reprisev1.Endpoint{Ip: "10.0.0.1", Port: 8080},
				Remote:    &reprisev1.Endpoint{Ip: "10.0.0.2", Port: 51000},
				Process:   &reprisev1.Process{Pid: 100, Tid: 101, Comm: "api"},
				Service:   "api:8080",
				Request: &reprisev1.HttpRequest{Method: "POST", Target: "/v1/items?x=1", Host: "api.local", Proto: "HTTP/1.1",
					Headers: []*reprisev1.Header{{Name: "Host", Value: "api.local"}, {Name: "content-type", Value: "text/plain"}, {Name: "Content-Length", Value: "3"}},
					Body:    []byte("abc"), BodySize: 3},
				Response: &reprisev1.HttpResponse{StatusCode: 200, Proto: "HTTP/1.1",
					Headers: []*reprisev1.Header{{Name: "Content-Length", Value: "2"}, {Name: "X-B", Value: "2"}, {Name: "X-A", Value: "1"}},
					Body:    []byte("ok"), BodySize: 2},
				ConnectionId: "100-7-1",
				Capture:      &reprisev1.Capture{Source: reprisev1.CaptureSource_CAPTURE_SOURCE_SYSCALL},
			},
		},
		{
			name: "outbound over IPv6",
			s: (&script{id: event.ConnID{TGID: 5, FD: 3, Start: 0xabc}, role: event.RoleClient, comm: "curl", at: t0,
				local: netip.MustParseAddrPort("[2001:db8::2]:40000"), remote: netip.MustParseAddrPort("[2001:db8::1]:443")}).open().
				out("GET / HTTP/1.0\r\n\r\n").in("HTTP/1.0 500 Oops\r\n\r\n").in("bye").close(),
			want: &reprisev1.Exchange{
				StartTime: timestamppb.New(t0.Add(time.Millisecond)),
				Duration:  durationpb.New(2 * time.Millisecond),
				Direction: reprisev1.Direction_DIRECTION_OUTBOUND,
				Local:     &reprisev1.Endpoint{Ip: "2001:db8::2", Port: 40000},
				Remote:    &reprisev1.Endpoint{Ip: "2001:db8::1", Port: 443},
				Process:   &reprisev1.Process{Pid: 5, Tid: 6, Comm: "curl"},
				Service:   "curl:443",
				Request:   &reprisev1.HttpRequest{Method: "GET", Target: "/", Proto: "HTTP/1.0", Headers: []*reprisev1.Header{}},
				Response: &reprisev1.HttpResponse{StatusCode: 500, Proto: "HTTP/1.0", Headers: []*reprisev1.Header{},
					Body: []byte("bye"), BodySize: 3},
				ConnectionId: "5-3-abc",
				Capture:      &reprisev1.Capture{Source: reprisev1.CaptureSource_CAPTURE_SOURCE_SYSCALL},
			},
		},
		{
			name: "IPv4-mapped addresses and a capped body",
			s: (&script{id: id1, role: event.RoleServer, comm: "api", at: t0,
				local: netip.MustParseAddrPort("[::ffff:10.1.1.1]:80"), remote: netip.MustParseAddrPort("[::ffff:10.1.1.2]:9999")}).open().
				in("GET /big HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789").close(),
			want: &reprisev1.Exchange{
				StartTime: timestamppb.New(t0.Add(time.Millisecond)),
				Duration:  durationpb.New(time.Millisecond),
				Direction: reprisev1.Direction_DIRECTION_INBOUND,
				Local:     &reprisev1.Endpoint{Ip: "10.1.1.1", Port: 80},
				Remote:    &reprisev1.Endpoint{Ip: "10.1.1.2", Port: 9999},
				Process:   &reprisev1.Process{Pid: 100, Tid: 101, Comm: "api"},
				Service:   "api:80",
				Request:   &reprisev1.HttpRequest{Method: "GET", Target: "/big", Proto: "HTTP/1.1", Headers: []*reprisev1.Header{}},
				Response: &reprisev1.HttpResponse{StatusCode: 200, Proto: "HTTP/1.1", Headers: []*reprisev1.Header{{Name: "Content-Length", Value: "10"}},
					Body: []byte("0123"), BodyTruncated: true, BodySize: 10},
				ConnectionId: "100-7-1",
				Capture:      &reprisev1.Capture{Source: reprisev1.CaptureSource_CAPTURE_SOURCE_SYSCALL},
			},
		},
	}
	for _, tt := range tests {
		_, got := run(Config{BodyCap: 4}, tt.s.events)
		if len(got) != 1 {
			t.Fatalf("%s: %d exchanges, want 1", tt.name, len(got))
		}
		x := got[0]
		if id, err := uuid.Parse(x.Id); err != nil || id.Version() != 7 {
			t.Errorf("%s: id %q is not a uuid v7", tt.name, x.Id)
		}
		x.Id = ""
		if !proto.Equal(x, tt.want) {
			t.Errorf("%s:\n got %v\nwant %v", tt.name, x, tt.want)
		}
	}
}

func TestLoss(t *testing.T) {
	const (
		req1  = "GET /1 HTTP/1.1\r\n\r\n"
		resp1 = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"
		req3  = "GET /3 HTTP/1.1\r\n\r\n"
		resp3 = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n3"
	)
	tests := []struct {
		name  string
		s     *script
		want  string
		stats Stats
	}{
		{
			name: "request head lost: its response is not paired with the next request",
			s: server(id1).open().in(req1).out(resp1).
				lose(event.Ingress, 30).in("Host: x\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2").
				in(req3).out(resp3).close(),
			want:  "#0 GET /1 -> 200 [1]\n#1 GET /3 -> 200 [3]\n",
			stats: Stats{BytesLost: 30, Resyncs: 1, UnmatchedResponses: 1},
		},
		{
			name: "request body cut: the request is kept incomplete with its response",
			s: server(id1).open().in(req1).out(resp1).
				in("POST /2 HTTP/1.1\r\nContent-Length: 10\r\n\r\nab").lose(event.Ingress, 8).
				out("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2").in(req3).out(resp3).close(),
			want:  "#0 GET /1 -> 200 [1]\n#1 POST /2 [ab] -> 200 [2] incomplete=true/false lost=8\n#2 GET /3 -> 200 [3]\n",
			stats: Stats{BytesLost: 8, Resyncs: 1},
		},
		{
			name: "response lost: its request is emitted without one",
			s: server(id1).open().in(req1).out(resp1).
				in("GET /2 HTTP/1.1\r\n\r\n").lose(event.Egress, 40).in(req3).out(resp3).close(),
			want:  "#0 GET /1 -> 200 [1]\n#1 GET /2 -> none incomplete=false/true lost=40\n#2 GET /3 -> 200 [3]\n",
			stats: Stats{BytesLost: 40, Resyncs: 1, UnansweredRequests: 1},
		},
		{
			name: "response body cut",
			s: server(id1).open().in(req1).out("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab").lose(event.Egress, 7).
				in(req3).out(resp3).close(),
			want:  "#0 GET /1 -> 200 [ab] incomplete=false/true lost=7\n#1 GET /3 -> 200 [3]\n",
			stats: Stats{BytesLost: 7, Resyncs: 1},
		},
		{
			name: "malformed request",
			s: server(id1).open().in(req1).out(resp1).in("GARBAGE\r\n\r\n").out("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").
				in(req3).out(resp3).close(),
			want:  "#0 GET /1 -> 200 [1]\n#1 GET /3 -> 200 [3]\n",
			stats: Stats{ParseErrors: 1, Resyncs: 1, UnmatchedResponses: 1},
		},
		{
			name: "connection seen from the middle",
			s: (&script{id: id1, comm: "api", local: srvAddr, remote: cliAddr, at: t0}).
				out("ail of an old body HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").in("dy}" + req3).out(resp3).close(),
			want:  "#0 GET /3 -> 200 [3]\n",
			stats: Stats{UnmatchedResponses: 1},
		},
	}
	for _, tt := range tests {
		tr, got := run(Config{}, tt.s.events)
		if s := summaries(got); s != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, s, tt.want)
		}
		st := tr.Stats()
		if st.BytesLost != tt.stats.BytesLost || st.Resyncs != tt.stats.Resyncs || st.ParseErrors != tt.stats.ParseErrors ||
			st.UnmatchedResponses != tt.stats.UnmatchedResponses || st.UnansweredRequests != tt.stats.UnansweredRequests {
			t.Errorf("%s: stats %+v, want %+v", tt.name, st, tt.stats)
		}
	}
}

// A gap the kernel marks as lost (AfterLoss on the event after it) is given
// up at once, not after the reorder window: the exchanges after it are
// emitted without waiting, and the bytes held meanwhile are not kept.
func TestKernelMarkedLoss(t *testing.T) {
	const req1, resp1 = "GET /1 HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"
	const req3, resp3 = "GET /3 HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n3"
	for _, marked := range []bool{true, false} {
		s := server(id1).open().in(req1).out(resp1).in("GET /2 HTTP/1.1\r\n\r\n")
		s.pos[event.Egress] += 40 // the response to /2, dropped by the kernel: no time passes
		s.in(req3).out(resp3)
		s.events[len(s.events)-1].AfterLoss = marked
		tr, got := run(Config{}, s.events)
		want := "#0 GET /1 -> 200 [1]\n#1 GET /2 -> none incomplete=false/true lost=40\n#2 GET /3 -> 200 [3]\n"
		if !marked {
			want = "#0 GET /1 -> 200 [1]\n" // the rest waits for the reorder window
		}
		if g := summaries(got); g != want {
			t.Errorf("AfterLoss %v: got\n%swant\n%s", marked, g, want)
		}
		if st := tr.Stats(); marked && st.BytesLost != 40 {
			t.Errorf("AfterLoss %v: BytesLost = %d, want 40", marked, st.BytesLost)
		}
	}
}

func TestTruncatedEvent(t *testing.T) {
	s := server(id1).open().in("GET /1 HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
	// The kernel copied only the first 41 of the response's 49 bytes.
	s.events[len(s.events)-1].Data = s.events[len(s.events)-1].Data[:41]
	s.in("GET /2 HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").close()
	tr, got := run(Config{}, s.events)
	want := "#0 GET /1 -> 200 [01] incomplete=false/true lost=8\n#1 GET /2 -> 200\n"
	if s := summaries(got); s != want {
		t.Errorf("got %s\nwant %s", s, want)
	}
	if st := tr.Stats(); st.BytesLost != 8 {
		t.Errorf("BytesLost = %d, want 8", st.BytesLost)
	}
}

func TestFDReuse(t *testing.T) {
	a := server(id1).open().in("GET /a HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").close()
	id2 := id1
	id2.Start = 2
	b := server(id2)
	b.at = a.at
	b.open().in("GET /b HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").close()
	_, got := run(Config{}, append(a.events, b.events...))
	if len(got) != 2 || got[0].ConnectionId == got[1].ConnectionId ||
		got[0].Request.Target != "/a" || got[1].Request.Target != "/b" || got[1].Sequence != 0 {
		t.Fatalf("got %s", summaries(got))
	}
}

func TestMaxConns(t *testing.T) {
	id2 := event.ConnID{TGID: 100, FD: 8, Start: 3}
	a := server(id1).open().in("GET /a HTTP/1.1\r\n\r\n")
	b := server(id2).open().in("GET /b HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	var got []*reprisev1.Exchange
	tr := New(Config{MaxConns: 1}, func(x *reprisev1.Exchange) { got = append(got, x) })
	for _, ev := range append(a.events, b.events...) {
		tr.Handle(ev)
	}
	if st := tr.Stats(); st.DroppedConns != 1 || st.Conns != 1 || len(got) != 0 {
		t.Fatalf("stats %+v, exchanges %s", st, summaries(got))
	}
	// Room again once the first one closes.
	tr.Handle(a.close().events[len(a.events)-1])
	c := server(event.ConnID{TGID: 100, FD: 9, Start: 4}).open().in("GET /c HTTP/1.1\r\n\r\n").
		out("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").close()
	for _, ev := range c.events {
		tr.Handle(ev)
	}
	if s := summaries(got); s != "#0 GET /a -> none\n#0 GET /c -> 200\n" {
		t.Fatalf("got %s", s)
	}
}

func TestExpire(t *testing.T) {
	s := server(id1).open().in("GET /idle HTTP/1.1\r\n\r\n")
	var got []*reprisev1.Exchange
	tr := New(Config{IdleTimeout: time.Minute}, func(x *reprisev1.Exchange) { got = append(got, x) })
	for _, ev := range s.events {
		tr.Handle(ev)
	}
	tr.Expire(s.at.Add(59 * time.Second))
	if len(got) != 0 || tr.Stats().Conns != 1 {
		t.Fatalf("expired too early: %s", summaries(got))
	}
	tr.Expire(s.at.Add(61 * time.Second))
	st := tr.Stats()
	if s := summaries(got); s != "#0 GET /idle -> none\n" || !got[0].Capture.ResponseIncomplete {
		t.Fatalf("got %s", s)
	}
	if st.Expired != 1 || st.Conns != 0 || st.UnansweredRequests != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestExpireGivesUpOnHoles(t *testing.T) {
	// The request's first event never arrives; Expire's tick, not the end
	// of the connection, lets the tracker move on.
	s := server(id1).open().in("GET /lost HTTP/1.1\r\n\r\n").in("GET /2 HTTP/1.1\r\n\r\n")
	s.events = append(s.events[:1], s.events[2])
	var got []*reprisev1.Exchange
	tr := New(Config{}, func(x *reprisev1.Exchange) { got = append(got, x) })
	for _, ev := range s.events {
		tr.Handle(ev)
	}
	tr.Expire(s.at.Add(time.Second))
	s.out("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	tr.Handle(s.events[len(s.events)-1])
	if got := summaries(got); got != "#0 GET /2 -> 200\n" {
		t.Fatalf("got %s", got)
	}
	if st := tr.Stats(); st.BytesLost != 22 || st.Conns != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMaxBuffered(t *testing.T) {
	// Bytes that never look like HTTP are dropped at the bound.
	s := server(id1).open().in(strings.Repeat("\x16\x03\x01", 30)).in(strings.Repeat("x", 10)).close()
	tr, got := run(Config{MaxBuffered: 64}, s.events)
	if st := tr.Stats(); len(got) != 0 || st.BytesIgnored != 100 {
		t.Fatalf("stats %+v, exchanges %s", st, summaries(got))
	}
	// So is a response waiting for a request that does not come.
	s = server(id1).open().out("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("y", 100)).
		in("GET /after HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").close()
	tr, got = run(Config{MaxBuffered: 64}, s.events)
	if st := tr.Stats(); summaries(got) != "#0 GET /after -> 200\n" || st.BytesLost != 140 || st.Overflows != 1 {
		t.Fatalf("stats %+v, exchanges %s", st, summaries(got))
	}
}

func TestFlush(t *testing.T) {
	s := server(id1).open().in("GET /1 HTTP/1.1\r\n\r\n").out("HTTP/1.0 200 OK\r\n\r\nstreamed")
	tr, got := run(Config{}, s.events)
	if len(got) != 0 {
		t.Fatalf("emitted before the end: %s", summaries(got))
	}
	tr.emit = func(x *reprisev1.Exchange) { got = append(got, x) }
	tr.Flush()
	if s := summaries(got); s != "#0 GET /1 -> 200 [streamed]\n" || tr.Stats().Conns != 0 {
		t.Fatalf("got %s, stats %+v", s, tr.Stats())
	}
}

// Bytes that are not UTF-8 may appear in a target, a header or a process
// name; a protobuf string may not hold them, and one such exchange would
// make its whole batch unsendable. They go out as U+FFFD and are counted.
func TestInvalidUTF8(t *testing.T) {
	s := server(id1)
	s.comm = "w\xffrker"
	s.open().in("GET /caf\xe9 HTTP/1.1\r\nHost: h\xc3\r\nX-Name: Jos\xe9\r\n\r\n").
		out("HTTP/1.1 200 OK\r\nContent-Disposition: attachment; filename=\"\xfc.txt\"\r\nContent-Length: 0\r\n\r\n").
		in("GET /ok HTTP/1.1\r\nHost: h\r\n\r\n").out("HTTP/1.1 204 No Content\r\n\r\n").close()
	tr, got := run(Config{}, s.events)
	if len(got) != 2 {
		t.Fatalf("got %d exchanges, want 2: %s", len(got), summaries(got))
	}
	for _, x := range got {
		if _, err := proto.Marshal(x); err != nil {
			t.Errorf("exchange %s does not marshal: %v", x.Request.Target, err)
		}
	}
	x := got[0]
	want := []string{x.Request.Target, x.Request.Host, x.Request.Headers[1].Value, x.Response.Headers[0].Value, x.Process.Comm, x.Service}
	for i, w := range []string{"/caf\uFFFD", "h\uFFFD", "Jos\uFFFD", "attachment; filename=\"\uFFFD.txt\"", "w\uFFFDrker", "w\uFFFDrker:8080"} {
		if want[i] != w {
			t.Errorf("got %q, want %q", want[i], w)
		}
	}
	if got[1].Request.Target != "/ok" {
		t.Errorf("second exchange target %q", got[1].Request.Target)
	}
	if n := tr.Stats().InvalidText; n != 2 { // the process name of both
		t.Errorf("InvalidText = %d, want 2", n)
	}
}
