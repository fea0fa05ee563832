package httpstream

import (
	"testing"
	"time"

	"github.com/reprise-dev/reprise/agent/event"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// FuzzTracker cuts two streams into events as ctl says (sizes, reordering,
// losses, truncated copies, sendfile, bytes the kernel skipped, expiry) and
// checks that the tracker does not panic, keeps its bounds, and emits only
// exchanges with a request.
func FuzzTracker(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n\r\nPOST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"),
		[]byte("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"),
		[]byte{3, 7, 200, 5, 64, 1, 9, 130, 4, 2})
	// A skipped run that ends a body and starts the next request.
	f.Add([]byte("POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789GET /n HTTP/1.1\r\n\r\n"),
		[]byte("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"), []byte{0xf8, 0x38, 0x34, 0x74, 0xf8, 0xf9, 0x39})
	f.Fuzz(func(t *testing.T, in, out, ctl []byte) {
		cfg := Config{MaxBuffered: 256, BodyCap: 8, StreamTimeout: 50 * time.Millisecond}
		tr := New(cfg, func(x *reprisev1.Exchange) {
			if x.Request == nil || x.Capture == nil {
				t.Fatalf("exchange without request: %v", x)
			}
		})
		id := event.ConnID{TGID: 1, FD: 3, Start: 1}
		at := t0
		tr.Handle(event.Event{Kind: event.KindOpen, Conn: id, Time: at, Role: event.Role(len(ctl) % 3)})
		streams := [2][]byte{in, out}
		var pos [2]uint64
		var held *event.Event // an event delivered one late
		var lost [2]bool      // the next event of the direction says so, as the kernel does
		// handle passes the bytes in a buffer overwritten afterwards, as the
		// ring buffer reader reuses its records.
		var scratch []byte
		handle := func(ev event.Event) {
			if ev.Data != nil {
				scratch = append(scratch[:0], ev.Data...)
				ev.Data = scratch
			}
			tr.Handle(ev)
			for i := range scratch {
				scratch[i] = 0xff
			}
		}
		for i, c := range ctl {
			d := event.Direction(c & 1)
			n := min(int(c>>3)+1, len(streams[d])-int(pos[d]))
			if n <= 0 {
				continue
			}
			at = at.Add(time.Duration(c>>6) * 40 * time.Millisecond)
			ev := event.Event{Kind: event.KindData, Conn: id, Time: at, Dir: d, Pos: pos[d], Size: uint32(n),
				Data: streams[d][pos[d] : pos[d]+uint64(n)]}
			pos[d] += uint64(n)
			switch c >> 1 & 3 {
			case 1: // lost
				lost[d] = true
				continue
			case 2: // truncated copy, sent with sendfile, or skipped by the kernel past its cap
				ev.Data = ev.Data[:n/2]
				if c&0x20 != 0 {
					ev.Data, ev.Unavailable = nil, true
					ev.Unavailable, ev.Skipped = c&0x10 == 0, c&0x10 != 0
				}
			case 3: // delivered after the next one
				if held == nil {
					held = &ev
					continue
				}
			}
			ev.AfterLoss, lost[d] = lost[d], false
			handle(ev)
			if c>>6 == 3 {
				tr.Expire(at) // streams time out
			}
			if held != nil && i%2 == 0 {
				handle(*held)
				held = nil
			}
			if c := tr.conns[id]; c != nil {
				for _, s := range c.dirs {
					if s.held < 0 || s.held > cfg.MaxBuffered {
						t.Fatalf("held %d bytes", s.held)
					}
				}
			}
		}
		if held != nil {
			handle(*held)
		}
		tr.Handle(event.Event{Kind: event.KindClose, Conn: id, Time: at})
		if st := tr.Stats(); st.Conns != 0 {
			t.Fatalf("connection left after close: %+v", st)
		}
	})
}
