package sanitize

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// refTokens splits an ASCII name into tokens with a regexp, then splits a
// capital run before a lower-case word (APIKey → API, Key): the reference
// for newKeyName's boundaries.
var (
	refTokenRe = regexp.MustCompile(`[A-Z]+[a-z]*|[a-z]+|[0-9]+|[^A-Za-z0-9_. -]`)
	refCapsRe  = regexp.MustCompile(`^([A-Z]+)([A-Z][a-z]+)$`)
)

func refTokens(k string) []string {
	var out []string
	for _, tok := range refTokenRe.FindAllString(k, -1) {
		if m := refCapsRe.FindStringSubmatch(tok); m != nil {
			out = append(out, strings.ToLower(m[1]), strings.ToLower(m[2]))
			continue
		}
		out = append(out, strings.ToLower(tok))
	}
	return out
}

// refMatchKey tries every placement of the glob's literals in the joined
// tokens, and keeps one whose every literal followed by * ends a token
// (or a token but for a plural s), with no property word after such a
// literal and no count word before a plural one.
func refMatchKey(pattern, key string) bool {
	toks := refTokens(key)
	joined := strings.Join(toks, "")
	ends := map[int]int{} // end offset of a token → its index
	off := 0
	for i, tk := range toks {
		off += len(tk)
		ends[off] = i
	}
	ok := func(start, end int) bool {
		ti, plural := -1, false
		if i, is := ends[end]; is {
			ti = i
		} else if i, is := ends[end+1]; is && joined[end] == 's' {
			ti, plural = i, true
		}
		if ti < 0 {
			return false
		}
		for _, tk := range toks[ti+1:] {
			if propertyWords[tk] {
				return false
			}
		}
		if plural {
			// The token before the one the find starts in.
			for i, o := 0, 0; i < len(toks); i++ {
				if o+len(toks[i]) > start {
					if i > 0 && countWords[toks[i-1]] {
						return false
					}
					break
				}
				o += len(toks[i])
			}
		}
		return true
	}
	lits := strings.Split(normKeyRef(pattern), "*")
	if len(lits) == 1 {
		return lits[0] == joined
	}
	var place func(i, from int) bool
	place = func(i, from int) bool {
		lit := lits[i]
		if i == len(lits)-1 {
			return len(joined)-len(lit) >= from && strings.HasSuffix(joined, lit)
		}
		for s := from; s+len(lit) <= len(joined); s++ {
			if i == 0 && s > 0 {
				break
			}
			if joined[s:s+len(lit)] == lit && (lit == "" || ok(s, s+len(lit))) && place(i+1, s+len(lit)) {
				return true
			}
		}
		return false
	}
	return place(0, 0)
}

func normKeyRef(p string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || r == ' ' {
			return -1
		}
		return r
	}, strings.ToLower(p))
}

func checkKey(t *testing.T, pattern, key string) {
	t.Helper()
	for i := 0; i < len(key); i++ {
		if key[i] >= 0x80 {
			return // the reference splits ASCII only
		}
	}
	kn := newKeyName(key)
	var got []string
	for i := 0; i < len(kn.n); {
		tok, next := kn.tokenAfter(i)
		got = append(got, tok)
		i = next
	}
	if want := refTokens(key); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("tokens of %q: %q, reference %q", key, got, want)
	}
	if g, w := newGlob(normKey(pattern)).matchKey(kn), refMatchKey(pattern, key); g != w {
		t.Fatalf("matchKey(%q, %q) = %v, reference %v", pattern, key, g, w)
	}
}

var keyPieces = []string{"api", "Api", "API", "key", "Key", "KEY", "_", "-", ".", " ", "token", "Token", "tokens", "s", "max", "total",
	"type", "Type", "name", "password", "Password", "secret", "session", "id", "Id", "ID", "2", "x", "X", "access", "pin", "at", "/", "[", "]"}

var keyPatterns = []string{"*password*", "*token*", "*apikey*", "*sessionid*", "pin", "*signature", "card", "x-*", "*secret*key*", "api*", "*"}

func randomKey(r *rand.Rand) string {
	var b strings.Builder
	for n := r.IntN(6); n >= 0; n-- {
		b.WriteString(keyPieces[r.IntN(len(keyPieces))])
	}
	return b.String()
}

// TestMatchKeyMatchesReference: token boundaries and key globs agree with
// the brute-force reference on random names built of the rules' words.
func TestMatchKeyMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20_000 {
		checkKey(t, keyPatterns[r.IntN(len(keyPatterns))], randomKey(r))
	}
}

func FuzzMatchKey(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 30 {
		f.Add(keyPatterns[r.IntN(len(keyPatterns))], randomKey(r))
	}
	f.Fuzz(func(t *testing.T, pattern, key string) {
		checkKey(t, pattern, key)
	})
}
