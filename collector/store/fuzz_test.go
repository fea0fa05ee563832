package store

import (
	"regexp"
	"testing"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// FuzzTokens feeds arbitrary client-supplied page tokens and cursors to the
// decoders: they must reject or round-trip, never panic.
func FuzzTokens(f *testing.F) {
	filter := &reprisev1.ExchangeFilter{Service: "orders"}
	f.Add(pageToken(position{startTime: 42, id: "ex-1"}, filter))
	f.Add(Cursor(newEx("ex-2", 0)))
	f.Add("")
	f.Add("cA")
	f.Fuzz(func(t *testing.T, tok string) {
		if p, err := parsePageToken(tok, filter); err == nil && p != nil {
			if again := pageToken(*p, filter); again != tok {
				if q, err := parsePageToken(again, filter); err != nil || *q != *p {
					t.Fatalf("page token %q decodes to %+v, which does not round-trip", tok, *p)
				}
			}
		}
		if p, err := parseCursor(tok); err == nil && p != nil {
			if q, err := parseCursor(p.encode(kindCursor, nil)); err != nil || *q != *p {
				t.Fatalf("cursor %q decodes to %+v, which does not round-trip", tok, *p)
			}
		}
	})
}

// FuzzGlob checks that any glob either is refused or compiles to a matcher
// that accepts the literal path it describes when it has no wildcards.
func FuzzGlob(f *testing.F) {
	for _, s := range []string{"/orders/*", "/a?c", "/[^x]y", "/[]]", "[", "/[a-z]*/items", `\*`} {
		f.Add(s)
	}
	literal := regexp.MustCompile(`^[^*?\[]*$`)
	f.Fuzz(func(t *testing.T, g string) {
		re, err := globRegexp(g)
		if err != nil {
			return
		}
		if literal.MatchString(g) && !re.MatchString(g) {
			t.Fatalf("literal glob %q does not match itself (regexp %s)", g, re)
		}
	})
}
