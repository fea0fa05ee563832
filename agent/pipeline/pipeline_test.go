package pipeline

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/agent/event"
	"github.com/reprise-dev/reprise/agent/httpstream"
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
			p := New(httpstream.New(httpstream.Config{}, func(ex *reprisev1.Exchange) { got = append(got, ex) }))
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

// reusingSource hands out every event's bytes in one buffer, overwritten
// at each Read, as the ring buffer reader does; after the events it blocks
// until closed.
type reusingSource struct {
	events []event.Event
	buf    []byte
	closed chan struct{}
}

func (r *reusingSource) Read() (event.Event, error) {
	for i := range r.buf {
		r.buf[i] = '#'
	}
	if len(r.events) == 0 {
		<-r.closed
		return event.Event{}, os.ErrClosed
	}
	ev := r.events[0]
	r.events = r.events[1:]
	r.buf = append(r.buf[:0], ev.Data...)
	ev.Data = r.buf
	return ev, nil
}

func (r *reusingSource) Close() error { close(r.closed); return nil }

func TestRunWithAReusedBuffer(t *testing.T) {
	// The end of the response comes before its start (another CPU), so the
	// tracker holds it across Reads; the second request stays unanswered.
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	src := &reusingSource{closed: make(chan struct{}), events: []event.Event{
		data(event.Ingress, 0, reqA), data(event.Egress, 20, resp[20:]), data(event.Egress, 0, resp[:20]),
		data(event.Ingress, uint64(len(reqA)), "GET /b HTTP/1.1\r\n\r\n"),
	}}
	// Events from an hour ago: the first tick expires the connection.
	for i := range src.events {
		src.events[i].Time = time.Now().Add(-time.Hour)
	}
	got := make(chan *reprisev1.Exchange, 2)
	p := New(httpstream.New(httpstream.Config{IdleTimeout: time.Minute}, func(ex *reprisev1.Exchange) { got <- ex }))
	done := make(chan error, 1)
	go func() { done <- p.Run(src, 10*time.Millisecond) }()

	// The last exchange arrives while Read blocks: the ticker expired the
	// idle connection.
	for _, want := range []string{"/a 200 ok", "/b none"} {
		select {
		case ex := <-got:
			s := ex.Request.Target + " none"
			if ex.Response != nil {
				s = fmt.Sprintf("%s %d %s", ex.Request.Target, ex.Response.StatusCode, ex.Response.Body)
			}
			if s != want {
				t.Fatalf("exchange %q, want %q", s, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no exchange %q 5s into the run", want)
		}
	}
	src.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Events != 4 || st.Expired != 1 {
		t.Fatalf("published stats %+v, want 4 events and 1 expired connection", st)
	}
}

const reqA = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
