// Package filterflag gives the collector's query command and the replayer
// the same command-line flags for selecting exchanges.
package filterflag

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/internal/pathglob"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Flags holds the selection flags registered on one flag set.
type Flags struct {
	method      string
	pathPrefix  string
	pathGlob    string
	since       time.Duration
	start, end  string
	service     string
	direction   string
	status      string
	minDuration time.Duration
	host        string
	agent       string
}

// Register adds the selection flags to fs.
func Register(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.StringVar(&f.method, "method", "", "only this HTTP method")
	fs.StringVar(&f.pathPrefix, "path-prefix", "", "only request paths (without the query) starting with this prefix")
	fs.StringVar(&f.pathGlob, "path-glob", "", "only request paths (without the query) matching this glob: * any run, slashes too; ? one character; [set] (docs/verify.md)")
	fs.DurationVar(&f.since, "since", 0, "only exchanges started within this duration before now (e.g. 15m)")
	fs.StringVar(&f.start, "start", "", "only exchanges started at or after this time (RFC 3339)")
	fs.StringVar(&f.end, "end", "", "only exchanges started before this time (RFC 3339)")
	fs.StringVar(&f.service, "service", "", "only this service")
	fs.StringVar(&f.direction, "direction", "", "only this direction: inbound or outbound")
	fs.StringVar(&f.status, "status", "", "only this response status code (e.g. 404) or class (e.g. 5xx)")
	fs.DurationVar(&f.minDuration, "min-duration", 0, "only exchanges that took at least this long (e.g. 250ms)")
	fs.StringVar(&f.host, "host", "", "only this Host header value")
	fs.StringVar(&f.agent, "agent", "", "only exchanges captured by this agent id")
	return f
}

// Filter builds the filter the flags describe, relative to now.
func (f *Flags) Filter(now time.Time) (*reprisev1.ExchangeFilter, error) {
	if f.since < 0 {
		return nil, fmt.Errorf("--since must not be negative, got %s", f.since)
	}
	if f.minDuration < 0 {
		return nil, fmt.Errorf("--min-duration must not be negative, got %s", f.minDuration)
	}
	dir, err := ParseDirection(f.direction)
	if err != nil {
		return nil, fmt.Errorf("--direction: %w", err)
	}
	code, class, err := parseStatus(f.status)
	if err != nil {
		return nil, fmt.Errorf("--status: %w", err)
	}
	// Paths are stored and matched without their query: a filter naming
	// one would silently select nothing.
	if strings.ContainsAny(f.pathPrefix, "?#") {
		return nil, fmt.Errorf("--path-prefix %q: the prefix is matched against the path only, never the query; drop what follows ? (e.g. --path-prefix %q)", f.pathPrefix, strings.SplitN(f.pathPrefix, "?", 2)[0])
	}
	if f.pathGlob != "" {
		if _, err := pathglob.Compile(f.pathGlob); err != nil {
			return nil, fmt.Errorf("--path-glob: %w", err)
		}
	}
	filter := &reprisev1.ExchangeFilter{
		Method:      strings.ToUpper(f.method),
		PathPrefix:  f.pathPrefix,
		PathGlob:    f.pathGlob,
		Service:     f.service,
		Direction:   dir,
		StatusCode:  code,
		StatusClass: class,
		Host:        f.host,
		AgentId:     f.agent,
	}
	if f.minDuration > 0 {
		filter.MinDuration = durationpb.New(f.minDuration)
	}
	if f.since > 0 && f.start != "" {
		return nil, fmt.Errorf("--since and --start are exclusive")
	}
	if f.since > 0 {
		filter.StartTime = timestamppb.New(now.Add(-f.since))
	}
	for _, b := range []struct {
		name, v string
		dst     **timestamppb.Timestamp
	}{{"--start", f.start, &filter.StartTime}, {"--end", f.end, &filter.EndTime}} {
		if b.v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, b.v)
		if err != nil {
			return nil, fmt.Errorf("%s: want an RFC 3339 time like 2026-11-24T12:00:00Z, got %q", b.name, b.v)
		}
		*b.dst = timestamppb.New(t)
	}
	return filter, nil
}

// parseStatus accepts "" (any), a code 100-599, or a class "1xx"-"5xx".
func parseStatus(s string) (code, class int32, err error) {
	if s == "" {
		return 0, 0, nil
	}
	if len(s) == 3 && strings.EqualFold(s[1:], "xx") && s[0] >= '1' && s[0] <= '5' {
		return 0, int32(s[0] - '0'), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return 0, 0, fmt.Errorf("want an HTTP status code (100-599) or a class like 5xx, got %q", s)
	}
	return int32(n), 0, nil
}

// ParseDirection maps "inbound"/"outbound" (or "") to the enum.
func ParseDirection(s string) (reprisev1.Direction, error) {
	switch strings.ToLower(s) {
	case "":
		return reprisev1.Direction_DIRECTION_UNSPECIFIED, nil
	case "inbound", "in":
		return reprisev1.Direction_DIRECTION_INBOUND, nil
	case "outbound", "out":
		return reprisev1.Direction_DIRECTION_OUTBOUND, nil
	}
	return 0, fmt.Errorf("want inbound or outbound, got %q", s)
}
