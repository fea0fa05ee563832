package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// The JUnit XML schema as CI systems read it (Jenkins, GitLab, GitHub
// actions): one suite per endpoint, one case per exchange.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitProblem `xml:"skipped,omitempty"`
	// SystemOut notes what a passed case compared of a partial recording.
	SystemOut string `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// goalsSuite names the suite that holds one case per missed goal.
const goalsSuite = "goals"

// WriteJUnit writes the report as JUnit XML: a test suite per endpoint, a
// test case per exchange, the differences in the failure text, and a
// "goals" suite with a failed case per missed goal. Call Finish first.
func (r *Report) WriteJUnit(w io.Writer) error {
	doc := junitSuites{
		Name: "reprise replay " + r.RunID, Tests: r.Total, Failures: r.Failed + r.NeedsCredentials,
		Errors: r.Errors, Skipped: r.Skipped, Time: seconds(float64(r.DurationMS)),
	}
	index := map[string]int{}
	for _, s := range r.Endpoints {
		index[s.Name] = len(doc.Suites)
		doc.Suites = append(doc.Suites, junitSuite{Name: s.Name, Tests: s.Count, Failures: s.Failed + s.NeedsCredentials, Errors: s.Errors, Skipped: s.Skipped})
	}
	for _, e := range r.Exchanges {
		i, ok := index[e.Endpoint]
		if !ok { // Finish not called: keep the case anyway
			i = len(doc.Suites)
			index[e.Endpoint] = i
			doc.Suites = append(doc.Suites, junitSuite{Name: e.Endpoint})
		}
		c := junitCase{
			Name:      fmt.Sprintf("%s %s (%s)", e.Method, e.Target, e.ID),
			Classname: e.Endpoint,
			Time:      seconds(e.ReplayedMS),
		}
		switch e.Status() {
		case StatusSkipped:
			c.Skipped = &junitProblem{Message: e.Skipped}
		case StatusError:
			c.Error = &junitProblem{Message: e.Error, Type: "error"}
		case StatusNeedsCredentials:
			c.Failure = &junitProblem{
				Message: fmt.Sprintf("needs credentials: got %d, recorded %d", e.ReplayedStatus, e.RecordedStatus),
				Type:    StatusNeedsCredentials,
				Text:    e.Hint,
			}
		case StatusFailed:
			lines := make([]string, 0, len(e.Differences)+1)
			for _, d := range e.Differences {
				lines = append(lines, Describe(d))
			}
			if e.Partial != "" {
				lines = append(lines, e.Partial)
			}
			c.Failure = &junitProblem{
				Message: fmt.Sprintf("%d difference(s)", len(e.Differences)),
				Type:    "mismatch",
				Text:    strings.Join(lines, "\n"),
			}
		}
		if e.Partial != "" && c.Failure == nil && c.Skipped == nil {
			c.SystemOut = e.Partial
		}
		doc.Suites[i].Cases = append(doc.Suites[i].Cases, c)
	}
	if len(r.Violations) > 0 {
		s := junitSuite{Name: goalsSuite, Tests: len(r.Violations), Failures: len(r.Violations)}
		for _, v := range r.Violations {
			s.Cases = append(s.Cases, junitCase{
				Name: v.Goal + " " + v.Endpoint, Classname: goalsSuite, Time: "0",
				Failure: &junitProblem{Message: v.String(), Type: "goal"},
			})
		}
		doc.Suites = append(doc.Suites, s)
		doc.Tests += s.Tests
		doc.Failures += s.Failures
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write JUnit report: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write JUnit report: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("write JUnit report: %w", err)
	}
	return nil
}

func seconds(ms float64) string { return fmt.Sprintf("%.3f", ms/1000) }
