package store

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

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

// globRegexp translates SQLite's GLOB syntax, which the store evaluates, so
// both agree: * any run, ? one character, [set] and [^set].
func globRegexp(g string) (*regexp.Regexp, error) {
	if !utf8.ValidString(g) {
		return nil, fmt.Errorf("%q is not valid UTF-8", g)
	}
	var b strings.Builder
	b.WriteString(`^`)
	for i := 0; i < len(g); i++ {
		switch c := g[i]; c {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '[':
			j := i + 1
			neg := j < len(g) && g[j] == '^'
			if neg {
				j++
			}
			k := j
			if k < len(g) && g[k] == ']' {
				k++ // a leading ] is a member of the set
			}
			end := strings.IndexByte(g[k:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed [ at offset %d in %q", i, g)
			}
			b.WriteByte('[')
			if neg {
				b.WriteByte('^')
			}
			for _, r := range g[j : k+end] {
				if r == '\\' || r == '[' || r == ']' || r == '^' {
					b.WriteByte('\\')
				}
				b.WriteRune(r)
			}
			b.WriteByte(']')
			i = k + end
		default:
			// The literal run up to the next wildcard, whole, so multi-byte
			// characters stay intact.
			n := strings.IndexAny(g[i:], "*?[")
			if n < 0 {
				n = len(g) - i
			}
			b.WriteString(regexp.QuoteMeta(g[i : i+n]))
			i += n - 1
		}
	}
	b.WriteString(`$`)
	return regexp.Compile(b.String())
}

// globPrefix is the literal start of a glob, which bounds an index range.
func globPrefix(g string) string {
	if i := strings.IndexAny(g, "*?["); i >= 0 {
		return g[:i]
	}
	return g
}
