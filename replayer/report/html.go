package report

import (
	"fmt"
	"html/template"
	"io"
)

// chart geometry of the latency chart, in SVG user units.
const (
	chartLabelW = 260
	chartBarW   = 420
	chartRowH   = 14
	chartGroupH = 6*chartRowH + 16
)

type chartBar struct {
	Label    string
	Y, W     float64
	Replayed bool
	Value    float64
}

type chartGroup struct {
	Name string
	Y    float64
	Bars []chartBar
}

type htmlPage struct {
	*Report
	Failing []Exchange
	Groups  []chartGroup
	Width   int
	Height  float64
	MaxMS   float64
}

// WriteHTML writes the report as one self-contained HTML page: totals, the
// missed goals, the per-endpoint table, a latency chart as inline SVG and
// the differences of every exchange that did not pass. It loads nothing
// from anywhere, so it can be kept as a CI artifact. Call Finish first.
func (r *Report) WriteHTML(w io.Writer) error {
	p := htmlPage{Report: r, Width: chartLabelW + chartBarW + 80}
	for _, e := range r.Exchanges {
		if s := e.Status(); s == StatusFailed || s == StatusError || s == StatusNeedsCredentials || e.Partial != "" && s != StatusSkipped {
			p.Failing = append(p.Failing, e)
		}
	}
	for _, s := range r.Endpoints {
		p.MaxMS = max(p.MaxMS, s.Recorded.P99, s.Replayed.P99, s.Recorded.P95, s.Replayed.P95)
	}
	scale := 0.0
	if p.MaxMS > 0 {
		scale = chartBarW / p.MaxMS
	}
	for i, s := range r.Endpoints {
		g := chartGroup{Name: s.Name, Y: float64(i*chartGroupH) + 14}
		vals := []struct {
			label string
			v     float64
			rep   bool
		}{
			{"p50 recorded", s.Recorded.P50, false}, {"p50 replayed", s.Replayed.P50, true},
			{"p95 recorded", s.Recorded.P95, false}, {"p95 replayed", s.Replayed.P95, true},
			{"p99 recorded", s.Recorded.P99, false}, {"p99 replayed", s.Replayed.P99, true},
		}
		for j, v := range vals {
			g.Bars = append(g.Bars, chartBar{Label: v.label, Y: g.Y + 4 + float64(j*chartRowH), W: v.v * scale, Replayed: v.rep, Value: v.v})
		}
		p.Groups = append(p.Groups, g)
	}
	p.Height = float64(len(r.Endpoints)*chartGroupH) + 20
	if err := htmlTemplate.Execute(w, p); err != nil {
		return fmt.Errorf("write HTML report: %w", err)
	}
	return nil
}

var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"describe": Describe,
	"add":      func(a, b float64) float64 { return a + b },
	"ms":       func(v float64) string { return fmt.Sprintf("%.1f ms", v) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>reprise replay {{.RunID}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.fail { color: #b00; } .pass { color: #070; }
pre { background: #f6f6f6; padding: 6px; margin: 2px 0 12px; white-space: pre-wrap; }
.rec { fill: #999; } .rep { fill: #36c; }
</style>
</head>
<body>
<h1>Replay {{.RunID}}</h1>
<p>Target {{.Target}}, started {{.StartedAt.Format "2006-01-02 15:04:05 UTC"}}, {{.DurationMS}} ms.</p>
<p class="{{if .OK}}pass{{else}}fail{{end}}"><strong>{{.Total}} exchanges: {{.Passed}} passed, {{.Failed}} failed, {{.Errors}} errors,{{if .NeedsCredentials}} {{.NeedsCredentials}} need credentials,{{end}} {{.Skipped}} skipped{{if .Partial}}, {{.Partial}} compared in part (incomplete recording){{end}}{{if .Late}}, {{.Late}} sent late{{end}}.</strong></p>
{{if .Violations}}<h2>Goals missed</h2>
<ul>{{range .Violations}}<li class="fail">{{.}}</li>{{end}}</ul>{{end}}
<h2>Endpoints</h2>
<table>
<tr><th>endpoint</th><th>count</th><th>passed</th><th>failed</th><th>need credentials</th><th>errors</th><th>skipped</th><th>p50 rec / rep</th><th>p95 rec / rep</th><th>p99 rec / rep</th></tr>
{{range .Endpoints}}<tr><td>{{.Name}}</td><td>{{.Count}}</td><td>{{.Passed}}</td><td>{{.Failed}}</td><td>{{.NeedsCredentials}}</td><td>{{.Errors}}</td><td>{{.Skipped}}</td><td>{{ms .Recorded.P50}} / {{ms .Replayed.P50}}</td><td>{{ms .Recorded.P95}} / {{ms .Replayed.P95}}</td><td>{{ms .Recorded.P99}} / {{ms .Replayed.P99}}</td></tr>
{{end}}</table>
<h2>Latency</h2>
<p>Grey: recorded; blue: replayed (from the scheduled start of each request).</p>
<svg xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.Height}}" role="img" aria-label="latency per endpoint">
{{range .Groups}}<text x="0" y="{{.Y}}" font-weight="bold" font-size="12">{{.Name}}</text>
{{range .Bars}}<text x="10" y="{{add .Y 10}}" font-size="10">{{.Label}}</text><rect class="{{if .Replayed}}rep{{else}}rec{{end}}" x="260" y="{{.Y}}" width="{{printf "%.1f" .W}}" height="11"/><text x="{{add .W 264}}" y="{{add .Y 10}}" font-size="10">{{ms .Value}}</text>
{{end}}{{end}}</svg>
<h2>Differences and notes</h2>
{{if not .Failing}}<p class="pass">None.</p>{{end}}
{{range .Failing}}<h3 class="{{if .Passed}}pass{{else}}fail{{end}}">{{.Method}} {{.Target}} <small>({{.ID}}, {{.Endpoint}})</small></h3>
{{if .Error}}<pre>error: {{.Error}}</pre>{{else if .NeedsCredentials}}<p class="fail">Needs credentials: got {{.ReplayedStatus}}, recorded {{.RecordedStatus}}. {{.Hint}}</p>{{else}}<pre>{{range .Differences}}{{describe .}}
{{end}}</pre>{{end}}{{if .Partial}}<p>Note: {{.Partial}}.</p>{{end}}
{{end}}</body>
</html>
`))
