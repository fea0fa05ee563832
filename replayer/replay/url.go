package replay

import (
	"fmt"
	"net/url"
	"strings"
)

// OriginForm reduces a recorded request-target to its path and query, as
// an origin server receives them: origin form (/path?query) as it is, an
// absolute form (http://host/path?query, as sent to a proxy) without its
// scheme and authority. Anything else (authority or asterisk form, an
// opaque URI such as x:@host:port/p, a fragment, control characters,
// malformed escapes) is an error: such a target is never sent, since
// glued to a base URL it could name another host.
func OriginForm(target string) (path, query string, err error) {
	if !strings.HasPrefix(target, "/") {
		u, err := url.Parse(target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
			return "", "", fmt.Errorf("request-target %q is neither origin form (/path?query) nor an absolute http URL", target)
		}
		if u.User != nil || u.Fragment != "" {
			return "", "", fmt.Errorf("request-target %q: user info or fragment in an absolute URL", target)
		}
		path, query = u.EscapedPath(), u.RawQuery
		if path == "" {
			path = "/"
		}
		target = path
		if u.ForceQuery || query != "" {
			target += "?" + query
		}
	}
	path, query, _ = strings.Cut(target, "?")
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c == 0x7f || c == '#' {
			return "", "", fmt.Errorf("request-target %q: byte %q is not allowed in a path or query", target, c)
		}
		if target[i] == '%' && (i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2])) {
			return "", "", fmt.Errorf("request-target %q: %% at offset %d starts no escape", target, i)
		}
	}
	return path, query, nil
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// requestURL is the URL a recorded request-target is sent to: the base
// URL's scheme, host and path, then the target's path and query as
// recorded (escaping kept). It fails rather than send anywhere but base.
func requestURL(base *url.URL, target string) (string, error) {
	path, query, err := OriginForm(target)
	if err != nil {
		return "", err
	}
	s := base.Scheme + "://" + base.Host + strings.TrimSuffix(base.EscapedPath(), "/") + path
	if strings.Contains(target, "?") {
		s += "?" + query
	}
	// The parts were checked one by one; parse the whole as the client
	// will, so no combination can name another host.
	u, err := url.Parse(s)
	if err != nil || u.Scheme != base.Scheme || u.Host != base.Host || u.User != nil || u.Opaque != "" {
		return "", fmt.Errorf("request-target %q does not stay on %s", target, base.Host)
	}
	return s, nil
}
