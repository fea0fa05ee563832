package report

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/reprise-dev/reprise/replayer/compare"
)

// maxSummaryDiffs bounds the differences printed per exchange in the
// terminal summary; the JSON report has them all.
const maxSummaryDiffs = 10

// WriteSummary writes one line per exchange that did not pass with its
// differences below it, a table per endpoint, the missed goals and the
// totals.
func (r *Report) WriteSummary(w io.Writer) error {
	ew := &errWriter{w: w}
	for _, e := range r.Exchanges {
		switch e.Status() {
		case StatusSkipped:
			ew.printf("SKIP  %s %s (%s): %s\n", e.Method, e.Target, e.ID, e.Skipped)
		case StatusError:
			ew.printf("ERROR %s %s (%s): %s\n", e.Method, e.Target, e.ID, e.Error)
		case StatusNeedsCredentials:
			ew.printf("CREDS %s %s (%s): got %d, recorded %d: needs credentials: %s\n", e.Method, e.Target, e.ID, e.ReplayedStatus, e.RecordedStatus, e.Hint)
		case StatusFailed:
			ew.printf("FAIL  %s %s (%s): %d difference(s)\n", e.Method, e.Target, e.ID, len(e.Differences))
			for i, d := range e.Differences {
				if i == maxSummaryDiffs {
					ew.printf("      … %d more in the JSON report\n", len(e.Differences)-i)
					break
				}
				ew.printf("      %s\n", Describe(d))
			}
		}
		if e.Partial != "" && e.Status() != StatusSkipped {
			ew.printf("NOTE  %s %s (%s): %s\n", e.Method, e.Target, e.ID, e.Partial)
		}
	}
	if len(r.Endpoints) > 0 {
		ew.printf("\n")
		tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "endpoint\tcount\tpassed\tfailed\terrors\tp50 rec/rep ms\tp95 rec/rep ms\tp99 rec/rep ms\t")
		for _, s := range r.Endpoints {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t\n", s.Name, s.Count, s.Passed, s.Failed, s.Errors,
				pair(s.Recorded.P50, s.Replayed.P50), pair(s.Recorded.P95, s.Replayed.P95), pair(s.Recorded.P99, s.Replayed.P99))
		}
		tw.Flush()
		ew.printf("\n")
	}
	for _, v := range r.Violations {
		ew.printf("GOAL  %s\n", v)
	}
	ew.printf("%d exchanges: %d passed, %d failed, %d errors", r.Total, r.Passed, r.Failed, r.Errors)
	if r.NeedsCredentials > 0 {
		ew.printf(", %d need credentials", r.NeedsCredentials)
	}
	if r.Skipped > 0 {
		ew.printf(", %d skipped", r.Skipped)
	}
	if r.Dropped > 0 {
		ew.printf(" (%d dropped)", r.Dropped)
	}
	if r.Late > 0 {
		ew.printf(", %d sent late", r.Late)
	}
	if r.Partial > 0 {
		ew.printf(", %d compared in part (incomplete recording)", r.Partial)
	}
	if len(r.Violations) > 0 {
		ew.printf("; %d goal(s) missed", len(r.Violations))
	}
	ew.printf("\n")
	if ew.err != nil {
		return fmt.Errorf("write summary: %w", ew.err)
	}
	return nil
}

func pair(rec, rep float64) string { return fmt.Sprintf("%.1f/%.1f", rec, rep) }

// Describe renders a difference on one line, its path first so it can be
// pasted into the ignore rules.
func Describe(d compare.Difference) string {
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

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
