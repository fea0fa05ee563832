// Package sanitize removes secrets from captured exchanges before they are
// stored, logged or spooled. The agent and the collector both run it, so it
// depends only on the proto.
package sanitize

import (
	"strings"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Redacted replaces every value a rule redacts.
const Redacted = "[REDACTED]"

// Rule rewrites one exchange in place and returns what it changed. A rule
// must never put the value it removed into a Redaction.
type Rule interface {
	Apply(ex *reprisev1.Exchange) []*reprisev1.Redaction
}

// Sanitizer applies its rules in order.
type Sanitizer struct {
	rules []Rule
}

// New returns a Sanitizer that applies rules in order.
func New(rules ...Rule) *Sanitizer {
	return &Sanitizer{rules: rules}
}

// Default returns the sanitizer every exchange goes through.
func Default() *Sanitizer {
	return New(SensitiveHeaders())
}

// Sanitize applies every rule to ex in place and appends what they changed
// to ex.Redactions.
func (s *Sanitizer) Sanitize(ex *reprisev1.Exchange) {
	for _, r := range s.rules {
		ex.Redactions = append(ex.Redactions, r.Apply(ex)...)
	}
}

var defaultSanitizer = Default()

// Sanitize runs the default rules on ex; see Default.
func Sanitize(ex *reprisev1.Exchange) {
	defaultSanitizer.Sanitize(ex)
}

// HeaderRule redacts the values of the named request and response headers.
type HeaderRule struct {
	name     string
	request  map[string]bool // lower-case header names
	response map[string]bool
}

// NewHeaderRule redacts the given request and response header names,
// matched case-insensitively, every occurrence.
func NewHeaderRule(name string, request, response []string) *HeaderRule {
	return &HeaderRule{name: name, request: lowerSet(request), response: lowerSet(response)}
}

// SensitiveHeaders redacts credentials and session cookies.
func SensitiveHeaders() *HeaderRule {
	return NewHeaderRule("sensitive-header",
		[]string{"Authorization", "Proxy-Authorization", "Cookie"},
		[]string{"Set-Cookie"})
}

// Apply implements Rule.
func (r *HeaderRule) Apply(ex *reprisev1.Exchange) []*reprisev1.Redaction {
	var out []*reprisev1.Redaction
	if req := ex.GetRequest(); req != nil {
		out = r.redact(out, "request.headers.", req.Headers, r.request)
	}
	if resp := ex.GetResponse(); resp != nil {
		out = r.redact(out, "response.headers.", resp.Headers, r.response)
	}
	return out
}

func (r *HeaderRule) redact(out []*reprisev1.Redaction, prefix string, headers []*reprisev1.Header, names map[string]bool) []*reprisev1.Redaction {
	for _, h := range headers {
		// Skipping values already redacted keeps a second pass (agent, then
		// collector) from recording the same redaction twice.
		if h == nil || h.Value == Redacted || !names[strings.ToLower(h.Name)] {
			continue
		}
		h.Value = Redacted
		out = append(out, &reprisev1.Redaction{
			// The name as on the wire, so a replay knows exactly which field to refill.
			Location: prefix + h.Name,
			Rule:     r.name,
			Action:   "redact",
		})
	}
	return out
}

func lowerSet(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[strings.ToLower(n)] = true
	}
	return m
}
