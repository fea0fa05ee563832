package httpstream

import (
	"fmt"
	"strings"
	"testing"

	"github.com/reprise-dev/reprise/agent/event"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// kernelTail is what the kernel copies of the end of a syscall past its cap
// (TAIL_SIZE in bpf/capture.c).
const kernelTail = 64 << 10

// syscall moves data in direction d in one syscall, copied as the kernel's
// emit_data does with a per-syscall cap of syscallCap bytes: the bytes
// before the skip range the tracker asked for (as it stood when the
// syscall began) up to the cap, the range skipped, those after it up to the
// cap, then the middle skipped and the last kernelTail bytes copied.
func (k *fakeKernel) syscall(d event.Direction, data string, syscallCap int) *fakeKernel {
	pos, n := k.s.pos[d], len(data)
	from, to := 0, 0
	if k.skip[d] > pos && k.from[d] < pos+uint64(n) {
		from, to = int(max(k.from[d], pos)-pos), int(min(k.skip[d], pos+uint64(n))-pos)
	}
	copyPart := func(off, size int) int {
		size = min(size, syscallCap)
		for c := off; c < off+size; c += 16 << 10 {
			k.s.io(d, data[c:min(c+16<<10, off+size)])
			k.tr.Handle(k.s.events[len(k.s.events)-1])
		}
		k.copied += uint64(size)
		return size
	}
	skipTo := func(off, end int) int {
		ev := k.s.event(event.KindData)
		ev.Dir, ev.Pos, ev.Size, ev.Skipped = d, k.s.pos[d], uint32(end-off), true
		k.tr.Handle(ev)
		k.s.pos[d] += uint64(end - off)
		k.skipped += uint64(end - off)
		return end
	}
	off := copyPart(0, from)
	if off < to {
		off = skipTo(off, to)
	}
	off += copyPart(off, n-to)
	if off < n {
		if n-off > kernelTail {
			off = skipTo(off, n-kernelTail)
		}
		copyPart(off, n-off)
	}
	return k
}

func post(target, body string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s", target, len(body), body)
}

func ok(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// A syscall past its cap that ends a body and starts the next pipelined
// message: the body keeps its head and exact size, and the next message,
// in the tail the kernel copied, parses whole.
func TestTailAfterSkip(t *testing.T) {
	const bodyCap = 100 << 10
	big := body(1 << 20)
	for _, tt := range []struct {
		name      string
		run       func(k *fakeKernel)
		req, resp bool // which body of the first exchange is big
	}{
		{
			name: "client pipelines an upload and the next request in one write",
			run: func(k *fakeKernel) {
				k.syscall(event.Ingress, post("/a", big)+"GET /b HTTP/1.1\r\n\r\n", bodyCap+64<<10).
					out(ok("a")).out(ok("ok"))
			},
			req: true,
		},
		{
			name: "server answers two pipelined requests in one write",
			run: func(k *fakeKernel) {
				k.in("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n").
					syscall(event.Egress, ok(big)+ok("ok"), bodyCap+64<<10)
			},
			resp: true,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeKernel(t, Config{BodyCap: bodyCap})
			tt.run(k)
			k.close()
			if len(k.got) != 2 || k.got[1].Request.Target != "/b" || string(k.got[1].Response.GetBody()) != "ok" ||
				k.got[1].Capture.RequestIncomplete || k.got[1].Capture.ResponseIncomplete {
				t.Fatalf("exchanges %s", summaries(k.got))
			}
			x := k.got[0]
			if x.Capture.RequestIncomplete || x.Capture.ResponseIncomplete || x.Capture.BytesLost != 0 {
				t.Errorf("capture %v", x.Capture)
			}
			b := x.Request
			if tt.resp {
				b = nil
				r := x.Response
				if string(r.Body) != big[:bodyCap] || r.BodySize != int64(len(big)) || !r.BodyTruncated {
					t.Errorf("response body %d bytes, size %d, truncated %v", len(r.Body), r.BodySize, r.BodyTruncated)
				}
			}
			if b != nil && (string(b.Body) != big[:bodyCap] || b.BodySize != int64(len(big)) || !b.BodyTruncated) {
				t.Errorf("request body %d bytes, size %d, truncated %v", len(b.Body), b.BodySize, b.BodyTruncated)
			}
			// The head up to the cap and the tail; the middle skipped.
			if k.copied > bodyCap+64<<10+kernelTail+256 || k.skipped == 0 {
				t.Errorf("copied %d, skipped %d", k.copied, k.skipped)
			}
			st := k.tr.Stats()
			if st.BytesSkipped != k.skipped || st.BytesLost != 0 || st.Resyncs != 0 || st.Incomplete != 0 || st.UnmatchedResponses != 0 {
				t.Errorf("stats %+v, kernel skipped %d", st, k.skipped)
			}
		})
	}
}

// When the next message starts in the middle the kernel skipped, it is lost
// and counted (Resyncs, BytesLost); the message after it, in the tail,
// pairs with its own request or response.
func TestNextMessageInSkippedMiddle(t *testing.T) {
	const bodyCap = 100 << 10
	big, mid := body(1<<20), body(200<<10)
	for _, tt := range []struct {
		name   string
		dir    event.Direction
		first  string // in one syscall with rest
		rest   string
		before func(k *fakeKernel)
		after  func(k *fakeKernel)
		want   string
		// unmatched: the response of the lost request found no request.
		unmatched uint64
	}{
		{
			name: "requests", dir: event.Ingress,
			first: post("/a", big), rest: post("/b", mid) + "GET /c HTTP/1.1\r\n\r\n",
			before: func(k *fakeKernel) {},
			after:  func(k *fakeKernel) { k.out(ok("a")).out(ok("b")).out(ok("c")) },
			// The request lost in the middle has no exchange: its
			// response is counted, not paired with /c.
			want:      "#0 POST /a [<head>] -> 200 [a]\n#1 GET /c -> 200 [c]\n",
			unmatched: 1,
		},
		{
			name: "responses", dir: event.Egress,
			first: ok(big), rest: ok(mid) + ok("c"),
			before: func(k *fakeKernel) { k.in("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n") },
			after:  func(k *fakeKernel) {},
			want:   "#0 GET /a -> 200 [<head>]\n#1 GET /b -> none incomplete=false/true lost=" + fmt.Sprint(len(ok(mid)+ok("c"))-kernelTail) + "\n#2 GET /c -> 200 [c]\n",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeKernel(t, Config{BodyCap: bodyCap})
			tt.before(k)
			k.syscall(tt.dir, tt.first+tt.rest, bodyCap+64<<10)
			tt.after(k)
			k.close()
			if got := strings.ReplaceAll(summaries(k.got), big[:bodyCap], "<head>"); got != tt.want {
				t.Fatalf("got %s\nwant %s", got, tt.want)
			}
			// The skipped bytes after the first message.
			lost := uint64(len(tt.rest) - kernelTail)
			st := k.tr.Stats()
			if st.Resyncs != 1 || st.BytesLost != lost || st.UnmatchedResponses != tt.unmatched {
				t.Errorf("stats %+v, want 1 resync, %d bytes lost, %d unmatched", st, lost, tt.unmatched)
			}
			if c := k.got[0].Capture; c.RequestIncomplete || c.ResponseIncomplete || c.BytesLost != 0 {
				t.Errorf("first exchange: capture %v", c)
			}
			if tt.unmatched == 0 {
				if c := k.got[1].Capture; !c.ResponseIncomplete || c.Loss != reprisev1.Loss_LOSS_GAP {
					t.Errorf("the request whose response was lost: capture %v", c)
				}
			}
		})
	}
}

// A chunked body past the cap whose chunk ends in the skipped middle cannot
// be followed (the framing after it was not copied): the message is kept as
// far as read, marked incomplete, and the stream resyncs on the next
// message in the tail.
func TestChunkFramingInSkippedMiddle(t *testing.T) {
	const bodyCap = 100 << 10
	chunk, last := body(1<<20), body(100<<10)
	resp := fmt.Sprintf("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk, len(last), last)
	k := newFakeKernel(t, Config{BodyCap: bodyCap})
	k.in("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n").syscall(event.Egress, resp+ok("ok"), bodyCap+64<<10).close()
	if got := strings.ReplaceAll(summaries(k.got), chunk[:bodyCap], "<head>"); got != "#0 GET /a -> 200 [<head>] incomplete=false/true lost="+fmt.Sprint(k.skipped)+"\n#1 GET /b -> 200 [ok]\n" {
		t.Fatalf("got %s", got)
	}
	if st := k.tr.Stats(); st.Resyncs != 1 || st.BytesLost != k.skipped || st.IncompleteBy[reprisev1.Loss_LOSS_GAP] != 1 {
		t.Errorf("stats %+v", st)
	}
}
