package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/replayer/compare"
	"github.com/reprise-dev/reprise/replayer/replay"
)

func TestReport(t *testing.T) {
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		results     []replay.Result
		wantOK      bool
		wantCounts  [5]int // total, passed, failed, errors, skipped
		wantSummary string
	}{
		{
			name: "all passed",
			results: []replay.Result{
				{ID: "p1", Method: "GET", Target: "/x", Endpoint: "/x", RecordedStatus: 200, ReplayedStatus: 200},
				{ID: "p2", Method: "GET", Target: "/y", Endpoint: "/y", RecordedStatus: 200, ReplayedStatus: 200},
			},
			wantOK:     true,
			wantCounts: [5]int{2, 2, 0, 0, 0},
			wantSummary: "\n" +
				"  endpoint  count  passed  failed  errors  p50 rec/rep ms  p95 rec/rep ms  p99 rec/rep ms\n" +
				"    GET /x      1       1       0       0         0.0/0.0         0.0/0.0         0.0/0.0\n" +
				"    GET /y      1       1       0       0         0.0/0.0         0.0/0.0         0.0/0.0\n" +
				"\n" +
				"2 exchanges: 2 passed, 0 failed, 0 errors\n",
		},
		{
			name: "failure, error and skip",
			results: []replay.Result{
				{ID: "a", Method: "GET", Target: "/api/orders/1", Endpoint: "/api/orders/{id}", RecordedStatus: 200, ReplayedStatus: 200,
					RecordedLatency: 12 * time.Millisecond, Latency: 30 * time.Millisecond,
					Differences: []compare.Difference{
						{Path: "$.total", Kind: compare.KindChanged, Recorded: "25", Replayed: "22.5"},
						{Path: "$.note", Kind: compare.KindAdded, Replayed: `"x"`},
						{Path: "$.id", Kind: compare.KindMissing, Recorded: "1"},
					}},
				{ID: "b", Method: "GET", Target: "/", Endpoint: "/", RecordedStatus: 200, Err: errors.New("connection refused")},
				{ID: "c", Method: "POST", Target: "/up", Endpoint: "/up", RecordedStatus: 201, Skipped: "recorded request body truncated"},
				{ID: "d", Method: "GET", Target: "/ok", Endpoint: "/ok", RecordedStatus: 200, ReplayedStatus: 200},
			},
			wantCounts: [5]int{4, 1, 1, 1, 1},
			wantSummary: "FAIL  GET /api/orders/1 (a): 3 difference(s)\n" +
				"      $.total changed: 25 → 22.5\n" +
				"      $.note added (replayed \"x\")\n" +
				"      $.id missing (recorded 1)\n" +
				"ERROR GET / (b): connection refused\n" +
				"SKIP  POST /up (c): recorded request body truncated\n" +
				"\n" +
				"              endpoint  count  passed  failed  errors  p50 rec/rep ms  p95 rec/rep ms  p99 rec/rep ms\n" +
				"                 GET /      1       0       0       1         0.0/0.0         0.0/0.0         0.0/0.0\n" +
				"  GET /api/orders/{id}      1       0       1       0       12.0/30.0       12.0/30.0       12.0/30.0\n" +
				"               GET /ok      1       1       0       0         0.0/0.0         0.0/0.0         0.0/0.0\n" +
				"              POST /up      1       0       0       0         0.0/0.0         0.0/0.0         0.0/0.0\n" +
				"\n" +
				"4 exchanges: 1 passed, 1 failed, 1 errors, 1 skipped\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New("run-1", "http://127.0.0.1:8080", start)
			for _, res := range tt.results {
				r.Add(res)
			}
			r.Finish(start.Add(1500 * time.Millisecond))
			if got := [5]int{r.Total, r.Passed, r.Failed, r.Errors, r.Skipped}; got != tt.wantCounts || r.OK() != tt.wantOK {
				t.Errorf("counts = %v ok %v, want %v ok %v", got, r.OK(), tt.wantCounts, tt.wantOK)
			}
			var summary bytes.Buffer
			if err := r.WriteSummary(&summary); err != nil {
				t.Fatal(err)
			}
			if summary.String() != tt.wantSummary {
				t.Errorf("summary:\n%s\nwant:\n%s", summary.String(), tt.wantSummary)
			}

			var out bytes.Buffer
			if err := r.WriteJSON(&out); err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
				t.Fatal(err)
			}
			for _, key := range []string{"run_id", "target", "started_at", "duration_ms", "total", "passed", "failed", "errors", "skipped", "exchanges"} {
				if _, ok := doc[key]; !ok {
					t.Errorf("JSON report has no %q", key)
				}
			}
			if doc["duration_ms"] != 1500.0 || doc["started_at"] != "2026-11-24T10:00:00Z" {
				t.Errorf("duration_ms %v started_at %v", doc["duration_ms"], doc["started_at"])
			}
			for _, e := range doc["exchanges"].([]any) {
				ex := e.(map[string]any)
				if _, ok := ex["differences"].([]any); !ok {
					t.Errorf("exchange %v: differences is not an array", ex["id"])
				}
				if _, ok := ex["error"]; ok != (ex["id"] == "b") {
					t.Errorf("exchange %v: error present = %v", ex["id"], ok)
				}
			}
		})
	}
}

func TestSummaryCapsDifferences(t *testing.T) {
	var diffs []compare.Difference
	for range maxSummaryDiffs + 3 {
		diffs = append(diffs, compare.Difference{Path: "$.a", Kind: compare.KindChanged, Recorded: "1", Replayed: "2"})
	}
	r := New("run", "http://t", time.Now())
	r.Add(replay.Result{ID: "a", Method: "GET", Target: "/", Differences: diffs})
	var out bytes.Buffer
	if err := r.WriteSummary(&out); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "$.a changed"); got != maxSummaryDiffs {
		t.Errorf("printed %d differences, want %d", got, maxSummaryDiffs)
	}
	if !strings.Contains(out.String(), "… 3 more in the JSON report") {
		t.Errorf("summary does not say how many were left out:\n%s", out.String())
	}
}

func TestOKWithRateGoals(t *testing.T) {
	tests := []struct {
		name       string
		failed     int
		violations []Violation
		rateGoals  bool
		want       bool
	}{
		{"all matched", 0, nil, false, true},
		{"a mismatch fails without rate goals", 1, nil, false, false},
		{"a mismatch within min_pass_rate passes", 1, nil, true, true},
		{"a missed goal fails", 0, []Violation{{Goal: "min_pass_rate"}}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &Report{Failed: tc.failed}
			r.SetViolations(tc.violations, tc.rateGoals)
			if got := r.OK(); got != tc.want {
				t.Fatalf("OK() = %v, want %v", got, tc.want)
			}
		})
	}
}
