package replay

import (
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
	"github.com/reprise-dev/reprise/replayer/compare"
)

// minReplaced is the shortest recorded value whose replacement is applied
// to the recorded response: a shorter one ("1", "en") would also replace
// text that merely contains it.
const minReplaced = 4

// answer is a response with when its request was sent and how long it took.
type answer struct {
	resp *reprisev1.HttpResponse
	at   time.Time
	took time.Duration
}

// comparison says, for comparing the recorded response of ex with a, what the
// replayer changed (sent instead of the recorded request, to base), what
// the recording does not hold, and when each side was made.
func comparison(ex *reprisev1.Exchange, sent *reprisev1.HttpRequest, base *url.URL, a answer) compare.Context {
	c := compare.Context{
		Own:        ownHeaders(ex.GetRequest(), sent),
		ReplayedAt: a.at,
		Tolerance:  ex.GetDuration().AsDuration() + a.took,
		Replace:    changes(ex.GetRequest(), sent, base),
	}
	if ex.GetStartTime() != nil {
		c.RecordedAt = ex.GetStartTime().AsTime()
	}
	capture := ex.GetCapture()
	c.Partial = capture.GetResponseIncomplete() || ex.GetResponse().GetBodyTruncated()
	c.NoBody = capture.GetResponseBodyUnavailable()
	c.Markers = len(ex.GetRedactions()) > 0
	for _, r := range ex.GetRedactions() {
		loc, ok := strings.CutPrefix(r.GetLocation(), "response.")
		if !ok {
			continue
		}
		switch {
		case loc == "body" && r.GetAction() == "remove":
			c.NoBody = true
		case strings.HasPrefix(loc, "headers.") && !strings.Contains(strings.TrimPrefix(loc, "headers."), "."):
			c.Unknown = append(c.Unknown, loc)
		case strings.HasPrefix(loc, "body.") || strings.HasPrefix(loc, "body["):
			c.Unknown = append(c.Unknown, jsonPath(strings.TrimPrefix(loc, "body")))
		}
	}
	return c
}

// ownHeaders are the headers the replayer sent that the recorded request
// did not have: its run header and those the transforms added.
func ownHeaders(rec, sent *reprisev1.HttpRequest) []string {
	own := []string{RunHeader}
	for _, h := range sent.GetHeaders() {
		name := textproto.CanonicalMIMEHeaderKey(h.GetName())
		if !slices.Contains(own, name) && !slices.ContainsFunc(rec.GetHeaders(), func(r *reprisev1.Header) bool {
			return strings.EqualFold(r.GetName(), name)
		}) {
			own = append(own, name)
		}
	}
	return own
}

// jsonPath turns the sanitizer's location of a JSON value below the body
// (.user.email, .items[].id) into a compare path ($.user.email,
// $.items[*].id); a key that is not an identifier is quoted.
func jsonPath(loc string) string {
	var b strings.Builder
	b.WriteString("$")
	for _, part := range strings.Split(strings.TrimPrefix(loc, "."), ".") {
		name, arrays, _ := strings.Cut(part, "[]")
		if name != "" {
			if isIdent(name) {
				b.WriteString("." + name)
			} else {
				b.WriteString(`["` + strings.ReplaceAll(name, `"`, `\"`) + `"]`)
			}
		}
		if strings.HasPrefix(part[len(name):], "[]") {
			b.WriteString(strings.Repeat("[*]", 1+strings.Count(arrays, "[]")))
		}
	}
	return b.String()
}

func isIdent(s string) bool {
	for i, c := range s {
		letter := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return s != ""
}

// changes lists what the replayer sent in place of recorded text: the
// target's authority (and scheme and base path) for the recorded Host,
// header values the transforms changed, and the request-target if it was
// rewritten.
func changes(rec, sent *reprisev1.HttpRequest, base *url.URL) []compare.Replacement {
	var out []compare.Replacement
	add := func(old, new string) {
		if len(old) >= minReplaced && old != new {
			out = append(out, compare.Replacement{Old: old, New: new})
		}
	}
	if host := recordedHost(rec); host != "" {
		origin := base.Scheme + "://" + base.Host + strings.TrimSuffix(base.EscapedPath(), "/")
		add("http://"+host, origin)
		add("https://"+host, origin)
		add(host, base.Host)
	}
	if rec.GetTarget() != sent.GetTarget() {
		add(rec.GetTarget(), sent.GetTarget())
	}
	sentValues := map[string][]string{}
	for _, h := range sent.GetHeaders() {
		k := textproto.CanonicalMIMEHeaderKey(h.GetName())
		sentValues[k] = append(sentValues[k], h.GetValue())
	}
	seen := map[string]int{}
	for _, h := range rec.GetHeaders() {
		k := textproto.CanonicalMIMEHeaderKey(h.GetName())
		i := seen[k]
		seen[k]++
		if vs := sentValues[k]; i < len(vs) {
			add(h.GetValue(), vs[i])
			// "Bearer <token>": the credential alone may be reflected too.
			if scheme, old, ok := strings.Cut(h.GetValue(), " "); ok {
				if s2, new, ok := strings.Cut(vs[i], " "); ok && strings.EqualFold(scheme, s2) {
					add(old, new)
				}
			}
		}
	}
	return out
}

// recordedHost is the authority the recorded request was sent to.
func recordedHost(rec *reprisev1.HttpRequest) string {
	if rec.GetHost() != "" {
		return rec.GetHost()
	}
	for _, h := range rec.GetHeaders() {
		if strings.EqualFold(h.GetName(), "Host") {
			return h.GetValue()
		}
	}
	return ""
}

// credentialHeaders are where a request carries credentials besides the
// headers the sanitizer names in its redactions.
var credentialHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie"}

// missingCredential returns where the request as sent still carries a
// credential the sanitizer removed at record time (a location of the
// recording, such as request.headers.Authorization), or "".
func missingCredential(ex *reprisev1.Exchange, sent *reprisev1.HttpRequest) string {
	for _, r := range ex.GetRedactions() {
		loc := r.GetLocation()
		name := ""
		switch {
		case strings.HasPrefix(loc, "request.headers."):
			name, _, _ = strings.Cut(strings.TrimPrefix(loc, "request.headers."), ".")
		case strings.HasPrefix(loc, "request.cookies."):
			name = "Cookie"
		case strings.HasPrefix(loc, "request.url.userinfo"), strings.HasPrefix(loc, "request.url.query."):
			if compare.HasMarker(sent.GetTarget()) {
				return loc
			}
			continue
		default:
			continue
		}
		for _, h := range sent.GetHeaders() {
			if strings.EqualFold(h.GetName(), name) && compare.HasMarker(h.GetValue()) {
				return loc
			}
		}
	}
	// Redactions may be missing (an old or imported recording): a marker
	// in a credential header says the same.
	for _, h := range sent.GetHeaders() {
		for _, name := range credentialHeaders {
			if strings.EqualFold(h.GetName(), name) && compare.HasMarker(h.GetValue()) {
				return "request.headers." + name
			}
		}
	}
	return ""
}
