package store

import (
	"regexp"
	"strings"

	"github.com/reprise-dev/reprise/internal/pathglob"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Matcher decides in memory what the store's filter selects in SQL, for
// exchanges that are not read from the store (Tail).
type Matcher struct {
	f    *reprisev1.ExchangeFilter
	glob *regexp.Regexp
}

// NewMatcher compiles f; it fails only on a malformed path_glob.
func NewMatcher(f *reprisev1.ExchangeFilter) (*Matcher, error) {
	m := &Matcher{f: f}
	if g := f.GetPathGlob(); g != "" {
		re, err := globRegexp(g)
		if err != nil {
			return nil, err
		}
		m.glob = re
	}
	return m, nil
}

// ValidateGlob reports whether g is a well-formed path glob.
func ValidateGlob(g string) error {
	_, err := globRegexp(g)
	return err
}

// Match reports whether ex passes the filter.
func (m *Matcher) Match(ex *reprisev1.Exchange) bool {
	f, r := m.f, rowOf(ex)
	switch {
	case f.GetStartTime() != nil && r.startTime < f.GetStartTime().AsTime().UnixNano(),
		f.GetEndTime() != nil && r.startTime >= f.GetEndTime().AsTime().UnixNano(),
		f.GetService() != "" && r.service != f.GetService(),
		f.GetDirection() != reprisev1.Direction_DIRECTION_UNSPECIFIED && r.direction != int32(f.GetDirection()),
		f.GetMethod() != "" && r.method != strings.ToUpper(f.GetMethod()),
		!strings.HasPrefix(r.path, f.GetPathPrefix()),
		m.glob != nil && !m.glob.MatchString(r.path),
		f.GetStatusCode() != 0 && r.statusCode != f.GetStatusCode(),
		f.GetStatusClass() != 0 && r.statusCode/100 != f.GetStatusClass(),
		f.GetMinDuration() != nil && r.durationNs < f.GetMinDuration().AsDuration().Nanoseconds(),
		f.GetHost() != "" && r.host != f.GetHost(),
		f.GetAgentId() != "" && r.agentID != f.GetAgentId():
		return false
	}
	return true
}

// globRegexp is the regular expression of a path glob (internal/pathglob,
// SQLite's GLOB dialect, which the SQLite store evaluates itself), for the
// Matcher and for PostgreSQL, which has no GLOB.
func globRegexp(g string) (*regexp.Regexp, error) {
	pg, err := pathglob.Compile(g)
	if err != nil {
		return nil, err
	}
	return pg.Regexp(), nil
}

// globPrefix is the literal start of a glob, which bounds an index range.
func globPrefix(g string) string { return pathglob.Prefix(g) }
