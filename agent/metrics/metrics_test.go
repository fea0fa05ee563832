package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reprise-dev/reprise/agent/capture"
	"github.com/reprise-dev/reprise/agent/export"
	"github.com/reprise-dev/reprise/agent/httpstream"
)

func TestCollector(t *testing.T) {
	c := NewCollector(Sources{
		Capture: func() (capture.Stats, error) {
			return capture.Stats{RingbufFull: 3, RingbufFullBytes: 3000, TruncatedBytes: 7}, nil
		},
		Tracker: func() httpstream.Stats {
			return httpstream.Stats{Events: 10, Exchanges: 4, Incomplete: 1, Filtered: 2, BytesUnavailable: 500, Streamed: 1, Resyncs: 2, Conns: 5}
		},
		Export: func() export.Stats {
			return export.Stats{Acked: 4, Dropped: 1, Drops: map[string]uint64{export.DropBacklogFull: 1, export.DropSpoolFull: 0},
				Spooled: 12, SpoolFiles: 2, SpoolBytes: 3000, SpoolExchanges: 9}
		},
		Pending:    func() int { return 6 },
		RingUnread: func() int64 { return 9 },
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	want := `
# HELP reprise_agent_drops_total Things lost, by reason.
# TYPE reprise_agent_drops_total counter
reprise_agent_drops_total{reason="buffer_overflow"} 0
reprise_agent_drops_total{reason="conn_map_full"} 0
reprise_agent_drops_total{reason="copy_failed"} 0
reprise_agent_drops_total{reason="export_backlog"} 1
reprise_agent_drops_total{reason="malformed_event"} 0
reprise_agent_drops_total{reason="max_conns"} 0
reprise_agent_drops_total{reason="parse_error"} 0
reprise_agent_drops_total{reason="ringbuf_full"} 3
reprise_agent_drops_total{reason="stream_resync"} 2
reprise_agent_drops_total{reason="unanswered_request"} 0
reprise_agent_drops_total{reason="unmatched_response"} 0
# HELP reprise_agent_dropped_bytes_total Stream bytes lost, by reason.
# TYPE reprise_agent_dropped_bytes_total counter
reprise_agent_dropped_bytes_total{reason="copy_failed"} 0
reprise_agent_dropped_bytes_total{reason="kernel_truncated"} 7
reprise_agent_dropped_bytes_total{reason="ringbuf_full"} 3000
# HELP reprise_agent_export_dropped_total Exchanges lost on the way to the collector, by reason (their sum is drops_total{reason="export_backlog"}).
# TYPE reprise_agent_export_dropped_total counter
reprise_agent_export_dropped_total{reason="backlog_full"} 1
reprise_agent_export_dropped_total{reason="spool_full"} 0
# HELP reprise_agent_ring_unread_bytes Bytes in the kernel ring buffer the agent has not read yet.
# TYPE reprise_agent_ring_unread_bytes gauge
reprise_agent_ring_unread_bytes 9
# HELP reprise_agent_spool_exchanges Exchanges in the disk spool.
# TYPE reprise_agent_spool_exchanges gauge
reprise_agent_spool_exchanges 9
# HELP reprise_agent_spooled_exchanges_total Exchanges written to the disk spool, sanitized.
# TYPE reprise_agent_spooled_exchanges_total counter
reprise_agent_spooled_exchanges_total 12
# HELP reprise_agent_incomplete_exchanges_total Exchanges assembled with the request or response missing or cut short.
# TYPE reprise_agent_incomplete_exchanges_total counter
reprise_agent_incomplete_exchanges_total 1
# HELP reprise_agent_unavailable_bytes_total Body bytes sent with sendfile: framed and counted, never copied (not a loss).
# TYPE reprise_agent_unavailable_bytes_total counter
reprise_agent_unavailable_bytes_total 500
`
	names := []string{"reprise_agent_drops_total", "reprise_agent_dropped_bytes_total", "reprise_agent_ring_unread_bytes",
		"reprise_agent_export_dropped_total", "reprise_agent_spool_exchanges", "reprise_agent_spooled_exchanges_total",
		"reprise_agent_incomplete_exchanges_total", "reprise_agent_unavailable_bytes_total"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n < 20 {
		t.Fatalf("%d metrics, err %v", n, err)
	}
}
