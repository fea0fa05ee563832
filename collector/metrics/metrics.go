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
	// StoreError counts a failed store operation ("put", "get", "list", "stream").
	StoreError(op string)
}

// Nop discards every event.
type Nop struct{}

func (Nop) BatchIngested(int, int) {}
func (Nop) BatchRejected()         {}
func (Nop) StoreError(string)      {}

// Prometheus exports the events as Prometheus counters.
type Prometheus struct {
	batches     prometheus.Counter
	exchanges   prometheus.Counter
	redactions  prometheus.Counter
	rejected    prometheus.Counter
	storeErrors *prometheus.CounterVec
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
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "reprise", Subsystem: "collector", Name: "store_errors_total",
			Help: "Store operations that failed, by operation.",
		}, []string{"op"}),
	}
	reg.MustRegister(m.storeErrors)
	// Export every operation from the start, so a rate over the counter works
	// before the first error.
	for _, op := range []string{"put", "get", "list", "stream"} {
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

func (m *Prometheus) StoreError(op string) { m.storeErrors.WithLabelValues(op).Inc() }
