package conntrack

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Filter selects the exchanges a Tracker emits by request method and path.
// The zero Filter selects everything.
type Filter struct {
	methods []string
	// prefixes are plain paths, matched as prefixes; globs contain a
	// wildcard and are matched with path.Match against the whole path.
	prefixes, globs []string
}

// NewFilter builds a filter from method names (any case) and path patterns:
// a pattern with *, ? or [ is a glob on the whole path (without the query),
// any other pattern a prefix. Empty lists select everything.
func NewFilter(methods, paths []string) (Filter, error) {
	var f Filter
	for _, m := range methods {
		f.methods = append(f.methods, strings.ToUpper(m))
	}
	for _, p := range paths {
		if !strings.HasPrefix(p, "/") {
			return Filter{}, fmt.Errorf("path pattern %q: must start with /", p)
		}
		if !strings.ContainsAny(p, "*?[") {
			f.prefixes = append(f.prefixes, p)
			continue
		}
		if _, err := path.Match(p, ""); err != nil {
			return Filter{}, fmt.Errorf("path pattern %q: %w", p, err)
		}
		f.globs = append(f.globs, p)
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
		if ok, _ := path.Match(g, p); ok {
			return true
		}
	}
	return false
}
