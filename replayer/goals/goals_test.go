package goals

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/reprise-dev/reprise/replayer/compare"
	"github.com/reprise-dev/reprise/replayer/replay"
	"github.com/reprise-dev/reprise/replayer/report"
)

// run has 10 GET /orders/{id} at 10..100ms (9 passed, 1 failed), 4 POST
// /orders at 5ms of which 1 got no response.
func run() *report.Report {
	r := report.New("r", "http://t", time.Now())
	for i := range 10 {
		res := replay.Result{ID: fmt.Sprint(i), Method: "GET", Endpoint: "/orders/{id}", ReplayedStatus: 200,
			Latency: time.Duration(10*(i+1)) * time.Millisecond}
		if i == 0 {
			res.Differences = []compare.Difference{{Path: "$.a", Kind: compare.KindChanged}}
		}
		r.Add(res)
	}
	for i := range 4 {
		res := replay.Result{ID: fmt.Sprint("p", i), Method: "POST", Endpoint: "/orders", ReplayedStatus: 201, Latency: 5 * time.Millisecond}
		if i == 0 {
			res.Err, res.ReplayedStatus = errors.New("timeout"), 0
		}
		r.Add(res)
	}
	r.Finish(time.Now())
	return r
}

func parse(t *testing.T, doc string) Config {
	t.Helper()
	var c Config
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEvaluate(t *testing.T) {
	r := run()
	tests := []struct {
		config string
		want   []Violation
	}{
		{"min_pass_rate: 0.8\nmax_error_rate: 0.1\n", nil},
		{"min_pass_rate: 0.9\n", []Violation{{Goal: "min_pass_rate", Limit: "90.00%", Actual: "85.71%"}}},
		{"max_error_rate: 0.05\n", []Violation{{Goal: "max_error_rate", Limit: "5.00%", Actual: "7.14%"}}},
		{"latency:\n  GET /orders/{id}: {p95: 100ms, p99: 100ms}\n", nil},
		{"latency:\n  /orders/{id}: {p95: 90ms}\n", []Violation{{Goal: "p95", Endpoint: "GET /orders/{id}", Limit: "90ms", Actual: "100.0ms"}}},
		{"latency:\n  \"*\": {p99: 50ms}\n  POST /orders: {p99: 1s}\n",
			[]Violation{{Goal: "p99", Endpoint: "GET /orders/{id}", Limit: "50ms", Actual: "100.0ms"}}},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.config, "\n", " "), func(t *testing.T) {
			got := parse(t, tt.config).Evaluate(r)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for doc, want := range map[string]string{
		"min_pass_rate: 1.5\n":            "goals.min_pass_rate",
		"max_error_rate: -1\n":            "goals.max_error_rate",
		"latency:\n  orders: {p95: 1s}\n": "goals.latency",
		"latency:\n  /a: {p95: fast}\n":   "duration",
		"latency:\n  /a: {p95: -1s}\n":    "negative",
	} {
		var c Config
		err := yaml.Unmarshal([]byte(doc), &c)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error containing %q", doc, err, want)
		}
	}
}
