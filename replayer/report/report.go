// Package report collects the results of a replay run and writes them for
// people (a terminal summary, an HTML page) and for machines (JSON, JUnit
// XML).
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/reprise-dev/reprise/replayer/compare"
	"github.com/reprise-dev/reprise/replayer/replay"
)

// Report is the result of one replay run.
type Report struct {
	RunID      string    `json:"run_id"`
	Target     string    `json:"target"`
	StartedAt  time.Time `json:"started_at"`
	DurationMS int64     `json:"duration_ms"`
	// Total counts every selected exchange: passed + failed +
	// needs_credentials + errors + skipped.
	Total  int `json:"total"`
	Passed int `json:"passed"`
	Failed int `json:"failed"`
	// NeedsCredentials counts the exchanges that got 401 or 403 because
	// their recorded credential was redacted at record time: not verified,
	// so they fail the run like a difference (exit status 1) until an auth
	// transform gives them a credential.
	NeedsCredentials int `json:"needs_credentials"`
	Errors           int `json:"errors"`
	Skipped          int `json:"skipped"`
	// Partial counts the exchanges whose recording was incomplete, so only
	// its recorded part was compared.
	Partial int `json:"partial"`
	// Dropped counts the skipped exchanges that were due while the bound of
	// requests in flight was reached: the target could not keep up.
	Dropped int `json:"dropped"`
	// Late counts the sends that started more than replay.LateThreshold
	// after their schedule; the load generator could not keep up.
	Late int `json:"late"`
	// Endpoints summarizes the exchanges per endpoint, in name order; set
	// by Finish.
	Endpoints []Endpoint `json:"endpoints"`
	// Violations are the goals the run missed; set by SetViolations.
	Violations []Violation `json:"violations"`
	// RateGoals: pass and error rate goals were set, so they decide the
	// verdict instead of requiring every exchange to match.
	RateGoals bool       `json:"rate_goals"`
	Exchanges []Exchange `json:"exchanges"`
}

// Exchange is the result of replaying one recorded exchange.
type Exchange struct {
	ID     string `json:"id"`
	Method string `json:"method"`
	Target string `json:"target"`
	// Endpoint is the method and the normalized path: GET /orders/{id}.
	Endpoint       string `json:"endpoint"`
	Service        string `json:"service,omitempty"`
	RecordedStatus int    `json:"recorded_status"`
	// ReplayedStatus is 0 when nothing came back (error or skip).
	ReplayedStatus int                  `json:"replayed_status"`
	Passed         bool                 `json:"passed"`
	Differences    []compare.Difference `json:"differences"`
	Error          string               `json:"error,omitempty"`
	// Skipped is why the exchange was not sent.
	Skipped string `json:"skipped,omitempty"`
	// NeedsCredentials is where the redacted credential was; Hint says
	// which auth transform supplies one.
	NeedsCredentials string `json:"needs_credentials,omitempty"`
	Hint             string `json:"hint,omitempty"`
	// Partial says what of an incomplete recording was compared.
	Partial    string  `json:"partial,omitempty"`
	Dropped    bool    `json:"dropped,omitempty"`
	RecordedMS float64 `json:"recorded_ms"`
	// ReplayedMS is measured from the scheduled start of the request.
	ReplayedMS float64 `json:"replayed_ms"`
	LateMS     float64 `json:"late_ms"`
}

// Status of an exchange, as counted in the totals.
const (
	StatusPassed           = "passed"
	StatusFailed           = "failed"
	StatusNeedsCredentials = "needs-credentials"
	StatusError            = "error"
	StatusSkipped          = "skipped"
)

// Status says how the exchange counts.
func (e Exchange) Status() string {
	switch {
	case e.Skipped != "":
		return StatusSkipped
	case e.Error != "":
		return StatusError
	case e.NeedsCredentials != "":
		return StatusNeedsCredentials
	case e.Passed:
		return StatusPassed
	}
	return StatusFailed
}

// Endpoint is the summary of one endpoint.
type Endpoint struct {
	Name   string `json:"endpoint"`
	Count  int    `json:"count"`
	Passed int    `json:"passed"`
	Failed int    `json:"failed"`
	// NeedsCredentials: see Report.NeedsCredentials.
	NeedsCredentials int `json:"needs_credentials"`
	Errors           int `json:"errors"`
	Skipped          int `json:"skipped"`
	// Recorded and Replayed are latency percentiles over the exchanges
	// that got a response.
	Recorded Percentiles `json:"recorded"`
	Replayed Percentiles `json:"replayed"`
}

// Percentiles of latency, in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
}

// Violation is one goal the run missed.
type Violation struct {
	// Goal is p95, p99, min_pass_rate or max_error_rate.
	Goal string `json:"goal"`
	// Endpoint is empty for goals over the whole run.
	Endpoint string `json:"endpoint,omitempty"`
	Limit    string `json:"limit"`
	Actual   string `json:"actual"`
}

func (v Violation) String() string {
	where := "run"
	if v.Endpoint != "" {
		where = v.Endpoint
	}
	return fmt.Sprintf("%s: %s is %s, goal %s", where, v.Goal, v.Actual, v.Limit)
}

// New starts the report of a run.
func New(runID, target string, startedAt time.Time) *Report {
	return &Report{
		RunID: runID, Target: target, StartedAt: startedAt.UTC(),
		Endpoints: []Endpoint{}, Violations: []Violation{}, Exchanges: []Exchange{},
	}
}

// Add records the result of one exchange.
func (r *Report) Add(res replay.Result) {
	e := Exchange{
		ID:             res.ID,
		Method:         res.Method,
		Target:         res.Target,
		Endpoint:       res.Method + " " + res.Endpoint,
		Service:        res.Service,
		RecordedStatus: res.RecordedStatus,
		ReplayedStatus: res.ReplayedStatus,
		Passed:         res.Passed(),
		Differences:    res.Differences,
		Skipped:        res.Skipped,
		Partial:        res.Partial,
		Dropped:        res.Dropped,
		RecordedMS:     ms(res.RecordedLatency),
		ReplayedMS:     ms(res.Latency),
		LateMS:         ms(res.Late),
	}
	if e.Differences == nil {
		e.Differences = []compare.Difference{}
	}
	if res.Err != nil {
		e.Error = res.Err.Error()
	}
	if res.NeedsCredentials != "" {
		e.NeedsCredentials, e.Hint = res.NeedsCredentials, credentialHint(res.NeedsCredentials)
	}
	r.Total++
	switch e.Status() {
	case StatusSkipped:
		r.Skipped++
	case StatusError:
		r.Errors++
	case StatusNeedsCredentials:
		r.NeedsCredentials++
	case StatusPassed:
		r.Passed++
	default:
		r.Failed++
	}
	if res.Dropped {
		r.Dropped++
	}
	if res.Partial != "" {
		r.Partial++
	}
	if res.Late >= replay.LateThreshold {
		r.Late++
	}
	r.Exchanges = append(r.Exchanges, e)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Finish sets the duration of the run and the per-endpoint summaries.
func (r *Report) Finish(end time.Time) {
	r.DurationMS = end.Sub(r.StartedAt).Milliseconds()
	groups := map[string][]Exchange{}
	for _, e := range r.Exchanges {
		groups[e.Endpoint] = append(groups[e.Endpoint], e)
	}
	r.Endpoints = []Endpoint{}
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		r.Endpoints = append(r.Endpoints, summarize(name, groups[name]))
	}
}

func summarize(name string, exs []Exchange) Endpoint {
	s := Endpoint{Name: name, Count: len(exs)}
	var rec, rep []float64
	for _, e := range exs {
		switch e.Status() {
		case StatusPassed:
			s.Passed++
		case StatusFailed:
			s.Failed++
		case StatusError:
			s.Errors++
		case StatusNeedsCredentials:
			s.NeedsCredentials++
		case StatusSkipped:
			s.Skipped++
		}
		if e.ReplayedStatus != 0 {
			rec = append(rec, e.RecordedMS)
			rep = append(rep, e.ReplayedMS)
		}
	}
	s.Recorded, s.Replayed = percentiles(rec), percentiles(rep)
	return s
}

// percentiles uses the nearest-rank method: every value reported is one
// that was measured.
func percentiles(v []float64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	slices.Sort(v)
	rank := func(p float64) float64 {
		i := int(float64(len(v))*p+0.999999) - 1
		return v[min(max(i, 0), len(v)-1)]
	}
	return Percentiles{P50: rank(0.50), P95: rank(0.95), P99: rank(0.99)}
}

// SetViolations records the goals the run missed; rateGoals says whether
// pass or error rate goals were set.
func (r *Report) SetViolations(v []Violation, rateGoals bool) {
	r.Violations = append([]Violation{}, v...)
	r.RateGoals = rateGoals
}

// OK reports whether every goal was met and, unless rate goals allow some,
// every exchange that was sent matched.
func (r *Report) OK() bool {
	if r.RateGoals {
		return len(r.Violations) == 0
	}
	return r.Failed == 0 && r.NeedsCredentials == 0 && r.Errors == 0 && len(r.Violations) == 0
}

// credentialHint names the auth transform that gives a replayed request
// the credential the sanitizer removed from its recording at loc.
func credentialHint(loc string) string {
	name := "Authorization"
	if h, ok := strings.CutPrefix(loc, "request.headers."); ok {
		name = h
	}
	if name == "Cookie" || strings.HasPrefix(loc, "request.cookies.") {
		return "the recorded cookie was redacted at record time; give the replay a session with transforms.set_headers {Cookie: …} or log in first and let transforms.learn carry the cookie"
	}
	if strings.HasPrefix(loc, "request.url.") {
		return "the credential in the recorded URL (" + loc + ") was redacted at record time; give a test one with transforms.rewrite_url"
	}
	return fmt.Sprintf("the recorded %s was redacted at record time; give the replay a test credential with transforms.auth {header: %s, prefix: \"Basic \" or \"Bearer \", token: … or command: …}", name, name)
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write JSON report: %w", err)
	}
	return nil
}
