package pipeline

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/agent/conntrack"
	"github.com/reprise-dev/reprise/agent/event"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// fakeSource replays events, then fails with err.
type fakeSource struct {
	events []event.Event
	err    error
}

func (f *fakeSource) Read() (event.Event, error) {
	if len(f.events) == 0 {
		return event.Event{}, f.err
	}
	ev := f.events[0]
	f.events = f.events[1:]
	return ev, nil
}

func (f *fakeSource) Close() error { return nil }

func data(dir event.Direction, pos uint64, s string) event.Event {
	return event.Event{
		Kind: event.KindData, Conn: event.ConnID{TGID: 10, FD: 4, Start: 1}, Comm: "srv", Time: time.Now(),
		Role: event.RoleServer, Dir: dir, Pos: pos, Size: uint32(len(s)), Data: []byte(s),
		Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:50000"),
	}
}

func TestRunFlushesWhenTheSourceCloses(t *testing.T) {
	req1 := "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	resp1 := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	req2 := "GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name    string
		err     error
		wantErr bool
	}{
		{"closed", fmt.Errorf("read: %w", os.ErrClosed), false},
		{"broken", errors.New("ring buffer gone"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := &fakeSource{err: tc.err, events: []event.Event{
				data(event.Ingress, 0, req1), data(event.Egress, 0, resp1), data(event.Ingress, uint64(len(req1)), req2),
			}}
			var got []*reprisev1.Exchange
			p := New(conntrack.New(conntrack.Config{}, func(ex *reprisev1.Exchange) { got = append(got, ex) }))
			err := p.Run(src, time.Hour)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Run = %v, want error %v", err, tc.wantErr)
			}
			// The answered request, and the unanswered one flushed at the end.
			if len(got) != 2 || got[0].Request.Target != "/a" || got[0].Response.GetStatusCode() != 200 ||
				got[1].Request.Target != "/b" || got[1].Response != nil || !got[1].Capture.ResponseIncomplete {
				t.Fatalf("exchanges = %v", got)
			}
			if st := p.Stats(); st.Events != 3 || st.Exchanges != 2 {
				t.Fatalf("published stats %+v, want 3 events and 2 exchanges", st)
			}
		})
	}
}

// countingSource yields n data events of size bytes each, counting reads.
type countingSource struct {
	n, size int
	reads   atomic.Int64
}

func (c *countingSource) Read() (event.Event, error) {
	i := int(c.reads.Add(1)) - 1
	if i >= c.n {
		return event.Event{}, os.ErrClosed
	}
	// The tracker takes these as bytes to resync on; only their size matters.
	return data(event.Ingress, uint64(len(reqA)+i*c.size), string(make([]byte, c.size))), nil
}

func (c *countingSource) Close() error { return nil }

const reqA = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"

func TestQueueIsBoundedByBytes(t *testing.T) {
	release := make(chan struct{})
	// The first exchange's emit blocks the tracker, so events pile up.
	first := &fakeSource{events: []event.Event{
		data(event.Ingress, 0, reqA), data(event.Egress, 0, "HTTP/1.1 204 No Content\r\n\r\n"),
	}}
	const size = 1 << 20
	rest := &countingSource{n: 64, size: size}
	p := New(conntrack.New(conntrack.Config{}, func(*reprisev1.Exchange) { <-release }))
	done := make(chan error, 1)
	go func() { done <- p.Run(chain{first, rest}, time.Hour) }()

	// Wait (bounded) for the reader to stop on the byte bound.
	var last int64 = -1
	for range 200 {
		time.Sleep(10 * time.Millisecond)
		if n := rest.reads.Load(); n == last && n > 0 {
			break
		} else {
			last = n
		}
	}
	if q := p.QueueBytes(); q > maxQueueBytes+size {
		t.Fatalf("queue holds %d bytes, bound %d", q, maxQueueBytes)
	}
	if n := rest.reads.Load(); n >= int64(rest.n) || n > maxQueueBytes/size+2 {
		t.Fatalf("reader took %d of %d events of %d bytes past an %d-byte bound", n, rest.n, size, maxQueueBytes)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p.QueueBytes() != 0 {
		t.Fatalf("queue bytes %d after the run, want 0", p.QueueBytes())
	}
}

// chain reads a, then b once a is exhausted.
type chain struct {
	a *fakeSource
	b event.Source
}

func (c chain) Read() (event.Event, error) {
	if len(c.a.events) > 0 {
		return c.a.Read()
	}
	return c.b.Read()
}

func (c chain) Close() error { return nil }
