// Package metrics counts what the collector does. The services depend on the
// Metrics interface only, so tests and other front ends can pass Nop.
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Metrics receives the collector's events.
type Metrics interface {
	// BatchIngested counts one committed batch.
	BatchIngested(exchanges, redactions int)
	// BatchRejected counts a batch refused as invalid; nothing of it is stored.
	BatchRejected()
	// BatchDuplicate counts a batch acked without storing it again: its ID
	// was committed before (an agent resending after a lost ack).
	BatchDuplicate()
	// StoreError counts a failed store operation ("put", "get", "list",
	// "count", "stream", "services", "stats", "prune").
	StoreError(op string)
	// Pruned counts exchanges deleted by retention.
	Pruned(exchanges int)
	// IngestLimited counts what an ingest limit refused or removed, by
	// reason (see IngestLimitReasons).
	IngestLimited(reason string)
}

// IngestLimitReasons are the reasons of IngestLimited: a stream refused
// because too many were open ("streams") or too many of one agent
// ("agent_streams"), a stream closed after sending nothing for the idle
// time ("idle"), and a body removed because its batch had used its decode
// memory ("batch_memory").
var IngestLimitReasons = []string{"streams", "agent_streams", "idle", "batch_memory"}

// Nop discards every event.
type Nop struct{}

func (Nop) BatchIngested(int, int) {}
func (Nop) BatchRejected()         {}
func (Nop) BatchDuplicate()        {}
func (Nop) StoreError(string)      {}
func (Nop) Pruned(int)             {}
func (Nop) IngestLimited(string)   {}

// Prometheus exports the events as Prometheus counters.
type Prometheus struct {
	batches     prometheus.Counter
	exchanges   prometheus.Counter
	redactions  prometheus.Counter
	rejected    prometheus.Counter
	duplicates  prometheus.Counter
	pruned      prometheus.Counter
	storeErrors *prometheus.CounterVec
	limited     *prometheus.CounterVec
}

// NewPrometheus registers the collector's counters on reg.
func NewPrometheus(reg prometheus.Registerer) *Prometheus {
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "reprise", Subsystem: "collector", Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	m := &Prometheus{
		batches:    counter("ingested_batches_total", "Batches committed to the store and acknowledged."),
		exchanges:  counter("ingested_exchanges_total", "Exchanges in committed batches."),
		redactions: counter("redactions_total", "Values the sanitizer redacted before storing."),
		rejected:   counter("rejected_batches_total", "Batches refused as invalid; nothing of them is stored."),
		duplicates: counter("duplicate_batches_total", "Batches acked without storing them again: their batch id was committed before."),
		pruned:     counter("pruned_exchanges_total", "Exchanges deleted by retention (age or size)."),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "reprise", Subsystem: "collector", Name: "store_errors_total",
			Help: "Store operations that failed, by operation.",
		}, []string{"op"}),
	}
	m.limited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "reprise", Subsystem: "collector", Name: "ingest_limited_total",
		Help: "Ingest streams refused or closed and bodies removed by the ingest limits, by reason.",
	}, []string{"reason"})
	reg.MustRegister(m.storeErrors, m.limited)
	for _, r := range IngestLimitReasons {
		m.limited.WithLabelValues(r)
	}
	// Export every operation from the start, so a rate over the counter works
	// before the first error.
	for _, op := range []string{"put", "get", "list", "count", "stream", "services", "stats", "prune"} {
		m.storeErrors.WithLabelValues(op)
	}
	return m
}

func (m *Prometheus) BatchIngested(exchanges, redactions int) {
	m.batches.Inc()
	m.exchanges.Add(float64(exchanges))
	m.redactions.Add(float64(redactions))
}

func (m *Prometheus) BatchRejected() { m.rejected.Inc() }

func (m *Prometheus) BatchDuplicate() { m.duplicates.Inc() }

func (m *Prometheus) StoreError(op string) { m.storeErrors.WithLabelValues(op).Inc() }

func (m *Prometheus) Pruned(exchanges int) { m.pruned.Add(float64(exchanges)) }

// IngestLimited implements Metrics.
func (m *Prometheus) IngestLimited(reason string) { m.limited.WithLabelValues(reason).Inc() }

// RegisterRuleCounts exports the sanitizer's per-rule counters, read at
// scrape time, as reprise_collector_sanitize_matches_total{rule}.
func RegisterRuleCounts(reg prometheus.Registerer, counts func() map[string]uint64) {
	reg.MustRegister(ruleCounts{counts: counts})
}

var ruleDesc = prometheus.NewDesc("reprise_collector_sanitize_matches_total",
	"Values changed (or exchanges dropped) by each sanitize rule, detector and fail-closed reason.", []string{"rule"}, nil)

type ruleCounts struct{ counts func() map[string]uint64 }

func (r ruleCounts) Describe(ch chan<- *prometheus.Desc) { ch <- ruleDesc }

func (r ruleCounts) Collect(ch chan<- prometheus.Metric) {
	for rule, n := range r.counts() {
		ch <- prometheus.MustNewConstMetric(ruleDesc, prometheus.CounterValue, float64(n), rule)
	}
}
