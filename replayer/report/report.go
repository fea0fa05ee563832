// Package report collects the results of a replay run and writes them as a
// JSON document for machines and as a short summary for people.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/reprise-dev/reprise/replayer/compare"
	"github.com/reprise-dev/reprise/replayer/replay"
)

// maxSummaryDiffs bounds the differences printed per exchange in the
// terminal summary; the JSON report has them all.
const maxSummaryDiffs = 10

// Report is the result of one replay run.
type Report struct {
	RunID      string    `json:"run_id"`
	Target     string    `json:"target"`
	StartedAt  time.Time `json:"started_at"`
	DurationMS int64     `json:"duration_ms"`
	// Total counts every selected exchange: passed + failed + errors + skipped.
	Total     int        `json:"total"`
	Passed    int        `json:"passed"`
	Failed    int        `json:"failed"`
	Errors    int        `json:"errors"`
	Skipped   int        `json:"skipped"`
	Exchanges []Exchange `json:"exchanges"`
}

// Exchange is the result of replaying one recorded exchange.
type Exchange struct {
	ID             string `json:"id"`
	Method         string `json:"method"`
	Target         string `json:"target"`
	RecordedStatus int    `json:"recorded_status"`
	// ReplayedStatus is 0 when nothing came back (error or skip).
	ReplayedStatus int                  `json:"replayed_status"`
	Passed         bool                 `json:"passed"`
	Differences    []compare.Difference `json:"differences"`
	Error          string               `json:"error,omitempty"`
	// Skipped is why the exchange was not sent.
	Skipped string `json:"skipped,omitempty"`
}

// New starts the report of a run.
func New(runID, target string, startedAt time.Time) *Report {
	return &Report{RunID: runID, Target: target, StartedAt: startedAt.UTC(), Exchanges: []Exchange{}}
}

// Add records the result of one exchange.
func (r *Report) Add(res replay.Result) {
	e := Exchange{
		ID:             res.ID,
		Method:         res.Method,
		Target:         res.Target,
		RecordedStatus: res.RecordedStatus,
		ReplayedStatus: res.ReplayedStatus,
		Passed:         res.Passed(),
		Differences:    res.Differences,
		Skipped:        res.Skipped,
	}
	if e.Differences == nil {
		e.Differences = []compare.Difference{}
	}
	r.Total++
	switch {
	case res.Skipped != "":
		r.Skipped++
	case res.Err != nil:
		e.Error = res.Err.Error()
		r.Errors++
	case e.Passed:
		r.Passed++
	default:
		r.Failed++
	}
	r.Exchanges = append(r.Exchanges, e)
}

// Finish sets the duration of the run.
func (r *Report) Finish(end time.Time) {
	r.DurationMS = end.Sub(r.StartedAt).Milliseconds()
}

// OK reports whether every exchange that was sent matched.
func (r *Report) OK() bool {
	return r.Failed == 0 && r.Errors == 0
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

// WriteSummary writes one line per exchange that did not pass, its
// differences indented below it, then the totals.
func (r *Report) WriteSummary(w io.Writer) error {
	ew := &errWriter{w: w}
	for _, e := range r.Exchanges {
		switch {
		case e.Skipped != "":
			ew.printf("SKIP  %s %s (%s): %s\n", e.Method, e.Target, e.ID, e.Skipped)
		case e.Error != "":
			ew.printf("ERROR %s %s (%s): %s\n", e.Method, e.Target, e.ID, e.Error)
		case !e.Passed:
			ew.printf("FAIL  %s %s (%s): %d difference(s)\n", e.Method, e.Target, e.ID, len(e.Differences))
			for i, d := range e.Differences {
				if i == maxSummaryDiffs {
					ew.printf("      … %d more in the JSON report\n", len(e.Differences)-i)
					break
				}
				ew.printf("      %s\n", describe(d))
			}
		}
	}
	ew.printf("%d exchanges: %d passed, %d failed, %d errors", r.Total, r.Passed, r.Failed, r.Errors)
	if r.Skipped > 0 {
		ew.printf(", %d skipped", r.Skipped)
	}
	ew.printf("\n")
	if ew.err != nil {
		return fmt.Errorf("write summary: %w", ew.err)
	}
	return nil
}

func describe(d compare.Difference) string {
	switch d.Kind {
	case compare.KindMissing:
		return fmt.Sprintf("%s missing (recorded %s)", d.Path, d.Recorded)
	case compare.KindAdded:
		return fmt.Sprintf("%s added (replayed %s)", d.Path, d.Replayed)
	case compare.KindTruncated:
		return d.Recorded
	}
	return fmt.Sprintf("%s %s: %s → %s", d.Path, d.Kind, d.Recorded, d.Replayed)
}

// errWriter keeps the first write error, so the summary code stays linear.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
