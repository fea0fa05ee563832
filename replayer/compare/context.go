package compare

import (
	"bytes"
	"cmp"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Context is what one comparison knows beyond the two responses: what the
// replayer changed in the request, what the recording does not hold, and
// when each response was made. The zero Context compares as recorded.
type Context struct {
	// Replace pairs text of the recorded request with what was sent in its
	// place (the recorded authority and the target's, a recorded
	// credential and the one the auth transform sent). Each old text is
	// replaced by the new one in the recorded response's header values,
	// JSON strings and text body before comparing, so a service that
	// reflects what it was sent is not blamed for the replayer's change.
	Replace []Replacement
	// Own are the headers the replayer adds to every request. Wherever the
	// service reflects them (a response header, a JSON member of that
	// name, a line of a text body) they are not a difference.
	Own []string
	// Unknown are paths (in the syntax of ParsePath) where the recording
	// holds no real value because the sanitizer redacted it: not compared.
	Unknown []string
	// Markers: recorded strings may hold sanitizer markers ([REDACTED],
	// tok_…, ****…), each of which matches any text.
	Markers bool
	// Partial: the recorded body is only a head (truncated or the capture
	// incomplete); the replayed body must start with it, the rest is not
	// compared.
	Partial bool
	// NoBody: the recorded body was never seen or was removed; bodies are
	// not compared.
	NoBody bool
	// RecordedAt and ReplayedAt are when the recorded and the replayed
	// request were sent; with both set, times in values are compared by
	// their offset from these, within Tolerance (see Options.ExactTimes).
	RecordedAt, ReplayedAt time.Time
	Tolerance              time.Duration
}

// Replacement is one text of the recorded request and what was sent instead.
type Replacement struct{ Old, New string }

// DefaultTolerance is the time tolerance the replayer uses when the config
// sets none; the recorded and the replayed latency are added to it.
const DefaultTolerance = 2 * time.Second

// timeWindow is how far a number may lie from its exchange's time to be
// taken for a Unix time.
const timeWindow = 366 * 24 * time.Hour

// replacer applies the replacements, longest old text first, so a URL is
// replaced whole before its authority alone.
func (c Context) replacer() *strings.Replacer {
	rs := slices.Clone(c.Replace)
	rs = slices.DeleteFunc(rs, func(r Replacement) bool { return r.Old == "" || r.Old == r.New })
	if len(rs) == 0 {
		return nil
	}
	slices.SortStableFunc(rs, func(a, b Replacement) int { return cmp.Compare(len(b.Old), len(a.Old)) })
	var args []string
	for _, r := range rs {
		args = append(args, r.Old, r.New)
	}
	return strings.NewReplacer(args...)
}

func (c Context) own(name string) bool {
	for _, o := range c.Own {
		if strings.EqualFold(o, name) {
			return true
		}
	}
	return false
}

// withoutOwnLines removes the lines of a text body that name one of the
// replayer's own headers, when the recorded body names none of them.
func (c Context) withoutOwnLines(rec, rep []byte) []byte {
	for _, o := range c.Own {
		name := []byte(strings.ToLower(o))
		if bytes.Contains(bytes.ToLower(rec), name) || !bytes.Contains(bytes.ToLower(rep), name) {
			continue
		}
		lines := bytes.SplitAfter(rep, []byte("\n"))
		lines = slices.DeleteFunc(lines, func(l []byte) bool { return bytes.Contains(bytes.ToLower(l), name) })
		rep = bytes.Join(lines, nil)
	}
	return rep
}

// The markers the sanitizer writes in place of a value (see
// internal/sanitize): redact, its URL-escaped form, tokenize and mask.
const (
	markerRedacted = "[REDACTED]"
	markerEscaped  = "%5BREDACTED%5D"
	markerToken    = "tok_"
	tokenLen       = len(markerToken) + 16
	markerMask     = "****"
)

// splitMarkers cuts s at the sanitizer markers it holds, returning the
// literal pieces between them; one piece means s holds no marker.
func splitMarkers(s string) []string {
	var pieces []string
	start := 0
	for i := 0; i < len(s); {
		n := markerAt(s, i)
		if n == 0 {
			// Skip to the next byte a marker can start with: bodies are
			// large and markers few.
			next := strings.IndexAny(s[i+1:], "[%t*")
			if next < 0 {
				break
			}
			i += 1 + next
			continue
		}
		pieces = append(pieces, s[start:i])
		i += n
		start = i
	}
	return append(pieces, s[start:])
}

// HasMarker reports whether s holds a marker the sanitizer writes in place
// of a value.
func HasMarker(s string) bool { return len(splitMarkers(s)) > 1 }

// markerAt returns the length of the marker at s[i:], or 0.
func markerAt(s string, i int) int {
	rest := s[i:]
	switch {
	case strings.HasPrefix(rest, markerRedacted):
		return len(markerRedacted)
	case len(rest) >= len(markerEscaped) && strings.EqualFold(rest[:len(markerEscaped)], markerEscaped):
		return len(markerEscaped)
	case strings.HasPrefix(rest, markerToken) && len(rest) >= tokenLen && (i == 0 || !isTokenByte(s[i-1])) &&
		allTokenBytes(rest[len(markerToken):tokenLen]) && (len(rest) == tokenLen || !isTokenByte(rest[tokenLen])):
		return tokenLen
	case strings.HasPrefix(rest, markerMask):
		// A mask keeps at most the last 4 characters, which are part of
		// the value the replay may answer differently: all of it is unknown.
		n := len(markerMask)
		for n < len(rest) && n < len(markerMask)+4 && rest[n] != '*' && !endsMask(rest[n]) {
			n++
		}
		return n
	}
	return 0
}

func isTokenByte(c byte) bool {
	return c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func allTokenBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

// endsMask reports a byte that cannot be part of a masked value.
func endsMask(c byte) bool {
	return c == ' ' || c == '"' || c == '\'' || c == ';' || c == ',' || c == '\n'
}

// wildcardMatch reports whether got fits the recorded pieces with any text
// in place of each marker between them; with head, got may go on after
// the last piece. Leftmost matching of each middle piece is enough for
// wildcards that match any run, and it is linear.
func wildcardMatch(pieces []string, got string, head bool) bool {
	if !strings.HasPrefix(got, pieces[0]) {
		return false
	}
	got = got[len(pieces[0]):]
	last := len(pieces) - 1
	for _, p := range pieces[1:last] {
		i := strings.Index(got, p)
		if i < 0 {
			return false
		}
		got = got[i+len(p):]
	}
	if head {
		return strings.Contains(got, pieces[last])
	}
	return strings.HasSuffix(got, pieces[last])
}

// timeToken finds what may be a time in text: an RFC 3339 / ISO 8601
// date-time, an RFC 1123 HTTP date, or a run of 9 to 19 digits (a Unix
// time, with a fraction too). timeOf decides.
var timeToken = regexp.MustCompile(`\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?` +
	`|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT` +
	`|\b\d{9,19}(?:\.\d+)?\b`)

// sameTimedText reports whether two texts are equal but for times at the
// same offset from their exchange's time.
func (c Context) sameTimedText(rec, rep string) bool {
	if c.RecordedAt.IsZero() || c.ReplayedAt.IsZero() {
		return false
	}
	ri, pi := timeToken.FindAllStringIndex(rec, -1), timeToken.FindAllStringIndex(rep, -1)
	if len(ri) == 0 || len(ri) != len(pi) {
		return false
	}
	r, p := 0, 0 // ends of the previous tokens
	for k := range ri {
		if rec[r:ri[k][0]] != rep[p:pi[k][0]] {
			return false
		}
		a, b := rec[ri[k][0]:ri[k][1]], rep[pi[k][0]:pi[k][1]]
		if a != b && !c.sameTime(a, b) {
			return false
		}
		r, p = ri[k][1], pi[k][1]
	}
	return rec[r:] == rep[p:]
}

// timeOf reads a time from a value that is one: RFC 3339 / ISO 8601 date-
// times (with or without zone, then taken as UTC), HTTP dates, and Unix
// times in seconds (with a fraction too), milliseconds, microseconds or
// nanoseconds within a year of ref. Its second result is the unit, so a
// time in seconds is never paired with one in milliseconds.
func timeOf(s string, ref time.Time) (time.Time, string, bool) {
	if len(s) < 8 || len(s) > 64 {
		return time.Time{}, "", false
	}
	if s[0] >= '0' && s[0] <= '9' && len(s) >= 19 && s[4] == '-' {
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
			if t, err := time.Parse(layout, s); err == nil {
				return t, "iso", true
			}
		}
		return time.Time{}, "", false
	}
	if t, err := http.ParseTime(s); err == nil {
		return t, "http", true
	}
	return unixOf(s, ref)
}

// unixOf reads a Unix time in the unit its number of integer digits
// suggests, and only when it lies within timeWindow of ref.
func unixOf(s string, ref time.Time) (time.Time, string, bool) {
	intPart, frac, hasFrac := strings.Cut(s, ".")
	if intPart == "" || strings.Trim(intPart, "0123456789") != "" || hasFrac && strings.Trim(frac, "0123456789") != "" {
		return time.Time{}, "", false
	}
	var t time.Time
	var unit string
	switch n := len(intPart); {
	case n == 10 || n == 9:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return time.Time{}, "", false
		}
		sec, fr := math.Modf(f)
		t, unit = time.Unix(int64(sec), int64(fr*1e9)), "s"
	case hasFrac:
		return time.Time{}, "", false
	case n == 13 || n == 12:
		v, _ := strconv.ParseInt(s, 10, 64)
		t, unit = time.UnixMilli(v), "ms"
	case n == 16 || n == 15:
		v, _ := strconv.ParseInt(s, 10, 64)
		t, unit = time.UnixMicro(v), "µs"
	case n == 19 || n == 18:
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, "", false
		}
		t, unit = time.Unix(0, v), "ns"
	default:
		return time.Time{}, "", false
	}
	if d := t.Sub(ref); d > timeWindow || d < -timeWindow {
		return time.Time{}, "", false
	}
	return t, unit, true
}

// sameTime reports whether two differing values are times at the same
// offset from their own exchange's time, within the tolerance.
func (c Context) sameTime(rec, rep string) bool {
	if c.RecordedAt.IsZero() || c.ReplayedAt.IsZero() {
		return false
	}
	tr, ur, ok := timeOf(rec, c.RecordedAt)
	if !ok {
		return false
	}
	tp, up, ok := timeOf(rep, c.ReplayedAt)
	if !ok || ur != up {
		return false
	}
	d := tr.Sub(c.RecordedAt) - tp.Sub(c.ReplayedAt)
	// Values of whole seconds round by up to a second on each side.
	tol := c.Tolerance + time.Second
	return d <= tol && d >= -tol
}
