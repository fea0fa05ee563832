// Package goals checks a replay run against the goals of the replay config:
// latency limits per endpoint, a minimum pass rate and a maximum error rate.
package goals

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/reprise-dev/reprise/replayer/report"
)

// Config is the goals: section of the replay config.
type Config struct {
	// MinPassRate is the lowest acceptable share of passed exchanges among
	// those sent (skipped ones do not count), 0 to 1.
	MinPassRate *float64 `yaml:"min_pass_rate"`
	// MaxErrorRate is the highest acceptable share of sent exchanges that
	// got no response, 0 to 1.
	MaxErrorRate *float64 `yaml:"max_error_rate"`
	// Latency limits per endpoint: "GET /orders/{id}", "/orders/{id}" (any
	// method) or "*" (every endpoint without a rule of its own).
	Latency map[string]Latency `yaml:"latency"`
}

// Latency limits the replayed latency percentiles of an endpoint; zero
// means no limit.
type Latency struct {
	P95 Duration `yaml:"p95"`
	P99 Duration `yaml:"p99"`
}

// Duration is a time.Duration written as in Go ("250ms", "1.5s") in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: want a duration such as 250ms, got %q", n.Line, n.Value)
	}
	if v < 0 {
		return fmt.Errorf("line %d: duration must not be negative, got %q", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Violation is one goal the run missed.
type Violation = report.Violation

// Validate checks the values; the error names the field.
func (c Config) Validate() error {
	if c.MinPassRate != nil && (*c.MinPassRate < 0 || *c.MinPassRate > 1) {
		return fmt.Errorf("goals.min_pass_rate must be between 0 and 1, got %g", *c.MinPassRate)
	}
	if c.MaxErrorRate != nil && (*c.MaxErrorRate < 0 || *c.MaxErrorRate > 1) {
		return fmt.Errorf("goals.max_error_rate must be between 0 and 1, got %g", *c.MaxErrorRate)
	}
	for k := range c.Latency {
		if k != "*" && !strings.HasPrefix(k, "/") && !strings.Contains(k, " /") {
			return fmt.Errorf("goals.latency: endpoint %q must be \"*\", \"/path\" or \"METHOD /path\"", k)
		}
	}
	return nil
}

// DecidesRates reports whether the config sets the run's pass or error
// rate goal; then those goals, not every single mismatch, decide the verdict.
func (c Config) DecidesRates() bool { return c.MinPassRate != nil || c.MaxErrorRate != nil }

// Evaluate returns the goals r missed, run-wide goals first, then latency
// goals in endpoint order. Call r.Finish first.
func (c Config) Evaluate(r *report.Report) []Violation {
	var out []Violation
	sent := r.Total - r.Skipped
	if sent > 0 && c.MinPassRate != nil {
		if rate := float64(r.Passed) / float64(sent); rate < *c.MinPassRate {
			out = append(out, Violation{Goal: "min_pass_rate", Limit: pct(*c.MinPassRate), Actual: pct(rate)})
		}
	}
	if sent > 0 && c.MaxErrorRate != nil {
		if rate := float64(r.Errors) / float64(sent); rate > *c.MaxErrorRate {
			out = append(out, Violation{Goal: "max_error_rate", Limit: pct(*c.MaxErrorRate), Actual: pct(rate)})
		}
	}
	for _, s := range r.Endpoints {
		lim, ok := c.latencyFor(s.Name)
		if !ok || s.Count == s.Skipped+s.Errors {
			continue // nothing measured
		}
		check := func(goal string, limit Duration, actualMS float64) {
			l := time.Duration(limit)
			if l > 0 && time.Duration(actualMS*float64(time.Millisecond)) > l {
				out = append(out, Violation{Goal: goal, Endpoint: s.Name, Limit: l.String(), Actual: fmt.Sprintf("%.1fms", actualMS)})
			}
		}
		check("p95", lim.P95, s.Replayed.P95)
		check("p99", lim.P99, s.Replayed.P99)
	}
	return out
}

// latencyFor picks the most specific rule for an endpoint named
// "METHOD /path".
func (c Config) latencyFor(name string) (Latency, bool) {
	if l, ok := c.Latency[name]; ok {
		return l, true
	}
	if _, path, ok := strings.Cut(name, " "); ok {
		if l, ok := c.Latency[path]; ok {
			return l, true
		}
	}
	l, ok := c.Latency["*"]
	return l, ok
}

func pct(f float64) string { return fmt.Sprintf("%.2f%%", f*100) }
