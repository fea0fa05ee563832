// Rules and matching: which rule, if any, decides a value by its key,
// location and value.

package sanitize

import (
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// keyRules is what a key alone tells of the rules: whether each allow then
// deny rule's keys selector accepts it, and whether one of those that do
// has no locations selector. When none has, a value where no location
// rule can match (where.noLoc) goes straight to the detectors.
type keyRules struct {
	match     []bool
	unlocated bool
	// nameFinds: the value detectors or key=value patterns may find
	// something in the key itself, so a name (header, parameter) must be
	// scanned; most names are ruled out once, here.
	nameFinds bool
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
	kn, registered := newKeyName(key), registeredField(key)
	m.match = make([]bool, 0, len(s.allow)+len(s.deny))
	for _, r := range slices.Concat(s.allow, s.deny) {
		ok := r.matchesKeys(kn, registered)
		m.match = append(m.match, ok)
		m.unlocated = m.unlocated || ok && len(r.locations) == 0
	}
	m.nameFinds = s.mayFind(key)
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
	if v == "" || forced != nil {
		return sc.fieldKeyed(at, keyRules{}, v, k, forced)
	}
	return sc.fieldKeyed(at, sc.s.keyMatches(key), v, k, forced)
}

// fieldKeyed is fieldAt with the key's keyRules looked up.
func (sc *scan) fieldKeyed(at where, km keyRules, v string, k kind, forced *rule) string {
	if len(sc.claims) > 0 {
		sc.confirm(at, v, k)
	}
	if v == "" || isMarker(v) {
		return v
	}
	if forced != nil {
		return sc.apply(at, forced.Name, forced.Action, v, k)
	}
	if !at.noLoc || km.unlocated {
		if sc.firstMatch(sc.s.allow, km.match, at, v, false) != nil {
			return v
		}
		if r := sc.firstMatch(sc.s.deny, km.match[len(sc.s.allow):], at, v, false); r != nil {
			return sc.apply(at, r.Name, r.Action, v, k)
		}
	}
	return sc.detect(at, v, k)
}
