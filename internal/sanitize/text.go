// Free text: the value detectors and the key=value patterns.

package sanitize

import (
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

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
	merged := sc.spans(at, v, k)
	if len(merged) == 0 {
		return v
	}
	if k == kindNumber {
		return sc.apply(at, merged[0].d.name, merged[0].d.action, v, k)
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

// mayFind reports whether detect could change v: a detector finds
// something, or v may hold key=value text.
func (s *Sanitizer) mayFind(v string) bool {
	if len(v) < s.detectMinLen {
		return false
	}
	sh := shapeOf(v)
	if sh.seen&clKV != 0 && hasKVWord(v) {
		return true
	}
	for i := range s.needs {
		if sh.meets(&s.needs[i]) && len(s.detectors[i].find(nil, v)) > 0 {
			return true
		}
	}
	return false
}

// spans returns what the detectors and the key=value patterns find in v,
// in order; overlapping finds are merged, so no part of either survives,
// and the earlier detector in the table names the merged span. A number
// gets the first find only. The slice is the scan's buffer: valid until
// the next call.
func (sc *scan) spans(at where, v string, k kind) []span {
	sh := shapeOf(v)
	// The scan's buffer, taken so that a nested detect (keyValues decides
	// fields) gets its own; given back once the spans are found.
	spans := sc.spanBuf[:0]
	sc.spanBuf = nil
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
	sc.spanBuf = spans[:0]
	if len(spans) <= 1 || k == kindNumber {
		return spans
	}
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
	return merged
}

// kvRe finds key=value, "key": "value" and <key>value</key> in free text
// (logs, HTML, broken JSON) for the built-in sensitive key names; a quoted
// value cut before its closing quote (a truncated body) runs to the end.
var kvRe = regexp.MustCompile(`(?i)([a-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|session[_-]?id|ssn|signature)[a-z0-9_.-]*)(?:["']?\s*[:=]\s*(?:"([^"]*)"?|'([^']*)'?|([^\s"'&,;<>]+))|\s*>([^<]*)<)`)

var kvWords = []string{"pass", "secret", "token", "key", "credential", "session", "ssn", "signature"}

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
			if s < 0 || e-s < 2 {
				continue // no credential is one character (HTML's accesskey="n")
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
