// Package filterflag gives the collector's query command and the replayer
// the same command-line flags for selecting exchanges.
package filterflag

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Flags holds the selection flags registered on one flag set.
type Flags struct {
	method     string
	pathPrefix string
	since      time.Duration
	service    string
	direction  string
	status     int
	host       string
	agent      string
}

// Register adds the selection flags to fs.
func Register(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.StringVar(&f.method, "method", "", "only this HTTP method")
	fs.StringVar(&f.pathPrefix, "path-prefix", "", "only request paths starting with this prefix")
	fs.DurationVar(&f.since, "since", 0, "only exchanges started within this duration before now (e.g. 15m)")
	fs.StringVar(&f.service, "service", "", "only this service")
	fs.StringVar(&f.direction, "direction", "", "only this direction: inbound or outbound")
	fs.IntVar(&f.status, "status", 0, "only this response status code")
	fs.StringVar(&f.host, "host", "", "only this Host header value")
	fs.StringVar(&f.agent, "agent", "", "only exchanges captured by this agent id")
	return f
}

// Filter builds the filter the flags describe, relative to now.
func (f *Flags) Filter(now time.Time) (*reprisev1.ExchangeFilter, error) {
	if f.since < 0 {
		return nil, fmt.Errorf("--since must not be negative, got %s", f.since)
	}
	if f.status != 0 && (f.status < 100 || f.status > 599) {
		return nil, fmt.Errorf("--status must be an HTTP status code (100-599), got %d", f.status)
	}
	dir, err := ParseDirection(f.direction)
	if err != nil {
		return nil, fmt.Errorf("--direction: %w", err)
	}
	filter := &reprisev1.ExchangeFilter{
		Method:     strings.ToUpper(f.method),
		PathPrefix: f.pathPrefix,
		Service:    f.service,
		Direction:  dir,
		StatusCode: int32(f.status),
		Host:       f.host,
		AgentId:    f.agent,
	}
	if f.since > 0 {
		filter.StartTime = timestamppb.New(now.Add(-f.since))
	}
	return filter, nil
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
