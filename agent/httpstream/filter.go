package httpstream

import (
	"fmt"
	"slices"
	"strings"

	"github.com/reprise-dev/reprise/internal/pathglob"
)

// Filter selects the exchanges a Tracker emits by request method and path.
// The zero Filter selects everything.
type Filter struct {
	methods []string
	// prefixes are plain paths, matched as prefixes; globs contain a
	// wildcard and match the whole path in the pathglob dialect.
	prefixes []string
	globs    []*pathglob.Glob
}

// NewFilter builds a filter from method names (any case) and path patterns:
// a pattern with *, ? or [ is a glob (internal/pathglob: * crosses
// slashes) on the whole path without the query, any other pattern a
// prefix. Empty lists select everything.
func NewFilter(methods, paths []string) (Filter, error) {
	var f Filter
	for _, m := range methods {
		f.methods = append(f.methods, strings.ToUpper(m))
	}
	for _, p := range paths {
		if !strings.HasPrefix(p, "/") {
			return Filter{}, fmt.Errorf("path pattern %q: must start with /", p)
		}
		if !pathglob.HasWildcard(p) {
			f.prefixes = append(f.prefixes, p)
			continue
		}
		g, err := pathglob.Compile(p)
		if err != nil {
			return Filter{}, err
		}
		f.globs = append(f.globs, g)
	}
	return f, nil
}

// Match reports whether a request with this method and target is selected.
func (f Filter) Match(method, target string) bool {
	if len(f.methods) > 0 && !slices.Contains(f.methods, method) {
		return false
	}
	if len(f.prefixes) == 0 && len(f.globs) == 0 {
		return true
	}
	p, _, _ := strings.Cut(target, "?")
	for _, pre := range f.prefixes {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	for _, g := range f.globs {
		if g.Match(p) {
			return true
		}
	}
	return false
}
