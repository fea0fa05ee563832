package replay

import (
	"net/url"
	"strings"
	"testing"
)

// An accepted recorded target never leaves the named target: same scheme,
// host and base path, whatever the recording holds.
func FuzzRequestURL(f *testing.F) {
	for _, s := range []string{"/orders?x=1", "x:@127.0.0.1:9/pwn", "x:.evil.example/p", "//evil/p", "/@evil/p",
		"http://evil.example/p?q", "/..%2f..%2fetc", "/a\\b", "http://[::1]:9/p"} {
		f.Add(s)
	}
	base, _ := url.Parse("http://127.0.0.1:8080/staging")
	f.Fuzz(func(t *testing.T, target string) {
		s, err := requestURL(base, target)
		if err != nil {
			return
		}
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "http" || u.Host != "127.0.0.1:8080" || u.User != nil || !strings.HasPrefix(u.EscapedPath(), "/staging/") {
			t.Fatalf("target %q sent to %q", target, s)
		}
	})
}
