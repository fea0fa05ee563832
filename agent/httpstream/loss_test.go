package httpstream

import (
	"testing"

	"github.com/reprise-dev/reprise/agent/event"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// An incomplete exchange says why, and the tracker counts it by that cause.
func TestLossReason(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
	req := "GET /a HTTP/1.1\r\n\r\n"
	tests := []struct {
		name string
		s    *script
		want reprisev1.Loss
	}{
		{
			name: "ring full",
			s: func() *script {
				s := server(id1).open().in(req).out(head+"0123").lose(event.Egress, 3).out("789")
				s.events[len(s.events)-1].AfterLoss = true
				return s.close()
			}(),
			want: reprisev1.Loss_LOSS_RING_FULL,
		},
		{
			name: "gap the kernel did not flag",
			s:    server(id1).open().in(req).out(head+"0123").lose(event.Egress, 3).out("789").close(),
			want: reprisev1.Loss_LOSS_GAP,
		},
		{
			name: "copy failed",
			s: func() *script {
				s := server(id1).open().in(req).out(head + "0123456789")
				ev := &s.events[len(s.events)-1]
				ev.Data = ev.Data[:len(head)+4] // the rest could not be read
				return s.close()
			}(),
			want: reprisev1.Loss_LOSS_COPY_FAILED,
		},
		{
			name: "connection closed in the body",
			s:    server(id1).open().in(req).out(head + "0123").close(),
			want: reprisev1.Loss_LOSS_CONNECTION_CLOSED,
		},
		{
			name: "no response",
			s:    server(id1).open().in(req).close(),
			want: reprisev1.Loss_LOSS_NO_RESPONSE,
		},
		{
			name: "malformed response",
			s:    server(id1).open().in(req).out("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").close(),
			want: reprisev1.Loss_LOSS_PARSE_ERROR,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, got := run(Config{}, tt.s.events)
			if len(got) != 1 {
				t.Fatalf("exchanges %s", summaries(got))
			}
			c := got[0].Capture
			if !c.RequestIncomplete && !c.ResponseIncomplete || c.Loss != tt.want {
				t.Errorf("capture %v, want incomplete with loss %v", c, tt.want)
			}
			if st := tr.Stats(); st.Incomplete != 1 || st.IncompleteBy[tt.want] != 1 {
				t.Errorf("incomplete %d, by cause %v", st.Incomplete, st.IncompleteBy)
			}
		})
	}
	// A whole exchange has none.
	_, got := run(Config{}, server(id1).open().in(req).out(head+"0123456789").close().events)
	if len(got) != 1 || got[0].Capture.Loss != reprisev1.Loss_LOSS_UNSPECIFIED {
		t.Fatalf("exchanges %s", summaries(got))
	}
}
