package httpstream

import (
	"strings"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/agent/event"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// TestReleaseLeavesStreamingBodies releases every exchange as soon as it is
// emitted, as if the collector acknowledged it at once: a response emitted
// while it still streams is being written by its parser, so its buffer must
// not serve another body.
func TestReleaseLeavesStreamingBodies(t *testing.T) {
	var got []*reprisev1.Exchange
	tr := New(Config{StreamTimeout: time.Second}, func(x *reprisev1.Exchange) {
		got = append(got, x)
		if x.Request.Target != "/keep" {
			Release(x)
		}
	})
	a := server(event.ConnID{TGID: 1, FD: 3, Start: 1}).open().
		in("GET /stream HTTP/1.1\r\nHost: a\r\n\r\n").
		out("HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + strings.Repeat("a", 2000))
	for _, ev := range a.events {
		tr.Handle(ev)
	}
	a.events = nil
	tr.Expire(a.at.Add(2 * time.Second))
	if len(got) != 1 || !got[0].Capture.ResponseStreaming {
		t.Fatalf("want the streaming response emitted, got %d exchanges", len(got))
	}
	// Bodies of the same size, one released and one kept.
	for _, target := range []string{"/other", "/keep"} {
		b := server(event.ConnID{TGID: 2, FD: 4, Start: 1}).open().
			in("POST " + target + " HTTP/1.1\r\nHost: b\r\nContent-Length: 10000\r\n\r\n" + strings.Repeat("b", 10000)).
			out("HTTP/1.1 204 No Content\r\n\r\n").close()
		for _, ev := range b.events {
			tr.Handle(ev)
		}
	}
	for _, ev := range a.out(strings.Repeat("c", 8000)).close().events {
		tr.Handle(ev)
	}
	if len(got) != 3 {
		t.Fatalf("%d exchanges, want 3", len(got))
	}
	if kept := got[2]; kept.Request.Target != "/keep" || string(kept.Request.Body) != strings.Repeat("b", 10000) {
		t.Fatalf("kept request body changed: %.40q…", kept.Request.Body)
	}
}
