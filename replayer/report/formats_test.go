package report

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/replayer/compare"
	"github.com/reprise-dev/reprise/replayer/replay"
)

// sample has two endpoints: GET /orders/{id} with 3 passed and 1 failed,
// POST /orders with 1 error and 1 skipped, and one missed goal.
func sample() *Report {
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	r := New("run-7", "http://127.0.0.1:9", start)
	for i := range 4 {
		res := replay.Result{ID: fmt.Sprint("g", i), Method: "GET", Target: fmt.Sprint("/orders/", i), Endpoint: "/orders/{id}",
			RecordedStatus: 200, ReplayedStatus: 200,
			RecordedLatency: time.Duration(i+1) * time.Millisecond, Latency: time.Duration(10*(i+1)) * time.Millisecond}
		if i == 3 {
			res.Differences = []compare.Difference{{Path: "$.total", Kind: compare.KindChanged, Recorded: "20", Replayed: "<18>"}}
		}
		r.Add(res)
	}
	r.Add(replay.Result{ID: "p0", Method: "POST", Target: "/orders", Endpoint: "/orders", RecordedStatus: 201, Err: errors.New("connection refused")})
	r.Add(replay.Result{ID: "p1", Method: "POST", Target: "/orders", Endpoint: "/orders", RecordedStatus: 201, Skipped: "writes not allowed"})
	r.Finish(start.Add(2 * time.Second))
	r.SetViolations([]Violation{{Goal: "p95", Endpoint: "GET /orders/{id}", Limit: "20ms", Actual: "40.0ms"}}, false)
	return r
}

func endpoint(r *Report, name string) (Endpoint, bool) {
	for _, e := range r.Endpoints {
		if e.Name == name {
			return e, true
		}
	}
	return Endpoint{}, false
}

func TestEndpointSummary(t *testing.T) {
	r := sample()
	s, ok := endpoint(r, "GET /orders/{id}")
	if !ok {
		t.Fatalf("no summary for GET /orders/{id}: %+v", r.Endpoints)
	}
	want := Endpoint{Name: "GET /orders/{id}", Count: 4, Passed: 3, Failed: 1,
		Recorded: Percentiles{P50: 2, P95: 4, P99: 4}, Replayed: Percentiles{P50: 20, P95: 40, P99: 40}}
	if s != want {
		t.Errorf("summary %+v\nwant    %+v", s, want)
	}
	if p, _ := endpoint(r, "POST /orders"); p.Errors != 1 || p.Skipped != 1 || p.Replayed != (Percentiles{}) {
		t.Errorf("POST summary %+v", p)
	}
	if r.OK() {
		t.Error("report with a failure and a missed goal is OK")
	}
}

func TestPercentilesNearestRank(t *testing.T) {
	var v []float64
	for i := 100; i >= 1; i-- {
		v = append(v, float64(i))
	}
	if got := percentiles(v); got != (Percentiles{P50: 50, P95: 95, P99: 99}) {
		t.Errorf("1..100: %+v", got)
	}
	if got := percentiles([]float64{7}); got != (Percentiles{P50: 7, P95: 7, P99: 7}) {
		t.Errorf("one value: %+v", got)
	}
}

func TestJUnit(t *testing.T) {
	var buf bytes.Buffer
	if err := sample().WriteJUnit(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Cases    []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
				Error   *struct{} `xml:"error"`
				Skipped *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("JUnit does not parse: %v\n%s", err, buf.String())
	}
	if doc.Tests != 7 || doc.Failures != 2 || doc.Errors != 1 || doc.Skipped != 1 {
		t.Errorf("totals tests=%d failures=%d errors=%d skipped=%d, want 7 2 1 1", doc.Tests, doc.Failures, doc.Errors, doc.Skipped)
	}
	if len(doc.Suites) != 3 || doc.Suites[0].Name != "GET /orders/{id}" || doc.Suites[1].Name != "POST /orders" || doc.Suites[2].Name != "goals" {
		t.Fatalf("suites: %+v", doc.Suites)
	}
	get := doc.Suites[0]
	if get.Tests != 4 || get.Failures != 1 || len(get.Cases) != 4 {
		t.Errorf("GET suite: tests=%d failures=%d cases=%d", get.Tests, get.Failures, len(get.Cases))
	}
	f := get.Cases[3].Failure
	if f == nil || f.Message != "1 difference(s)" || f.Text != "$.total changed: 20 → <18>" {
		t.Errorf("failure of the changed exchange: %+v", f)
	}
	post := doc.Suites[1]
	if post.Cases[0].Error == nil || post.Cases[1].Skipped == nil {
		t.Errorf("POST cases: %+v", post.Cases)
	}
	if g := doc.Suites[2]; g.Failures != 1 || g.Cases[0].Failure == nil || !strings.Contains(g.Cases[0].Failure.Message, "p95 is 40.0ms, goal 20ms") {
		t.Errorf("goals suite: %+v", g)
	}
}

func TestHTMLIsSelfContained(t *testing.T) {
	var buf bytes.Buffer
	if err := sample().WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	// Any attribute that loads or links something from elsewhere.
	external := regexp.MustCompile(`(?i)(src|href|xlink:href|@import|url)\s*[=(]\s*["']?\s*(https?:)?//`)
	if m := external.FindString(page); m != "" {
		t.Errorf("page refers to an external resource: %q", m)
	}
	if strings.Contains(page, "<script src") || strings.Contains(page, "<link") {
		t.Error("page loads a script or stylesheet")
	}
	for _, want := range []string{
		"<svg", "GET /orders/{id}",
		"$.total changed: 20 → &lt;18&gt;", // the diff, escaped
		"error: connection refused",
		"GET /orders/{id}: p95 is 40.0ms, goal 20ms",
		"6 exchanges: 3 passed, 1 failed, 1 errors, 1 skipped",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The longest bar (p95/p99 replayed of 40ms) spans the chart.
	if !strings.Contains(page, `width="420.0"`) {
		t.Error("latency chart not scaled to the slowest percentile")
	}
}
