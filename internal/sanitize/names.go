// Names: how key rules read a key (a header, cookie, parameter or field
// name) as tokens, and the HTTP field names no built-in rule reads as
// secret.

package sanitize

import "strings"

// keyName is a key folded for key rules (see normKey) with the token
// boundaries of the original: separators (- _ . space and any other
// non-alphanumeric byte), lower to upper case (apiKey), the last capital of
// a run before a lower-case letter (APIKey), letters to digits and back.
type keyName struct {
	n     string
	bound []bool // bound[i]: a token starts or ends at n[i]; len(n)+1 entries
}

func newKeyName(k string) keyName {
	var b strings.Builder
	b.Grow(len(k))
	bound := make([]bool, 1, len(k)+1)
	bound[0] = true
	const (
		other = iota
		lower
		upper
		digit
	)
	class := func(c byte) int {
		switch {
		case isLower(c):
			return lower
		case isUpper(c):
			return upper
		case isDigit(c):
			return digit
		}
		return other
	}
	sep := false // a dropped separator since the last byte written
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c == '-' || c == '_' || c == '.' || c == ' ' {
			sep = true
			continue
		}
		if b.Len() > 0 {
			p, cl := class(k[i-1]), class(c)
			next := other
			if i+1 < len(k) {
				next = class(k[i+1])
			}
			bound[b.Len()] = sep || p != cl && !(p == upper && cl == lower) || cl == other ||
				p == upper && cl == upper && next == lower
		}
		sep = false
		if isUpper(c) {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
		bound = append(bound, false)
	}
	bound[len(bound)-1] = true
	return keyName{b.String(), bound}
}

// normKey folds the spellings of one name together: X-Api-Key, api_key,
// apiKey and API.KEY all become "xapikey"/"apikey".
func normKey(k string) string { return newKeyName(k).n }

// tokenAfter returns the token of kn starting at i (a boundary).
func (kn keyName) tokenAfter(i int) (string, int) {
	j := i + 1
	for j < len(kn.n) && !kn.bound[j] {
		j++
	}
	return kn.n[i:j], j
}

// tokenBefore returns the token of kn ending at i (a boundary).
func (kn keyName) tokenBefore(i int) string {
	j := i - 1
	for j > 0 && !kn.bound[j] {
		j--
	}
	return kn.n[max(j, 0):i]
}

// matchKey matches a key glob (normalised; * any run of bytes) against a
// name by tokens: a literal followed by * ends where a token ends (or
// before a plural s), so "*token*" finds access_token, csrftoken and
// accessToken but not tokenizer or session_idle, and "*sessionid*" finds
// session_id. A find followed by a token that says it names a property of
// the secret (token_type, password_min_length), or a plural after a count
// (max_tokens, prompt_tokens), does not count.
func (g globPattern) matchKey(kn keyName) bool {
	s := kn.n
	if len(g) == 1 {
		return g[0] == s
	}
	if !strings.HasPrefix(s, g[0]) {
		return false
	}
	at := len(g[0])
	if at > 0 && !kn.endsWord(0, at) {
		return false
	}
	last := g[len(g)-1]
	for _, p := range g[1 : len(g)-1] {
		if p == "" {
			continue // "**"
		}
		found := false
		for from := at; from+len(p) <= len(s)-len(last); {
			i := strings.Index(s[from:len(s)-len(last)], p)
			if i < 0 {
				break
			}
			start, end := from+i, from+i+len(p)
			if kn.endsWord(start, end) {
				at, found = end, true
				break
			}
			from = start + 1
		}
		if !found {
			return false
		}
	}
	return len(s)-len(last) >= at && strings.HasSuffix(s, last)
}

// endsWord reports whether the find n[start:end] ends a token (or a token
// but for a plural s) and is not a property's name or a count.
func (kn keyName) endsWord(start, end int) bool {
	plural := false
	switch {
	case kn.bound[end]:
	case end+1 < len(kn.bound) && kn.n[end] == 's' && kn.bound[end+1]:
		plural, end = true, end+1
	default:
		return false
	}
	for i := end; i < len(kn.n); {
		tok, next := kn.tokenAfter(i)
		if propertyWords[tok] {
			return false
		}
		i = next
	}
	if plural && start > 0 {
		for i := start; i > 0; i-- {
			if kn.bound[i] {
				return !countWords[kn.tokenBefore(i)]
			}
		}
	}
	return true
}

// propertyWords, after a secret's word, make the name that of a property
// of the secret, not the secret: token_type is "Bearer", password_min_length
// a number, secret_name a name.
var propertyWords = setOf("type", "types", "name", "names", "length", "len", "size", "count", "expires", "expiry",
	"expiration", "exp", "ttl", "at", "in", "url", "uri", "endpoint", "path", "policy", "format", "kind", "min",
	"max", "enabled", "required", "hint", "strength", "version", "header", "param", "field", "label", "rotation",
	"location", "usage", "used", "remaining", "limit", "timeout", "lifetime", "mode", "method", "scheme", "algorithm", "alg")

// countWords, before a plural, make it a count: max_tokens, prompt_tokens.
var countWords = setOf("max", "min", "num", "total", "prompt", "completion", "input", "output", "cached", "reasoning",
	"remaining", "used", "count")

func setOf(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

// registeredField reports an HTTP field name registered for a purpose that
// carries no credential: content negotiation, caching, CORS, security
// policies, tracing, proxies and rate limits. No built-in key rule reads
// such a name as secret (Access-Control-Allow-Credentials: true is not a
// credential); its value still passes the value detectors, and a rules
// file's own rules still apply.
func registeredField(name string) bool {
	l := strings.ToLower(name)
	if registeredFields[l] {
		return true
	}
	for _, p := range registeredPrefixes {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

var registeredFields = setOf(
	// Content negotiation and representation.
	"accept", "accept-charset", "accept-encoding", "accept-language", "accept-ranges", "accept-patch", "accept-post",
	"content-disposition", "content-encoding", "content-language", "content-length", "content-location",
	"content-range", "content-type", "content-digest", "repr-digest", "digest", "want-digest", "vary",
	// Caching and conditionals.
	"age", "cache-control", "cache-status", "cdn-cache-control", "etag", "expires", "last-modified", "pragma",
	"if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range", "surrogate-control",
	"surrogate-key", "x-cache", "x-cache-hits", "x-served-by",
	// Security policies.
	"strict-transport-security", "content-security-policy", "content-security-policy-report-only",
	"x-content-type-options", "x-frame-options", "x-xss-protection", "referrer-policy", "permissions-policy",
	"feature-policy", "x-permitted-cross-domain-policies", "x-dns-prefetch-control", "x-download-options",
	"origin-agent-cluster", "document-policy", "clear-site-data", "expect-ct", "nel", "report-to",
	"reporting-endpoints", "x-robots-tag", "upgrade-insecure-requests", "sec-gpc", "dnt",
	"sec-websocket-version", "sec-websocket-protocol", "sec-websocket-extensions",
	// Tracing and correlation.
	"traceparent", "tracestate", "baggage", "b3", "uber-trace-id", "sentry-trace", "x-request-id",
	"x-correlation-id", "x-amzn-trace-id", "x-amzn-requestid", "x-amz-request-id", "x-amz-id-2",
	"x-cloud-trace-context", "grpc-trace-bin", "x-datadog-trace-id", "x-datadog-parent-id",
	"x-datadog-sampling-priority", "x-datadog-origin", "server-timing", "timing-allow-origin",
	// Connection, routing and proxies.
	"alt-svc", "alt-used", "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "via",
	"forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "x-real-ip",
	"host", "origin", "referer", "location", "max-forwards", "expect", "priority", "range",
	// Everything else every server sends.
	"allow", "date", "link", "retry-after", "server", "user-agent", "warning", "x-powered-by", "x-runtime",
	"service-worker-allowed",
)

var registeredPrefixes = []string{
	"access-control-", "cross-origin-", "sec-fetch-", "sec-ch-", "x-b3-", "x-ratelimit-", "ratelimit-",
	"x-rate-limit-",
}
