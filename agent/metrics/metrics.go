// Package metrics exposes the agent's counters to Prometheus. The counters
// live in the parts that own them (kernel maps, tracker, exporter); this
// collector reads snapshots at scrape time instead of mirroring them.
package metrics

import (
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reprise-dev/reprise/agent/capture"
	"github.com/reprise-dev/reprise/agent/export"
	"github.com/reprise-dev/reprise/agent/httpstream"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Sources are the snapshots a scrape reads.
type Sources struct {
	Capture func() (capture.Stats, error)
	Tracker func() httpstream.Stats
	Export  func() export.Stats
	Pending func() int
	// RingUnread is the bytes in the kernel ring buffer not read yet, and
	// PendingBytes the memory of the exchanges waiting for the collector;
	// nil leaves the gauge out.
	RingUnread, PendingBytes func() int64
}

type collector struct {
	src Sources

	events, bytes, exchanges, exported                 *prometheus.Desc
	drops, truncated, streamLost, conns, exportBacklog *prometheus.Desc
	droppedBytes, unavailable, filtered, streamed      *prometheus.Desc
	invalidText, copied, skipped, bodySkipped          *prometheus.Desc
	skipErrors, incompleteBy                           *prometheus.Desc
	incomplete, ringUnread, pendingBytes               *prometheus.Desc
	exportDropped, spooled, spoolDropped, retries      *prometheus.Desc
	spoolBatches, spoolBytes, spoolExchanges           *prometheus.Desc
}

// NewCollector returns a prometheus.Collector over src.
func NewCollector(src Sources) prometheus.Collector {
	name := func(n string) string { return "reprise_agent_" + n }
	return &collector{
		src:            src,
		events:         prometheus.NewDesc(name("events_total"), "Capture events handled.", nil, nil),
		bytes:          prometheus.NewDesc(name("bytes_total"), "Stream bytes seen by the tracker.", nil, nil),
		exchanges:      prometheus.NewDesc(name("exchanges_total"), "Exchanges assembled.", nil, nil),
		exported:       prometheus.NewDesc(name("exported_exchanges_total"), "Exchanges the collector acknowledged.", nil, nil),
		drops:          prometheus.NewDesc(name("drops_total"), "Things lost, by reason.", []string{"reason"}, nil),
		truncated:      prometheus.NewDesc(name("kernel_truncated_bytes_total"), "Bytes of iovec entries the kernel could not read.", nil, nil),
		copied:         prometheus.NewDesc(name("kernel_copied_bytes_total"), "Payload bytes the kernel copied into the ring buffer.", nil, nil),
		skipped:        prometheus.NewDesc(name("kernel_skipped_bytes_total"), "Bytes the kernel left uncopied on purpose: bodies past --body-cap (not a loss).", nil, nil),
		bodySkipped:    prometheus.NewDesc(name("skipped_body_bytes_total"), "Body bytes past --body-cap framed without their content (not a loss).", nil, nil),
		incompleteBy:   prometheus.NewDesc(name("incomplete_exchanges_by_loss_total"), "Incomplete exchanges by the first cause of their loss (Capture.loss).", []string{"loss"}, nil),
		skipErrors:     prometheus.NewDesc(name("skip_errors_total"), "Failed requests to the kernel to stop copying a body past --body-cap.", nil, nil),
		streamLost:     prometheus.NewDesc(name("stream_bytes_lost_total"), "Stream bytes the parser never saw, for any reason (gaps, truncation).", nil, nil),
		conns:          prometheus.NewDesc(name("connections"), "Connections tracked now.", nil, nil),
		exportBacklog:  prometheus.NewDesc(name("export_pending"), "Exchanges queued or awaiting the collector's ack.", nil, nil),
		droppedBytes:   prometheus.NewDesc(name("dropped_bytes_total"), "Stream bytes lost, by reason.", []string{"reason"}, nil),
		unavailable:    prometheus.NewDesc(name("unavailable_bytes_total"), "Body bytes sent with sendfile: framed and counted, never copied (not a loss).", nil, nil),
		filtered:       prometheus.NewDesc(name("filtered_exchanges_total"), "Exchanges left out by --methods and --paths.", nil, nil),
		streamed:       prometheus.NewDesc(name("streamed_responses_total"), "Responses emitted before their end (stream timeout or capped event stream).", nil, nil),
		invalidText:    prometheus.NewDesc(name("invalid_text_exchanges_total"), "Exchanges with a header, target, host or process name that was not UTF-8; those bytes were sent as U+FFFD.", nil, nil),
		incomplete:     prometheus.NewDesc(name("incomplete_exchanges_total"), "Exchanges assembled with the request or response missing or cut short.", nil, nil),
		ringUnread:     prometheus.NewDesc(name("ring_unread_bytes"), "Bytes in the kernel ring buffer the agent has not read yet.", nil, nil),
		pendingBytes:   prometheus.NewDesc(name("export_pending_bytes"), "Approximate size of the exchanges queued or awaiting the collector's ack.", nil, nil),
		exportDropped:  prometheus.NewDesc(name("export_dropped_total"), "Exchanges lost on the way to the collector, by reason (their sum is drops_total{reason=\"export_backlog\"}).", []string{"reason"}, nil),
		spooled:        prometheus.NewDesc(name("spooled_exchanges_total"), "Exchanges written to the disk spool, sanitized.", nil, nil),
		spoolDropped:   prometheus.NewDesc(name("spool_sanitize_dropped_total"), "Exchanges a sanitize drop rule removed on their way to the spool (the collector drops them too).", nil, nil),
		retries:        prometheus.NewDesc(name("export_retries_total"), "Ingest streams re-opened after an error.", nil, nil),
		spoolBatches:   prometheus.NewDesc(name("spool_batches"), "Batches in the disk spool.", nil, nil),
		spoolBytes:     prometheus.NewDesc(name("spool_bytes"), "Bytes in the disk spool.", nil, nil),
		spoolExchanges: prometheus.NewDesc(name("spool_exchanges"), "Exchanges in the disk spool.", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	ks, err := c.src.Capture()
	if err != nil {
		slog.Warn("read kernel counters", "component", "metrics", "err", err)
	}
	ts := c.src.Tracker()
	es := c.src.Export()

	counter(c.events, ts.Events)
	counter(c.bytes, ts.Bytes)
	counter(c.exchanges, ts.Exchanges)
	counter(c.exported, es.Acked)
	for reason, v := range map[string]uint64{
		"ringbuf_full":       ks.RingbufFull,
		"copy_failed":        ks.CopyFailed,
		"conn_map_full":      ks.ConnMapFull,
		"malformed_event":    ks.Malformed,
		"max_conns":          ts.DroppedConns,
		"parse_error":        ts.ParseErrors,
		"buffer_overflow":    ts.Overflows,
		"stream_resync":      ts.Resyncs,
		"unanswered_request": ts.UnansweredRequests,
		"unmatched_response": ts.UnmatchedResponses,
		"export_backlog":     es.Dropped,
	} {
		counter(c.drops, v, reason)
	}
	for reason, v := range map[string]uint64{
		"ringbuf_full":     ks.RingbufFullBytes,
		"copy_failed":      ks.CopyFailedBytes,
		"kernel_truncated": ks.TruncatedBytes,
	} {
		counter(c.droppedBytes, v, reason)
	}
	for reason, v := range es.Drops {
		counter(c.exportDropped, v, reason)
	}
	counter(c.spooled, es.Spooled)
	counter(c.spoolDropped, es.SanitizeDropped)
	counter(c.retries, es.Retries)
	ch <- prometheus.MustNewConstMetric(c.spoolBatches, prometheus.GaugeValue, float64(es.SpoolFiles))
	ch <- prometheus.MustNewConstMetric(c.spoolBytes, prometheus.GaugeValue, float64(es.SpoolBytes))
	ch <- prometheus.MustNewConstMetric(c.spoolExchanges, prometheus.GaugeValue, float64(es.SpoolExchanges))
	counter(c.unavailable, ts.BytesUnavailable)
	counter(c.filtered, ts.Filtered)
	counter(c.incomplete, ts.Incomplete)
	for loss, v := range ts.IncompleteBy {
		if loss != 0 {
			name := strings.ToLower(strings.TrimPrefix(reprisev1.Loss(loss).String(), "LOSS_"))
			counter(c.incompleteBy, v, name)
		}
	}
	counter(c.streamed, ts.Streamed)
	counter(c.invalidText, ts.InvalidText)
	counter(c.truncated, ks.TruncatedBytes)
	counter(c.copied, ks.CopiedBytes)
	counter(c.skipped, ks.SkippedBytes)
	counter(c.bodySkipped, ts.BytesSkipped)
	counter(c.skipErrors, ts.SkipErrors)
	counter(c.streamLost, ts.BytesLost)
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(ts.Conns))
	ch <- prometheus.MustNewConstMetric(c.exportBacklog, prometheus.GaugeValue, float64(c.src.Pending()))
	for d, f := range map[*prometheus.Desc]func() int64{c.ringUnread: c.src.RingUnread, c.pendingBytes: c.src.PendingBytes} {
		if f != nil {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(f()))
		}
	}
}
