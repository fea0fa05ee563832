package main

import (
	"cmp"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/reprise-dev/reprise/agent/event"
	"github.com/reprise-dev/reprise/agent/httpstream"
	"github.com/reprise-dev/reprise/internal/exchfile"
	"github.com/reprise-dev/reprise/internal/sanitize"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// wire records the traffic between real clients and a server the way the
// agent does, without the kernel: a loopback relay hands every byte each
// side sent, as it went over the connection, to the agent's connection
// tracker (httpstream, the agent's own HTTP assembly), and every exchange
// goes through the collector's sanitizer before it is kept.
type wire struct {
	ln      net.Listener
	backend string
	san     *sanitize.Sanitizer

	mu        sync.Mutex // guards tr and exchanges
	tr        *httpstream.Tracker
	exchanges []*reprisev1.Exchange
	conns     sync.WaitGroup
	next      int32
}

// newWire starts a relay to backend; bodyCap is the agent's body cap.
func newWire(t *testing.T, backend string, bodyCap int) *wire {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &wire{ln: ln, backend: backend, san: sanitize.Default()}
	w.tr = httpstream.New(httpstream.Config{BodyCap: bodyCap}, func(ex *reprisev1.Exchange) {
		// The tracker reuses its buffers: keep a copy, sanitized as the
		// collector stores it.
		ex = proto.Clone(ex).(*reprisev1.Exchange)
		if w.san.Sanitize(ex) {
			w.exchanges = append(w.exchanges, ex)
		}
	})
	go w.accept()
	t.Cleanup(func() { ln.Close() })
	return w
}

// URL is where clients send their requests to be recorded.
func (w *wire) URL() string { return "http://" + w.ln.Addr().String() }

func (w *wire) accept() {
	for {
		c, err := w.ln.Accept()
		if err != nil {
			return
		}
		w.conns.Add(1)
		go w.relay(c)
	}
}

func (w *wire) handle(ev event.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tr.Handle(ev)
}

// relay copies one client connection to the backend and back, telling the
// tracker what the server read (ingress) and wrote (egress).
func (w *wire) relay(client net.Conn) {
	defer w.conns.Done()
	defer client.Close()
	server, err := net.Dial("tcp", w.backend)
	if err != nil {
		return
	}
	defer server.Close()
	w.mu.Lock()
	w.next++
	id := event.ConnID{TGID: 4242, FD: w.next, Start: uint64(w.next)}
	w.mu.Unlock()
	base := event.Event{Conn: id, TID: 4243, Comm: "httpbin", Role: event.RoleServer,
		Local:  netip.MustParseAddrPort(w.backend),
		Remote: netip.MustParseAddrPort(client.RemoteAddr().String())}
	at := func(k event.Kind) event.Event {
		ev := base
		ev.Kind, ev.Time = k, time.Now()
		return ev
	}
	w.handle(at(event.KindOpen))
	var pipes sync.WaitGroup
	pipe := func(dst, src net.Conn, dir event.Direction) {
		defer pipes.Done()
		var pos uint64
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				ev := at(event.KindData)
				ev.Dir, ev.Pos, ev.Size, ev.Data = dir, pos, uint32(n), buf[:n]
				pos += uint64(n)
				w.handle(ev)
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
					tc.CloseWrite()
				} else {
					dst.Close()
				}
				return
			}
		}
	}
	pipes.Add(2)
	go pipe(server, client, event.Ingress)
	go pipe(client, server, event.Egress)
	pipes.Wait()
	w.handle(at(event.KindClose))
}

// save stops recording and writes what was recorded, sanitized, to a JSONL
// file in start order, as `collector export` would.
func (w *wire) save(t *testing.T) string {
	t.Helper()
	w.ln.Close()
	w.conns.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tr.Flush()
	if st := w.tr.Stats(); st.ParseErrors != 0 || st.BytesLost != 0 {
		t.Fatalf("recording lost data: %+v", st)
	}
	slices.SortStableFunc(w.exchanges, func(a, b *reprisev1.Exchange) int {
		return cmp.Compare(a.GetStartTime().AsTime().UnixNano(), b.GetStartTime().AsTime().UnixNano())
	})
	path := filepath.Join(t.TempDir(), "recording.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	out := exchfile.NewWriter(f, exchfile.JSONL)
	for _, ex := range w.exchanges {
		if err := out.Write(ex); err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
