package httpstream

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/reprise-dev/reprise/agent/event"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// fakeKernel hands a connection's bytes to a tracker as the kernel does:
// in events of at most chunk bytes, leaving out, as one Skipped event per
// write, the bytes in the range the tracker said to skip.
type fakeKernel struct {
	t       *testing.T
	s       *script
	tr      *Tracker
	got     []*reprisev1.Exchange
	from    [2]uint64
	skip    [2]uint64 // the end of the range
	copied  uint64    // payload bytes handed over
	skipped uint64
}

func newFakeKernel(t *testing.T, cfg Config) *fakeKernel {
	k := &fakeKernel{t: t, s: server(id1)}
	cfg.Skipper = k
	k.tr = New(cfg, func(x *reprisev1.Exchange) { k.got = append(k.got, x) })
	k.tr.Handle(k.s.event(event.KindOpen))
	return k
}

func (k *fakeKernel) Skip(id event.ConnID, d event.Direction, from, to uint64) error {
	if id != k.s.id || from < k.s.pos[d] || to <= from || to <= k.skip[d] {
		k.t.Errorf("Skip(%v, %v, %d, %d) at %d after a range to %d", id, d, from, to, k.s.pos[d], k.skip[d])
	}
	k.from[d], k.skip[d] = from, to
	return nil
}

// write moves data in direction d in writes of chunk bytes: the part of
// each before the skip range copied, the part in it skipped, the rest
// copied.
func (k *fakeKernel) write(d event.Direction, data string, chunk int) *fakeKernel {
	for off := 0; off < len(data); off += chunk {
		piece := data[off:min(off+chunk, len(data))]
		for piece != "" {
			pos := k.s.pos[d]
			if pos >= k.from[d] && pos < k.skip[d] {
				n := min(k.skip[d]-pos, uint64(len(piece)))
				ev := k.s.event(event.KindData)
				ev.Dir, ev.Pos, ev.Size, ev.Skipped = d, pos, uint32(n), true
				k.tr.Handle(ev)
				k.s.pos[d] += n
				k.skipped += n
				piece = piece[n:]
				continue
			}
			n := len(piece)
			if k.from[d] > pos && k.from[d] < pos+uint64(n) {
				n = int(k.from[d] - pos)
			}
			k.s.io(d, piece[:n])
			k.tr.Handle(k.s.events[len(k.s.events)-1])
			k.copied += uint64(n)
			piece = piece[n:]
		}
	}
	return k
}

func (k *fakeKernel) in(data string) *fakeKernel  { return k.write(event.Ingress, data, 16<<10) }
func (k *fakeKernel) out(data string) *fakeKernel { return k.write(event.Egress, data, 16<<10) }

func (k *fakeKernel) close() *fakeKernel {
	k.tr.Handle(k.s.close().events[len(k.s.events)-1])
	return k
}

func body(n int) string {
	var b strings.Builder
	for b.Len() < n {
		fmt.Fprintf(&b, "%08d,", b.Len())
	}
	return b.String()[:n]
}

// Past the cap the tracker tells the kernel where the body ends: the kernel
// then copies about the cap, the body keeps its head and exact size, the
// exchange is whole, and the next one parses.
func TestSkipPastCap(t *testing.T) {
	const capBytes = 100 << 10
	big := body(1 << 20)
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(big), big)
	tests := []struct {
		name       string
		run        func(k *fakeKernel)
		dir        event.Direction
		wantSkipTo uint64
		req, resp  bool // which body is past the cap
	}{
		{
			name: "content-length response",
			run: func(k *fakeKernel) {
				k.in("GET /big HTTP/1.1\r\n\r\n").out(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(big)) + big)
			},
			dir: event.Egress, wantSkipTo: uint64(len("HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n") + len(big)), resp: true,
		},
		{
			name: "upload",
			run: func(k *fakeKernel) {
				k.in(fmt.Sprintf("PUT /up HTTP/1.1\r\nContent-Length: %d\r\n\r\n", len(big)) + big).out("HTTP/1.1 204 No Content\r\n\r\n")
			},
			dir: event.Ingress, wantSkipTo: uint64(len("PUT /up HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n") + len(big)), req: true,
		},
		{
			name: "one big chunk",
			run: func(k *fakeKernel) {
				k.in("GET /big HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
			},
			// The end of the chunk's data: the CRLF and last chunk follow.
			dir: event.Egress, wantSkipTo: uint64(len("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") + len(chunked) - len("\r\n0\r\n\r\n")), resp: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeKernel(t, Config{BodyCap: capBytes})
			tt.run(k)
			k.in("GET /after HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").close()
			if k.skip[tt.dir] != tt.wantSkipTo {
				t.Errorf("skip to %d, want %d", k.skip[tt.dir], tt.wantSkipTo)
			}
			// The cap and the heads: the range is known from the head on.
			if k.copied > capBytes+256 {
				t.Errorf("copied %d bytes for a cap of %d", k.copied, capBytes)
			}
			if len(k.got) != 2 || k.got[1].Request.Target != "/after" || string(k.got[1].Response.GetBody()) != "ok" {
				t.Fatalf("exchanges %s", summaries(k.got))
			}
			x := k.got[0]
			if x.Capture.RequestIncomplete || x.Capture.ResponseIncomplete || x.Capture.BytesLost != 0 {
				t.Errorf("capture %v", x.Capture)
			}
			for _, b := range []struct {
				big       bool
				body      []byte
				size      int64
				truncated bool
			}{
				{tt.req, x.Request.Body, x.Request.BodySize, x.Request.BodyTruncated},
				{tt.resp, x.Response.Body, x.Response.BodySize, x.Response.BodyTruncated},
			} {
				if b.big && (string(b.body) != big[:capBytes] || b.size != int64(len(big)) || !b.truncated) {
					t.Errorf("body of %d bytes (a prefix: %v), size %d, truncated %v", len(b.body), strings.HasPrefix(big, string(b.body)), b.size, b.truncated)
				}
			}
			st := k.tr.Stats()
			if st.BytesSkipped != k.skipped || st.BytesLost != 0 || st.Resyncs != 0 || st.Incomplete != 0 || st.SkipErrors != 0 {
				t.Errorf("stats %+v, kernel skipped %d", st, k.skipped)
			}
		})
	}
}

// A body that ends with the connection is skipped to the end of the stream.
func TestSkipCloseDelimited(t *testing.T) {
	k := newFakeKernel(t, Config{BodyCap: 100 << 10})
	big := body(1 << 20)
	k.in("GET /all HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + big).close()
	if k.skip[event.Egress] != math.MaxUint64 {
		t.Errorf("skip to %d, want the end of the stream", k.skip[event.Egress])
	}
	if len(k.got) != 1 {
		t.Fatalf("exchanges %s", summaries(k.got))
	}
	if r := k.got[0].Response; r.BodySize != int64(len(big)) || !r.BodyTruncated || k.got[0].Capture.ResponseIncomplete {
		t.Errorf("response size %d truncated %v, capture %v", r.BodySize, r.BodyTruncated, k.got[0].Capture)
	}
}

// Bytes lost in the part of a body past the cap (the ring was full) are not
// a loss for the exchange; bytes lost before the cap are.
func TestLossPastCap(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
	for _, tt := range []struct {
		name       string
		kept, lose int
		want       string
		lost       uint64
	}{
		{"past the cap", 500, 300, "#0 GET /a -> 200 [" + body(1000)[:100] + "]\n#1 GET /b -> 200 [ok]\n", 0},
		{"before the cap", 50, 300, "#0 GET /a -> 200 [" + body(1000)[:50] + "] incomplete=false/true lost=300\n#1 GET /b -> 200 [ok]\n", 300},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := body(1000)
			s := server(id1).open().in("GET /a HTTP/1.1\r\n\r\n").out(head+b[:tt.kept]).lose(event.Egress, uint64(tt.lose))
			s.out(b[tt.kept+tt.lose:]).in("GET /b HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").close()
			tr, got := run(Config{BodyCap: 100}, s.events)
			if sum := summaries(got); sum != tt.want {
				t.Errorf("got %s\nwant %s", sum, tt.want)
			}
			if st := tr.Stats(); st.BytesLost != tt.lost {
				t.Errorf("lost %d, want %d", st.BytesLost, tt.lost)
			}
		})
	}
}

// Bytes the kernel left out past its per-syscall cap, without being asked,
// frame as body bytes too.
func TestKernelCapSkip(t *testing.T) {
	s := server(id1).open().in("GET /a HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123")
	ev := s.event(event.KindData)
	ev.Dir, ev.Pos, ev.Size, ev.Skipped = event.Egress, s.pos[event.Egress], 6, true
	s.pos[event.Egress] += 6
	s.events = append(s.events, ev)
	s.in("GET /b HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").close()
	tr, got := run(Config{BodyCap: 4}, s.events)
	if sum := summaries(got); sum != "#0 GET /a -> 200 [0123]\n#1 GET /b -> 200 [ok]\n" {
		t.Errorf("got %s", sum)
	}
	if r := got[0].Response; r.BodySize != 10 || !r.BodyTruncated || got[0].Capture.ResponseBodyUnavailable {
		t.Errorf("response %v, capture %v", r, got[0].Capture)
	}
	if st := tr.Stats(); st.BytesSkipped != 6 || st.BytesLost != 0 {
		t.Errorf("stats %+v", st)
	}
}
