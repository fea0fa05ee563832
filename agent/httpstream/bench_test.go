package httpstream

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/agent/event"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// The exchanges of scripts/bench-capture.sh as the traced server sees them:
// wrk's requests and net/http's responses on one keep-alive connection.
var (
	benchGET = []string{
		"GET /small HTTP/1.1\r\nHost: 127.0.0.1:18080\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Tue, 24 Nov 2026 13:39:15 GMT\r\nContent-Length: 215\r\n\r\n" +
			`{"text":"` + strings.Repeat("x", 215-11) + `"}`,
	}
	benchPOST = []string{
		"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:18080\r\nContent-Length: 65536\r\nContent-Type: application/octet-stream\r\n\r\n" +
			strings.Repeat("\x5a\xa5", 32<<10),
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Tue, 24 Nov 2026 13:39:15 GMT\r\nContent-Length: 25\r\n\r\n" +
			`{"ok":true,"bytes":65536}`,
	}
)

// BenchmarkTracker measures the tracker, the HTTP parser and building the
// exchange, per exchange: request and response arrive as data events of at
// most 16 KiB (what one read of a socket returns here). Run it with
// GOMEMLIMIT=64MiB to have the agent's GC settings.
func BenchmarkTracker(b *testing.B) {
	for _, bc := range []struct {
		name     string
		exchange []string
	}{{"GET215B", benchGET}, {"POST64KiB", benchPOST}} {
		b.Run(bc.name, func(b *testing.B) {
			var n int
			// The exporter holds exchanges until the collector acknowledges
			// them: up to 8 batches of 256 in flight, and 16 MiB. Hold as
			// many, so that the GC sees a live heap like the agent's, and
			// release them as the agent does once acknowledged.
			var held []*reprisev1.Exchange
			var heldBytes int
			tr := New(Config{}, func(x *reprisev1.Exchange) {
				if x.Response == nil || x.Capture.RequestIncomplete || x.Capture.ResponseIncomplete {
					b.Fatalf("exchange %d not whole", n)
				}
				n++
				held = append(held, x)
				heldBytes += len(x.Request.Body) + len(x.Response.Body) + 512
				for heldBytes > 16<<20 || len(held) > 8*256 {
					heldBytes -= len(held[0].Request.Body) + len(held[0].Response.Body) + 512
					Release(held[0])
					held[0] = nil
					held = held[1:]
				}
			})
			id := event.ConnID{TGID: 4242, FD: 7, Start: 1}
			ev := event.Event{Kind: event.KindOpen, Conn: id, TID: 4243, Comm: "benchserver", Time: t0,
				Role: event.RoleServer, Local: netip.MustParseAddrPort("127.0.0.1:18080"),
				Remote: netip.MustParseAddrPort("127.0.0.1:51000")}
			tr.Handle(ev)
			ev.Kind = event.KindData
			// The events of one exchange, replayed at advancing positions.
			var evs []event.Event
			for d, msg := range bc.exchange {
				for off := 0; off < len(msg); off += 16 << 10 {
					ev.Dir, ev.Data = event.Direction(d), []byte(msg[off:min(off+16<<10, len(msg))])
					ev.Size = uint32(len(ev.Data))
					evs = append(evs, ev)
				}
			}
			var pos [2]uint64
			now := t0
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.exchange[0]) + len(bc.exchange[1])))
			b.ResetTimer()
			for range b.N {
				for _, ev := range evs {
					now = now.Add(10 * time.Microsecond)
					ev.Time = now
					ev.Pos = pos[ev.Dir]
					pos[ev.Dir] += uint64(ev.Size)
					tr.Handle(ev)
				}
			}
			b.StopTimer()
			if n != b.N {
				b.Fatalf("%d exchanges for %d pairs", n, b.N)
			}
			if s := tr.Stats(); s.ParseErrors != 0 || s.BytesLost != 0 {
				b.Fatalf("stats %+v", s)
			}
		})
	}
}
