// Package sanitize removes secrets from captured exchanges before they are
// stored, logged or spooled. The agent and the collector both run it, so it
// depends only on the proto and on libraries.
//
// Every value of an exchange (header, cookie, URL part, body field) goes
// through the same decision: allow rules first (the value is kept), then
// deny rules in order, then value detectors; every other string (ids,
// names, the process) passes the value detectors. Bodies are decoded as
// their headers and their bytes say; what cannot be read fails closed.
// See docs/sanitization.md.
package sanitize

import (
	"crypto/rand"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Reasons a body is removed (the Rule of its Redaction); they fail closed.
const (
	ReasonUndecodable = "body-undecodable"
	ReasonTooLarge    = "body-too-large"
	ReasonTooDeep     = "body-too-deep"
	ReasonTooMany     = "body-too-many-fields"
	ReasonUnparsable  = "body-unparsable"
	ReasonOpaque      = "body-opaque"
)

// Policies for opaque (binary) bodies, the rules file's opaque_bodies.
const (
	// OpaqueKeep, the default, keeps a binary body and scans its
	// printable runs: images and protobuf replay as they were recorded.
	OpaqueKeep = "keep"
	// OpaqueRedact removes every binary body (reason body-opaque).
	OpaqueRedact = "redact"
)

// Sanitizer applies one rule set; it is safe for concurrent use.
type Sanitizer struct {
	allow     []*rule
	deny      []*rule
	detectors []activeDetector
	needs     []shape // the detectors' needs, side by side for detect's loop
	// detectMinLen: shorter values meet no detector's need and are not
	// searched for key=value, so detect returns them at once.
	detectMinLen int
	// locPrefixes are the literal prefixes of the rules' location patterns.
	locPrefixes []string
	limits      Limits
	opaque      string // OpaqueKeep or OpaqueRedact
	key         []byte
	idKey       []byte // the HMAC key of ids that held a secret: key, or random
	// counts is built once, so reads and increments need no lock.
	counts map[string]*atomic.Uint64

	// keys maps a raw key to its keyMatches. Reads load an immutable map
	// and take no lock (every value of every exchange looks its key up);
	// a miss goes to newKeys, under keysMu, which is merged into a new keys
	// map once the misses since the last merge reach a quarter of keys, so
	// copies are amortised.
	keys    atomic.Pointer[map[string]keyRules]
	keysMu  sync.Mutex
	newKeys map[string]keyRules
	misses  int
}

type activeDetector struct {
	*detector
	action string
}

// Default returns the built-in rules (no tokenize, so no key needed).
func Default() *Sanitizer {
	s, err := build(nil, nil)
	if err != nil {
		panic(fmt.Sprintf("built-in sanitize rules: %v", err))
	}
	return s
}

// Load reads a rules file (see deploy/sanitize.yaml); an empty path means
// the built-in rules. key is the HMAC key of tokenize rules (see
// KeyFromEnvOrFile); a tokenize rule without a key is an error.
func Load(path string, key []byte) (*Sanitizer, error) {
	if path == "" {
		return build(nil, key)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read sanitize rules: %w", err)
	}
	c, err := parseRules(data, path)
	if err != nil {
		return nil, err
	}
	return build(c, key)
}

func build(user *config, key []byte) (*Sanitizer, error) {
	builtin, err := parseRules(builtinRules, "(built-in)")
	if err != nil {
		return nil, err
	}
	s := &Sanitizer{limits: defaultLimits, opaque: OpaqueKeep, key: key, counts: map[string]*atomic.Uint64{}}
	s.keys.Store(&map[string]keyRules{})
	if s.idKey = key; len(key) == 0 {
		s.idKey = make([]byte, 32)
		_, _ = rand.Read(s.idKey) // never fails: crypto/rand crashes the process instead
	}
	actions, _ := builtin.detectorActions()
	if user != nil {
		if user.Limits.MaxBodyBytes > 0 {
			s.limits.MaxBodyBytes = user.Limits.MaxBodyBytes
		}
		if user.Limits.MaxDepth > 0 {
			s.limits.MaxDepth = user.Limits.MaxDepth
		}
		if user.Limits.MaxFields > 0 {
			s.limits.MaxFields = user.Limits.MaxFields
		}
		if user.OpaqueBodies != "" {
			s.opaque = user.OpaqueBodies
		}
		for i := range user.Allow {
			s.allow = append(s.allow, &user.Allow[i])
		}
		for i := range user.Deny {
			s.deny = append(s.deny, &user.Deny[i])
		}
		if user.Builtin != nil && !*user.Builtin {
			builtin.Deny, actions = nil, map[string]string{}
		}
		ua, _ := user.detectorActions()
		for k, v := range ua {
			actions[k] = v
		}
	}
	for i := range builtin.Deny {
		builtin.Deny[i].builtin = true
		s.deny = append(s.deny, &builtin.Deny[i])
	}
	for _, r := range slices.Concat(s.allow, s.deny) {
		for _, g := range r.locations {
			s.locPrefixes = append(s.locPrefixes, g[0])
		}
	}
	s.detectMinLen = kvMinLen
	for _, d := range detectors {
		if a := actions[d.name]; a != "" && a != actionOff {
			s.detectors = append(s.detectors, activeDetector{d, a})
			s.needs = append(s.needs, d.need)
			s.detectMinLen = min(s.detectMinLen, d.need.minLen())
		}
	}
	names := []string{ReasonUndecodable, ReasonTooLarge, ReasonTooDeep, ReasonTooMany, ReasonUnparsable, ReasonOpaque}
	for _, r := range s.deny {
		if r.Action == ActionTokenize && len(key) == 0 {
			return nil, fmt.Errorf("deny rule %s (line %d) tokenizes but no token key is set: set REPRISE_TOKEN_KEY or a key file", r.Name, r.line)
		}
		names = append(names, r.Name)
	}
	for _, d := range s.detectors {
		if d.action == ActionTokenize && len(key) == 0 {
			return nil, fmt.Errorf("detector %s tokenizes but no token key is set: set REPRISE_TOKEN_KEY or a key file", d.name)
		}
		names = append(names, d.name)
	}
	for _, n := range names {
		s.counts[n] = new(atomic.Uint64)
	}
	return s, nil
}

// Limits returns the limits in force: the file's, over the defaults.
func (s *Sanitizer) Limits() Limits { return s.limits }

// Counts returns how many values each rule, detector and fail-closed reason
// has changed since the Sanitizer was built.
func (s *Sanitizer) Counts() map[string]uint64 {
	out := make(map[string]uint64, len(s.counts))
	for n, c := range s.counts {
		out[n] = c.Load()
	}
	return out
}

// Sanitize rewrites ex in place and records what it changed in
// ex.Redactions, which it replaces: a Redaction the client sent is kept
// only where this pass finds its marker (an agent sanitized first), in
// this pass's words. It returns false when a drop rule matched: the request and
// response are then already removed from ex, and the caller should not
// store it.
func (s *Sanitizer) Sanitize(ex *reprisev1.Exchange) (keep bool) {
	sc := scans.Get().(*scan)
	defer sc.release()
	sc.s = s
	sc.takeClaims(ex.Redactions)
	sc.metadata(ex)
	if req := ex.GetRequest(); req != nil {
		req.Target = sc.url("request.url", req.Target)
		sc.headers("request", req.Headers)
		if len(req.Body) == 0 && len(sc.claims) > 0 {
			sc.confirmRemoved("request.body", ActionRemove)
		}
		sc.body("request.body", &req.Headers, &req.Body, &req.BodySize, req.BodyTruncated)
	}
	if resp := ex.GetResponse(); resp != nil {
		sc.headers("response", resp.Headers)
		if len(resp.Body) == 0 && len(sc.claims) > 0 {
			sc.confirmRemoved("response.body", ActionRemove)
		}
		sc.body("response.body", &resp.Headers, &resp.Body, &resp.BodySize, resp.BodyTruncated)
	}
	if ex.Request == nil && ex.Response == nil && len(sc.claims) > 0 {
		sc.confirmRemoved("exchange", ActionDrop)
	}
	if sc.dropRule != "" {
		ex.Request, ex.Response = nil, nil
		sc.out = append(sc.out, &reprisev1.Redaction{Location: "exchange", Rule: sc.dropRule, Action: ActionDrop})
	}
	for _, r := range sc.out {
		if c := s.counts[r.Rule]; c != nil {
			c.Add(1)
		}
	}
	ex.Redactions = append(sc.out, sc.confirmed...)
	return sc.dropRule == ""
}

// scan is the state of one Sanitize call.
type scan struct {
	s        *Sanitizer
	out      []*reprisev1.Redaction
	dropRule string
	fields   int
	slab     []reprisev1.Redaction // record's next Redactions
	locs     []byte                // see locString

	// Buffers reused from call to call (scans): nothing handed out points
	// into them.
	found   [][2]int // a detector's finds
	spanBuf []span   // spans' finds
	edits   []edit   // a JSON body's edits
	quoted  []byte   // the quoted replacements the edits point into

	claims    []claim                // the client's Redactions, until confirmed
	confirmed []*reprisev1.Redaction // those confirmed
}

// scans keeps scans for their buffers.
var scans = sync.Pool{New: func() any { return new(scan) }}

// release returns sc to scans, without what Sanitize handed out (the
// Redactions, their slab and locations) and without buffers grown large.
func (sc *scan) release() {
	keep := scan{found: sc.found[:0], spanBuf: sc.spanBuf[:0], edits: sc.edits[:0], quoted: sc.quoted[:0]}
	if cap(keep.quoted) > 1<<16 || cap(keep.edits) > 1<<10 {
		keep.edits, keep.quoted = nil, nil
	}
	clear(keep.spanBuf[:cap(keep.spanBuf)]) // they hold detectors' pointers
	*sc = keep
	scans.Put(sc)
}
