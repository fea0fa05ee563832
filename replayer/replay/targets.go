package replay

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"strings"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Targets maps recorded exchanges to the base URLs they are replayed
// against. Only URLs given here are ever sent to: a recording never picks
// its own destination.
type Targets struct {
	fallback *url.URL
	byName   map[string]*url.URL // by service, then Host header
}

// NewTargets checks the URLs: fallback (may be empty) serves every exchange
// whose service or recorded host is not a key of byName.
func NewTargets(fallback string, byName map[string]string) (*Targets, error) {
	t := &Targets{byName: map[string]*url.URL{}}
	if fallback != "" {
		u, err := ParseTarget(fallback)
		if err != nil {
			return nil, err
		}
		t.fallback = u
	}
	for name, raw := range byName {
		if name == "" {
			return nil, fmt.Errorf("target for %q: empty service or host name", raw)
		}
		u, err := ParseTarget(raw)
		if err != nil {
			return nil, fmt.Errorf("target for %s: %w", name, err)
		}
		t.byName[name] = u
	}
	if t.fallback == nil && len(t.byName) == 0 {
		return nil, fmt.Errorf("no target: give a target URL or a map from service to URL")
	}
	return t, nil
}

// For returns the base URL of ex, or nil when no target is named for it.
func (t *Targets) For(ex *reprisev1.Exchange) *url.URL {
	if u, ok := t.byName[ex.GetService()]; ok && ex.GetService() != "" {
		return u
	}
	host := ex.GetRequest().GetHost()
	if u, ok := t.byName[host]; ok && host != "" {
		return u
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		if u, ok := t.byName[h]; ok {
			return u
		}
	}
	return t.fallback
}

// Safety says which non-idempotent requests may be replayed.
type Safety struct {
	// AllowWrites lets every POST, PUT, PATCH and DELETE through.
	AllowWrites bool
	// Routes let some through.
	Routes []Route
}

// Route allows writes of one method ("" for any) to paths matching a
// path.Match pattern such as /api/orders or /api/orders/*.
type Route struct {
	Method string `yaml:"method"`
	Path   string `yaml:"path"`
}

// Validate checks the route patterns.
func (s Safety) Validate() error {
	for i, r := range s.Routes {
		if r.Path == "" {
			return fmt.Errorf("safety.routes[%d].path: must not be empty", i)
		}
		if _, err := path.Match(r.Path, "/"); err != nil {
			return fmt.Errorf("safety.routes[%d].path %q: %w", i, r.Path, err)
		}
	}
	return nil
}

// writes are the methods that change state on the target.
var writes = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "DELETE": true}

// allows reports whether a request may be sent.
func (s Safety) allows(method, target string) bool {
	method = strings.ToUpper(method)
	if !writes[method] || s.AllowWrites {
		return true
	}
	p := pathOf(target)
	for _, r := range s.Routes {
		if r.Method != "" && !strings.EqualFold(r.Method, method) {
			continue
		}
		if ok, _ := path.Match(r.Path, p); ok {
			return true
		}
	}
	return false
}

// pathOf is the path of an origin-form or absolute-form request-target.
func pathOf(target string) string {
	if !strings.HasPrefix(target, "/") {
		if u, err := url.Parse(target); err == nil {
			return u.EscapedPath()
		}
	}
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		return target[:i]
	}
	return target
}
