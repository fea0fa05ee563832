package filterflag

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func TestFilter(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		args    []string
		check   func(*reprisev1.ExchangeFilter) bool
		wantErr string
	}{
		{nil, func(f *reprisev1.ExchangeFilter) bool { return f.StartTime == nil && f.Method == "" }, ""},
		{[]string{"--method", "post", "--path-prefix", "/api"}, func(f *reprisev1.ExchangeFilter) bool {
			return f.Method == "POST" && f.PathPrefix == "/api"
		}, ""},
		{[]string{"--since", "15m"}, func(f *reprisev1.ExchangeFilter) bool {
			return f.StartTime.AsTime().Equal(now.Add(-15 * time.Minute))
		}, ""},
		{[]string{"--direction", "outbound", "--status", "404", "--service", "orders", "--host", "h", "--agent", "a"}, func(f *reprisev1.ExchangeFilter) bool {
			return f.Direction == reprisev1.Direction_DIRECTION_OUTBOUND && f.StatusCode == 404 && f.Service == "orders" && f.Host == "h" && f.AgentId == "a"
		}, ""},
		{[]string{"--direction", "sideways"}, nil, "--direction"},
		{[]string{"--status", "42"}, nil, "--status"},
		{[]string{"--since", "-1m"}, nil, "--since"},
		{[]string{"--status", "5xx", "--path-glob", "/orders/*", "--min-duration", "250ms"}, func(f *reprisev1.ExchangeFilter) bool {
			return f.StatusClass == 5 && f.StatusCode == 0 && f.PathGlob == "/orders/*" && f.MinDuration.AsDuration() == 250*time.Millisecond
		}, ""},
		{[]string{"--start", "2026-11-24T10:00:00Z", "--end", "2026-11-24T11:00:00Z"}, func(f *reprisev1.ExchangeFilter) bool {
			return f.StartTime.AsTime().Equal(now.Add(-2*time.Hour)) && f.EndTime.AsTime().Equal(now.Add(-time.Hour))
		}, ""},
		{[]string{"--status", "6xx"}, nil, "--status"},
		{[]string{"--status", "abc"}, nil, "--status"},
		{[]string{"--start", "yesterday"}, nil, "--start"},
		{[]string{"--since", "1m", "--start", "2026-11-24T10:00:00Z"}, nil, "--since"},
		{[]string{"--min-duration", "-1s"}, nil, "--min-duration"},
		{[]string{"--path-prefix", "/json?x=1"}, nil, `--path-prefix "/json?x=1": the prefix is matched against the path only, never the query; drop what follows ? (e.g. --path-prefix "/json")`},
		{[]string{"--path-glob", "/orders/[0-9"}, nil, `--path-glob: path glob "/orders/[0-9": unclosed [ at offset 8`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			f := Register(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			got, err := f.Filter(now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(got) {
				t.Fatalf("filter = %v", got)
			}
		})
	}
}
