// Actions: what a rule or detector does to a value, and the record of it.

package sanitize

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Redacted replaces every value a redact rule matches.
const Redacted = "[REDACTED]"

func (sc *scan) record(loc, ruleName, action string) {
	// Redactions come from a slab, a few allocations per exchange rather
	// than one each (a typical exchange records a dozen or more).
	if len(sc.slab) == 0 {
		n := max(8, len(sc.out))
		sc.slab = make([]reprisev1.Redaction, n)
		sc.out = slices.Grow(sc.out, n)
	}
	loc = sc.scrub(loc)
	r := &sc.slab[0]
	sc.slab = sc.slab[1:]
	r.Location, r.Rule, r.Action = loc, ruleName, action
	sc.out = append(sc.out, r)
}

// kind says how a replacement must be shaped to keep its container valid.
type kind int

const (
	kindText   kind = iota
	kindNumber      // a JSON number: the replacement is a number too
)

var tokenRe = regexp.MustCompile(`^tok_[A-Za-z0-9_-]{16}$`)

// isMarker reports a value a sanitizer already wrote, so a second pass
// (agent, then collector) changes and records nothing.
func isMarker(v string) bool {
	if v == "" || v[0] != '[' && v[0] != 't' && v[0] != '*' {
		return false // most values: one comparison
	}
	switch {
	case v == Redacted:
		return true
	case len(v) == 20 && strings.HasPrefix(v, "tok_"):
		return tokenRe.MatchString(v)
	case strings.HasPrefix(v, "****") && utf8.RuneCountInString(v) <= 8:
		return true
	case strings.HasPrefix(v, Redacted) || strings.HasPrefix(v, "*"):
		// What fill wrote over a find in a binary body.
		return strings.Trim(strings.TrimPrefix(v, Redacted), "*") == ""
	}
	return false
}

// scrub replaces what the value detectors find in a location: locations
// are built from names (headers, parameters, JSON keys), which can hold a
// secret too.
func (sc *scan) scrub(loc string) string {
	if len(loc) < sc.s.detectMinLen || plainLocation(loc) {
		return loc
	}
	sh := shapeOf(loc)
	var spans [][2]int
	for i := range sc.s.needs {
		if sh.meets(&sc.s.needs[i]) {
			spans = sc.s.detectors[i].find(spans, loc)
		}
	}
	if len(spans) == 0 {
		return loc
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		if sp[0] >= last {
			b.WriteString(loc[last:sp[0]])
			b.WriteString(Redacted)
		}
		last = max(last, sp[1])
	}
	b.WriteString(loc[last:])
	return b.String()
}

// plainLocation reports a location no detector can find anything in:
// fewer than two digits, no '@', space, control or non-ASCII byte, no "eyJ", and
// no run of 20 token characters (every detector needs one of these).
func plainLocation(loc string) bool {
	digits, run := 0, 0
	for i := 0; i < len(loc); i++ {
		c := loc[i]
		switch {
		case isDigit(c):
			digits++
		case c == '@' || c <= ' ' || c >= utf8.RuneSelf || c == 'e' && strings.HasPrefix(loc[i:], "eyJ"):
			return false
		}
		if run++; !isTokenChar(c) {
			run = 0
		}
		if run >= 20 || digits >= 2 {
			return false
		}
	}
	return true
}

// apply performs action on v and records it.
func (sc *scan) apply(at where, ruleName, action, v string, k kind) string {
	var repl string
	switch action {
	case ActionDrop:
		if sc.dropRule == "" {
			sc.dropRule = ruleName
		}
		repl = Redacted
	case ActionMask:
		repl = mask(v, k)
	case ActionTokenize:
		repl = sc.token(v, k)
	default:
		repl = Redacted
	}
	if k == kindNumber && (action == ActionRedact || action == ActionDrop) {
		repl = "0"
	}
	// A drop is recorded once, for the whole exchange, by Sanitize.
	if repl == v || action == ActionDrop {
		return repl
	}
	sc.record(sc.locString(at), ruleName, action)
	return repl
}

// mask keeps the last 4 characters of values of 12 or more (card numbers,
// IBANs, phone numbers); shorter values would give too much away.
func mask(v string, k kind) string {
	if k == kindNumber {
		d := digitsOf(v)
		if len(d) < 12 {
			return "0"
		}
		n, _ := strconv.Atoi(d[len(d)-4:])
		return strconv.Itoa(n)
	}
	r := []rune(v)
	if len(r) < 12 {
		return "****"
	}
	return "****" + string(r[len(r)-4:])
}

// token is a keyed HMAC-SHA256 of v: the same value always gives the same
// token, and without the key a short value cannot be found by brute force.
func (sc *scan) token(v string, k kind) string {
	m := hmac.New(sha256.New, sc.s.key)
	m.Write([]byte(v))
	sum := m.Sum(nil)
	if k == kindNumber {
		// 53 bits: every JSON parser reads it back exactly.
		return strconv.FormatUint(binary.BigEndian.Uint64(sum)>>11, 10)
	}
	return "tok_" + base64.RawURLEncoding.EncodeToString(sum)[:16]
}
