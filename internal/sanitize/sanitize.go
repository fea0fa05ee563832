// Package sanitize removes secrets from captured exchanges before they are
// stored, logged or spooled. The agent and the collector both run it, so it
// depends only on the proto and on libraries.
//
// Every value of an exchange (header, cookie, URL part, body field) goes
// through the same decision: allow rules first (the value is kept), then
// deny rules in order, then value detectors. See docs/sanitization.md.
package sanitize

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Redacted replaces every value a redact rule matches.
const Redacted = "[REDACTED]"

// Reasons a body is removed (the Rule of its Redaction); they fail closed.
const (
	ReasonUndecodable = "body-undecodable"
	ReasonTooLarge    = "body-too-large"
	ReasonTooDeep     = "body-too-deep"
	ReasonTooMany     = "body-too-many-fields"
	ReasonUnparsable  = "body-unparsable"
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
	key         []byte
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

// keyRules is what a key alone tells of the rules: whether each allow then
// deny rule's keys selector accepts it, and whether one of those that do
// has no locations selector. When none has, a value where no location
// rule can match (where.noLoc) goes straight to the detectors.
type keyRules struct {
	match     []bool
	unlocated bool
}

// keyCacheMax bounds the key cache: keys come from traffic, and an endless
// variety of them must not grow memory.
const keyCacheMax = 8192

// keyMatches returns the keyRules of key. Traffic repeats a few keys, so
// the answer is cached rather than matching every key glob of every rule at
// each value.
func (s *Sanitizer) keyMatches(key string) keyRules {
	if m, ok := (*s.keys.Load())[key]; ok {
		return m
	}
	s.keysMu.Lock()
	keys := *s.keys.Load()
	if s.misses++; s.misses > len(keys)/4 && len(s.newKeys) > 0 {
		merged := make(map[string]keyRules, len(keys)+len(s.newKeys))
		maps.Copy(merged, keys)
		maps.Copy(merged, s.newKeys)
		s.keys.Store(&merged)
		keys, s.newKeys, s.misses = merged, nil, 0
	}
	m, ok := keys[key]
	if !ok {
		m, ok = s.newKeys[key]
	}
	s.keysMu.Unlock()
	if ok {
		return m
	}
	// Matched without the lock: once the cache is full, every new key comes
	// here.
	nkey := normKey(key)
	m.match = make([]bool, 0, len(s.allow)+len(s.deny))
	for _, r := range slices.Concat(s.allow, s.deny) {
		ok := r.matchesKeys(nkey)
		m.match = append(m.match, ok)
		m.unlocated = m.unlocated || ok && len(r.locations) == 0
	}
	s.keysMu.Lock()
	if len(*s.keys.Load())+len(s.newKeys) < keyCacheMax {
		if s.newKeys == nil {
			s.newKeys = map[string]keyRules{}
		}
		s.newKeys[strings.Clone(key)] = m
	}
	s.keysMu.Unlock()
	return m
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
	s := &Sanitizer{limits: defaultLimits, key: key, counts: map[string]*atomic.Uint64{}}
	s.keys.Store(&map[string]keyRules{})
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
	names := []string{ReasonUndecodable, ReasonTooLarge, ReasonTooDeep, ReasonTooMany, ReasonUnparsable}
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

// Counts returns how many values each rule, detector and fail-closed reason
// has changed since the Sanitizer was built.
func (s *Sanitizer) Counts() map[string]uint64 {
	out := make(map[string]uint64, len(s.counts))
	for n, c := range s.counts {
		out[n] = c.Load()
	}
	return out
}

var defaultSanitizer = Default()

// Sanitize runs the built-in rules on ex; see (*Sanitizer).Sanitize.
func Sanitize(ex *reprisev1.Exchange) (keep bool) {
	return defaultSanitizer.Sanitize(ex)
}

// Sanitize rewrites ex in place and appends what it changed to
// ex.Redactions. It returns false when a drop rule matched: the request and
// response are then already removed from ex, and the caller should not
// store it.
func (s *Sanitizer) Sanitize(ex *reprisev1.Exchange) (keep bool) {
	sc := scans.Get().(*scan)
	defer sc.release()
	sc.s = s
	if req := ex.GetRequest(); req != nil {
		req.Target = sc.url("request.url", req.Target)
		sc.headers("request", req.Headers)
		sc.body("request.body", &req.Headers, &req.Body, &req.BodySize, req.BodyTruncated)
	}
	if resp := ex.GetResponse(); resp != nil {
		sc.headers("response", resp.Headers)
		sc.body("response.body", &resp.Headers, &resp.Body, &resp.BodySize, resp.BodyTruncated)
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
	if len(ex.Redactions) == 0 {
		ex.Redactions = sc.out
	} else {
		ex.Redactions = append(ex.Redactions, sc.out...)
	}
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
	found  [][2]int // a detector's finds
	spans  []span   // detect's spans
	edits  []edit   // a JSON body's edits
	quoted []byte   // the quoted replacements the edits point into
}

// scans keeps scans for their buffers.
var scans = sync.Pool{New: func() any { return new(scan) }}

// release returns sc to scans, without what Sanitize handed out (the
// Redactions, their slab and locations) and without buffers grown large.
func (sc *scan) release() {
	keep := scan{found: sc.found[:0], spans: sc.spans[:0], edits: sc.edits[:0], quoted: sc.quoted[:0]}
	if cap(keep.quoted) > 1<<16 || cap(keep.edits) > 1<<10 {
		keep.edits, keep.quoted = nil, nil
	}
	clear(keep.spans[:cap(keep.spans)]) // they hold detectors' pointers
	*sc = keep
	scans.Put(sc)
}

// where is a value's location, built only when a rule or a Redaction needs
// it: most JSON leaves are decided without one. A named where is base.name.
type where struct {
	base, name string
	named      bool
	// noLoc: no location rule matches here (see locMayMatchUnder).
	noLoc bool
}

func (w where) String() string {
	if !w.named {
		return w.base
	}
	return w.base + "." + w.name
}

// locString is w.String() built in sc.locs, one buffer for the locations
// of an exchange (a dozen or more Redactions and the JSON containers)
// rather than an allocation each. Bytes once written are never written
// again: a full buffer is replaced, not grown, so the strings stay valid.
func (sc *scan) locString(w where) string {
	if !w.named {
		return w.base
	}
	n := len(w.base) + 1 + len(w.name)
	if cap(sc.locs)-len(sc.locs) < n {
		sc.locs = make([]byte, 0, max(256, 2*cap(sc.locs), n))
	}
	start := len(sc.locs)
	sc.locs = append(append(append(sc.locs, w.base...), '.'), w.name...)
	return unsafe.String(&sc.locs[start], n)
}

// mayMatch reports whether g can match w in lower case; it is false only
// when w, in ASCII, does not start with g's literal prefix, so most values
// pass a location rule without building their location.
func (w where) mayMatch(g globPattern) bool {
	p := g[0]
	if len(w.base) >= len(p) {
		return hasPrefixLower(w.base, p) // nearly always: the base alone decides
	}
	if !hasPrefixLower(w.base, p[:len(w.base)]) {
		return false // request.body against request.cookies., say
	}
	for i := len(w.base); i < len(p); i++ {
		var c byte
		switch {
		case !w.named:
			return false
		case i == len(w.base):
			c = '.'
		case i-len(w.base)-1 < len(w.name):
			c = w.name[i-len(w.base)-1]
		default:
			return false
		}
		if c >= utf8.RuneSelf {
			return true // strings.ToLower may change the length
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != p[i] {
			return false
		}
	}
	return true
}

// hasPrefixLower reports whether s, lowered in ASCII, starts with the lower
// case p; non-ASCII in s is taken as a match, as strings.ToLower may change
// its length.
func hasPrefixLower(s, p string) bool {
	if len(s) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return true
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != p[i] {
			return false
		}
	}
	return true
}

func (sc *scan) record(loc, ruleName, action string) {
	// Redactions come from a slab, a few allocations per exchange rather
	// than one each (a typical exchange records a dozen or more).
	if len(sc.slab) == 0 {
		n := max(8, len(sc.out))
		sc.slab = make([]reprisev1.Redaction, n)
		sc.out = slices.Grow(sc.out, n)
	}
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
	switch {
	case v == Redacted:
		return true
	case len(v) == 20 && strings.HasPrefix(v, "tok_"):
		return tokenRe.MatchString(v)
	case strings.HasPrefix(v, "****"):
		return utf8.RuneCountInString(v) <= 8
	}
	return false
}

// decideKey returns the rule deciding a value or container by its key and
// location alone: allow (nil, true), deny (r, false), or neither (nil, false).
func (sc *scan) decideKey(at where, key string) (*rule, bool) {
	km := sc.s.keyMatches(key)
	if at.noLoc && !km.unlocated {
		return nil, false
	}
	if sc.firstMatch(sc.s.allow, km.match, at, "", true) != nil {
		return nil, true
	}
	return sc.firstMatch(sc.s.deny, km.match[len(sc.s.allow):], at, "", true), false
}

// locMayMatchUnder reports whether a location rule may match loc or a
// location under it (loc.name, loc[]): false when loc, lowered in ASCII,
// already departs from every location pattern's literal prefix, as the
// JSON body's locations do from the cookie rule's.
func (s *Sanitizer) locMayMatchUnder(loc string) bool {
	return slices.ContainsFunc(s.locPrefixes, func(p string) bool {
		return hasPrefixLower(loc, p[:min(len(p), len(loc))])
	})
}

// firstMatch returns the first of rules whose keys selector accepted the key
// (km, in the same order) and that matches loc and v. keyOnly skips rules
// with value selectors: a container has no value of its own.
func (sc *scan) firstMatch(rules []*rule, km []bool, at where, v string, keyOnly bool) *rule {
	lloc := "" // lowered only when a rule looks at it: most have no locations
	for i, r := range rules {
		if !km[i] || keyOnly && len(r.values) > 0 {
			continue
		}
		if len(r.locations) > 0 && lloc == "" {
			if at.noLoc || !slices.ContainsFunc(r.locations, at.mayMatch) {
				continue
			}
			lloc = strings.ToLower(sc.locString(at))
		}
		if r.matchesRest(lloc, v) {
			return r
		}
	}
	return nil
}

// field decides one value found at loc under key and returns what to keep.
// forced is a deny rule inherited from an enclosing JSON/XML key.
func (sc *scan) field(loc, key, v string, k kind, forced *rule) string {
	return sc.fieldAt(where{base: loc}, key, v, k, forced)
}

// fieldAt is field with a location that may not be built yet.
func (sc *scan) fieldAt(at where, key, v string, k kind, forced *rule) string {
	if v == "" || isMarker(v) {
		return v
	}
	if forced != nil {
		return sc.apply(at, forced.Name, forced.Action, v, k)
	}
	if km := sc.s.keyMatches(key); !at.noLoc || km.unlocated {
		if sc.firstMatch(sc.s.allow, km.match, at, v, false) != nil {
			return v
		}
		if r := sc.firstMatch(sc.s.deny, km.match[len(sc.s.allow):], at, v, false); r != nil {
			return sc.apply(at, r.Name, r.Action, v, k)
		}
	}
	return sc.detect(at, v, k)
}

type span struct {
	start, end int
	prio       int // detector order; lower wins
	d          activeDetector
}

// detect runs the value detectors and the key=value patterns of free text.
func (sc *scan) detect(at where, v string, k kind) string {
	if len(v) < sc.s.detectMinLen {
		return v // no detector's pattern, nor key=value, is that short
	}
	sh := shapeOf(v)
	// The scan's buffer, taken so that a nested detect (keyValues decides
	// fields) gets its own; given back once the spans are found.
	spans := sc.spans[:0]
	sc.spans = nil
	dets, needs := sc.s.detectors, sc.s.needs
	for i := range needs {
		if !sh.meets(&needs[i]) {
			continue
		}
		d := &dets[i]
		sc.found = d.find(sc.found[:0], v)
		for _, sp := range sc.found {
			if !isMarker(v[sp[0]:sp[1]]) {
				spans = append(spans, span{sp[0], sp[1], i, *d})
			}
		}
	}
	if k != kindNumber && sh.seen&clKV != 0 {
		spans = append(spans, sc.keyValues(at, v)...)
	}
	sc.spans = spans[:0]
	if len(spans) == 0 {
		return v
	}
	if k == kindNumber {
		return sc.apply(at, spans[0].d.name, spans[0].d.action, v, k)
	}
	// Overlapping finds are merged, so no part of either survives; the
	// earlier detector in the table names the merged span.
	slices.SortStableFunc(spans, func(a, b span) int { return a.start - b.start })
	merged := spans[:1]
	for _, sp := range spans[1:] {
		m := &merged[len(merged)-1]
		if sp.start >= m.end {
			merged = append(merged, sp)
			continue
		}
		m.end = max(m.end, sp.end)
		if sp.prio < m.prio {
			m.prio, m.d = sp.prio, sp.d
		}
	}
	if sp := merged[0]; len(merged) == 1 && sp.start == 0 && sp.end == len(v) && sp.d.detector != nil {
		return sc.apply(at, sp.d.name, sp.d.action, v, kindText) // the whole value
	}
	var b strings.Builder
	b.Grow(len(v))
	last := 0
	for _, sp := range merged {
		b.WriteString(v[last:sp.start])
		if sp.d.detector == nil {
			// A key=value pair of text: already decided by keyValues.
			b.WriteString(sp.d.action)
		} else {
			b.WriteString(sc.apply(at, sp.d.name, sp.d.action, v[sp.start:sp.end], kindText))
		}
		last = sp.end
	}
	b.WriteString(v[last:])
	return b.String()
}

// kvRe finds key=value, "key": "value" and <key>value</key> in free text
// (logs, HTML, broken JSON) for the built-in sensitive key names.
var kvRe = regexp.MustCompile(`(?i)([a-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|session[_-]?id|ssn)[a-z0-9_.-]*)(?:["']?\s*[:=]\s*(?:"([^"]*)"|'([^']*)'|([^\s"'&,;<>]+))|\s*>([^<]*)<)`)

var kvWords = []string{"pass", "secret", "token", "key", "credential", "session", "ssn"}

// kvMinLen: shorter text is not searched for key=value pairs.
const kvMinLen = 6

func (sc *scan) keyValues(at where, v string) []span {
	// The caller saw a ':', '=' or '>'. A byte loop, not ToLower: most
	// values fail here, and that would build a lowered copy of each.
	if len(v) < kvMinLen {
		return nil
	}
	if !hasKVWord(v) {
		return nil
	}
	var out []span
	for _, m := range kvRe.FindAllStringSubmatchIndex(v, -1) {
		key := v[m[2]:m[3]]
		for g := 2; g <= 5; g++ {
			s, e := m[2*g], m[2*g+1]
			if s < 0 || s == e {
				continue
			}
			// Decided as a field of its own, so allow and deny rules apply.
			if repl := sc.field(at.String()+"."+key, key, v[s:e], kindText, nil); repl != v[s:e] {
				out = append(out, span{s, e, len(sc.s.detectors), activeDetector{nil, repl}})
			}
		}
	}
	return out
}

// hasKVWord reports whether v contains one of kvWords in any case, in one
// pass. Non-ASCII text takes strings.ToLower, which also folds letters
// such as the Kelvin sign (K) that the regexp's (?i) matches.
func hasKVWord(v string) bool {
	for i := 0; i < len(v); i++ {
		switch kvStart[v[i]] {
		case kvNone:
			continue // no word starts there: the common case
		case kvNonASCII:
			l := strings.ToLower(v)
			return slices.ContainsFunc(kvWords, func(w string) bool { return strings.Contains(l, w) })
		}
		c := v[i] | 0x20
		for _, w := range kvWords {
			if w[0] == c && hasPrefixFoldASCII(v[i:], w) {
				return true
			}
		}
	}
	return false
}

// kvStart tells hasKVWord what a byte may start: a kvWords word (its first
// letter in either case), nothing, or non-ASCII text.
var kvStart = func() (t [256]uint8) {
	for c := utf8.RuneSelf; c < len(t); c++ {
		t[c] = kvNonASCII
	}
	for _, w := range kvWords {
		t[w[0]], t[w[0]-'a'+'A'] = kvWord, kvWord
	}
	return t
}()

const (
	kvNone = iota
	kvWord
	kvNonASCII
)

// hasPrefixFoldASCII reports whether s starts with the lower-case ASCII
// word w, in any case.
func hasPrefixFoldASCII(s, w string) bool {
	if len(s) < len(w) {
		return false
	}
	for j := 0; j < len(w); j++ {
		if s[j]|0x20 != w[j] {
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

// headers scans every header value; cookies are decided one by one.
func (sc *scan) headers(side string, hs []*reprisev1.Header) {
	base := "response.headers" // constants: no concatenation per exchange
	if side == "request" {
		base = "request.headers"
	}
	noLoc := !sc.s.locMayMatchUnder(base)
	for _, h := range hs {
		if h == nil {
			continue
		}
		at := where{base: base, name: h.Name, named: true, noLoc: noLoc}
		switch n := h.Name; {
		case side == "request" && isName(n, "cookie"):
			h.Value = sc.cookies("request.cookies", h.Value, false)
		case side == "response" && isName(n, "set-cookie"):
			h.Value = sc.cookies("response.set-cookie", h.Value, true)
		case isName(n, "referer") || isName(n, "location") || isName(n, "content-location") || isName(n, "origin"):
			// A rule on the header itself decides the whole value.
			if r, allow := sc.decideKey(at, n); r != nil || allow {
				h.Value = sc.fieldAt(at, n, h.Value, kindText, nil)
			} else {
				h.Value = sc.url(at.String(), h.Value)
			}
		default:
			h.Value = sc.fieldAt(at, n, h.Value, kindText, nil)
		}
	}
}

// isName reports whether the header name n is the ASCII name w in any
// case, as strings.EqualFold does; a shorter n is not (no character's case
// fold is longer than it), and most names are ruled out so.
func isName(n, w string) bool {
	return len(n) >= len(w) && strings.EqualFold(n, w)
}

// rebuild writes a string with some of its parts replaced; a string with
// none replaced is returned as it was, without a copy.
type rebuild struct {
	src     string
	b       strings.Builder
	last    int // src[:last] is written to b
	changed bool
}

// replace replaces src[start:end]; calls come in the order of the parts.
func (r *rebuild) replace(start, end int, repl string) {
	if !r.changed {
		r.b.Grow(len(r.src) + len(repl))
	}
	r.b.WriteString(r.src[r.last:start])
	r.b.WriteString(repl)
	r.last, r.changed = end, true
}

func (r *rebuild) String() string {
	if !r.changed {
		return r.src
	}
	r.b.WriteString(r.src[r.last:])
	return r.b.String()
}

// cookies decides each name=value of a Cookie header, or the first one of a
// Set-Cookie header (the rest are attributes).
func (sc *scan) cookies(loc, v string, set bool) string {
	out := rebuild{src: v}
	start := 0
	for p := range strings.SplitSeq(v, ";") {
		if name, val, ok := strings.Cut(p, "="); ok {
			n := strings.TrimSpace(name)
			if repl := sc.fieldAt(where{base: loc, name: n, named: true}, n, val, kindText, nil); repl != val {
				out.replace(start+len(name)+1, start+len(p), repl)
			}
		}
		if set {
			break
		}
		start += len(p) + 1
	}
	return out.String()
}

// pathNames are the location names of the first path segments, so most
// URLs build none.
var pathNames = func() (n [16]string) {
	for i := range n {
		n[i] = "path[" + strconv.Itoa(i) + "]"
	}
	return n
}()

func pathName(i int) string {
	if i < len(pathNames) {
		return pathNames[i]
	}
	return "path[" + strconv.Itoa(i) + "]"
}

// url scans a request target or URL: userinfo, each path segment and each
// query parameter. Replacements are escaped so the URL stays valid.
func (sc *scan) url(loc, target string) string {
	rest, frag, hasFrag := strings.Cut(target, "#")
	rest, query, hasQuery := strings.Cut(rest, "?")
	out := rebuild{src: target}
	pathStart := 0
	if i := strings.Index(rest, "://"); i >= 0 {
		// Absolute form: scheme://[userinfo@]host[/path].
		pathStart = len(rest)
		if j := strings.IndexByte(rest[i+3:], '/'); j >= 0 {
			pathStart = i + 3 + j
		}
		if at := strings.LastIndexByte(rest[i+3:pathStart], '@'); at >= 0 {
			ui := rest[i+3 : i+3+at]
			if repl := sc.userinfo(loc+".userinfo", ui); repl != ui {
				out.replace(i+3, i+3+at, repl)
			}
		}
	}
	start, i := pathStart, 0
	noLoc := !sc.s.locMayMatchUnder(loc)
	for seg := range strings.SplitSeq(rest[pathStart:], "/") {
		if dec, err := url.PathUnescape(seg); err == nil && dec != "" {
			if repl := sc.fieldAt(where{base: loc, name: pathName(i), named: true, noLoc: noLoc}, "", dec, kindText, nil); repl != dec {
				out.replace(start, start+len(seg), url.PathEscape(repl))
			}
		}
		start += len(seg) + 1
		i++
	}
	if hasQuery {
		if q := sc.pairs(loc+".query", query, '&'); q != query {
			out.replace(len(rest)+1, len(rest)+1+len(query), q)
		}
	}
	if hasFrag {
		if f := sc.pairs(loc+".fragment", frag, '&'); f != frag {
			out.replace(len(target)-len(frag), len(target), f)
		}
	}
	return out.String()
}

func (sc *scan) userinfo(loc, ui string) string {
	user, pass, hasPass := strings.Cut(ui, ":")
	if u, err := url.PathUnescape(user); err == nil {
		if repl := sc.field(loc, "username", u, kindText, nil); repl != u {
			user = url.PathEscape(repl)
		}
	}
	if !hasPass {
		return user
	}
	// A password in a URL is a credential whatever it looks like.
	p, err := url.PathUnescape(pass)
	if err != nil {
		p = pass
	}
	return user + ":" + url.PathEscape(sc.field(loc, "password", p, kindText, nil))
}

// pairs scans name=value pairs (a query string or a urlencoded form),
// leaving untouched pairs byte for byte as they were.
func (sc *scan) pairs(loc, s string, sep byte) string {
	out := rebuild{src: s}
	noLoc := !sc.s.locMayMatchUnder(loc)
	start := 0
	for p := range strings.SplitSeq(s, string(sep)) {
		name, val, _ := strings.Cut(p, "=")
		n, err := url.QueryUnescape(name)
		if err != nil {
			n = name
		}
		v, err := url.QueryUnescape(val)
		if err != nil {
			v = val
		}
		if n != "" || v != "" {
			if repl := sc.fieldAt(where{base: loc, name: n, named: true, noLoc: noLoc}, n, v, kindText, nil); repl != v {
				out.replace(start, start+len(p), name+"="+url.QueryEscape(repl))
			}
		}
		start += len(p) + 1
	}
	return out.String()
}

// limitError is a limit hit while scanning: the body fails closed.
type limitError struct{ reason string }

func (e *limitError) Error() string { return e.reason }

func isLimit(err error) (string, bool) {
	var le *limitError
	if errors.As(err, &le) {
		return le.reason, true
	}
	return "", false
}
