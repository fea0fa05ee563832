// Package reqtarget reduces a recorded HTTP request-target to the path and
// query an origin server receives. Recorded targets come from production
// traffic, which anyone can shape: the replayer and the mock server use
// only what this package has validated, and send nothing it refuses.
package reqtarget

import (
	"fmt"
	"net/url"
	"strings"
)

// Target is a request-target in origin form, with the scheme and host an
// absolute-form target named.
type Target struct {
	// Scheme and Host are set only for an absolute-form target
	// (http://host/path, as sent to a proxy).
	Scheme, Host string
	// Path is escaped as recorded and starts with /.
	Path string
	// Query is the raw query; HasQuery says a ? was written, even with an
	// empty query.
	Query    string
	HasQuery bool
}

// Parse accepts origin form (/path?query) and absolute http or https URLs.
// Anything else is an error: authority or asterisk form, an opaque URI
// such as x:@host:port/p (glued to a base URL it would name another host),
// user info, a fragment, bytes that are not allowed in a path or query
// (controls, space, #), and a % that starts no escape.
func Parse(s string) (Target, error) {
	var t Target
	rest := s
	if !strings.HasPrefix(s, "/") {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
			return t, fmt.Errorf("request-target %q is neither origin form (/path?query) nor an absolute http URL", s)
		}
		if u.User != nil || u.Fragment != "" || strings.Contains(s, "#") {
			return t, fmt.Errorf("request-target %q: user info or fragment in an absolute URL", s)
		}
		t.Scheme, t.Host = u.Scheme, u.Host
		// What follows the authority, as written.
		rest = strings.TrimPrefix(s[len(u.Scheme)+len("://"):], u.Host)
		if !strings.HasPrefix(rest, "/") {
			rest = "/" + rest
		}
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if c <= ' ' || c == 0x7f || c == '#' {
			return Target{}, fmt.Errorf("request-target %q: byte %q is not allowed in a path or query", s, c)
		}
		if c == '%' && (i+2 >= len(rest) || !isHex(rest[i+1]) || !isHex(rest[i+2])) {
			return Target{}, fmt.Errorf("request-target %q: %% at offset %d starts no escape", s, i)
		}
	}
	t.Path, t.Query, t.HasQuery = strings.Cut(rest, "?")
	return t, nil
}

// RequestURI is the path and query, as they are sent.
func (t Target) RequestURI() string {
	if t.HasQuery {
		return t.Path + "?" + t.Query
	}
	return t.Path
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
