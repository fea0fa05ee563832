package replay

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/reprise-dev/reprise/replayer/reqtarget"
)

// requestURL is the URL a recorded request-target is sent to: the base
// URL's scheme, host and path, then the target's path and query as
// recorded (escaping kept). It fails rather than send anywhere but base.
func requestURL(base *url.URL, target string) (string, error) {
	t, err := reqtarget.Parse(target)
	if err != nil {
		return "", err
	}
	s := base.Scheme + "://" + base.Host + strings.TrimSuffix(base.EscapedPath(), "/") + t.RequestURI()
	// The parts were checked one by one; parse the whole as the client
	// will, so no combination can name another host.
	u, err := url.Parse(s)
	if err != nil || u.Scheme != base.Scheme || u.Host != base.Host || u.User != nil || u.Opaque != "" {
		return "", fmt.Errorf("request-target %q does not stay on %s", target, base.Host)
	}
	return s, nil
}
