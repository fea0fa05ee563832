// Package pathglob is the one dialect of path globs in reprise: the
// agent's --paths, the collector's and the replayer's --path-glob, and the
// store's queries all match request paths (without the query) with it.
//
// The dialect is SQLite's GLOB, which the store evaluates natively:
//
//   - any run of characters, slashes included: /api/* matches
//     /api/orders and /api/orders/7/items
//     ?       exactly one character (a slash too)
//     [abc]   one character of the set; ranges such as [0-9]; a leading ]
//     is a member
//     [^abc]  one character not in the set
//
// Everything else matches itself, case-sensitively; there is no escape
// character (write [*] for a literal *). A glob matches the whole path.
package pathglob

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// MaxLen bounds a glob, so a caller cannot make the matcher (or the
// store's query) arbitrarily expensive.
const MaxLen = 1024

// Glob is a compiled path glob, safe for concurrent use.
type Glob struct {
	pattern string
	re      *regexp.Regexp
}

// Compile checks a glob and compiles it; the error says what is wrong.
func Compile(pattern string) (*Glob, error) {
	if len(pattern) > MaxLen {
		return nil, fmt.Errorf("path glob of %d bytes: at most %d", len(pattern), MaxLen)
	}
	if !utf8.ValidString(pattern) {
		return nil, fmt.Errorf("path glob %q is not valid UTF-8", pattern)
	}
	var b strings.Builder
	b.WriteString(`^`)
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '[':
			j := i + 1
			neg := j < len(pattern) && pattern[j] == '^'
			if neg {
				j++
			}
			k := j
			if k < len(pattern) && pattern[k] == ']' {
				k++ // a leading ] is a member of the set
			}
			end := strings.IndexByte(pattern[k:], ']')
			if end < 0 {
				return nil, fmt.Errorf("path glob %q: unclosed [ at offset %d", pattern, i)
			}
			b.WriteByte('[')
			if neg {
				b.WriteByte('^')
			}
			for _, r := range pattern[j : k+end] {
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
			n := strings.IndexAny(pattern[i:], "*?[")
			if n < 0 {
				n = len(pattern) - i
			}
			b.WriteString(regexp.QuoteMeta(pattern[i : i+n]))
			i += n - 1
		}
	}
	b.WriteString(`$`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		// A set such as [z-a] is no valid range.
		return nil, fmt.Errorf("path glob %q: %w", pattern, err)
	}
	return &Glob{pattern: pattern, re: re}, nil
}

// Match reports whether the whole path matches.
func (g *Glob) Match(path string) bool { return g.re.MatchString(path) }

// Regexp is the glob as a regular expression, in the syntax both Go and
// PostgreSQL accept, for stores without GLOB.
func (g *Glob) Regexp() *regexp.Regexp { return g.re }

// String is the glob as written.
func (g *Glob) String() string { return g.pattern }

// Prefix is the literal start of a glob, which bounds an index range.
func Prefix(pattern string) string {
	if i := strings.IndexAny(pattern, "*?["); i >= 0 {
		return pattern[:i]
	}
	return pattern
}

// HasWildcard reports whether s is a glob rather than a literal path.
func HasWildcard(s string) bool { return strings.ContainsAny(s, "*?[") }
