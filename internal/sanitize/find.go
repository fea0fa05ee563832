package sanitize

import "strings"

// Hand-written finders for the detectors. Each returns exactly what
// FindAll of the regexp in its comment returns (leftmost-first, a search
// resuming at the end of the previous match), then filtered by the
// detector's validator; detect_diff_test.go checks them against the
// regexps. \b is RE2's: between an ASCII word character ([0-9A-Za-z_]) and
// anything else.

func isWord(c byte) bool { return isDigit(c) || isUpper(c) || isLower(c) || c == '_' }

// wordStart is \b before s[i] when s[i] is a word character.
func wordStart(s string, i int) bool { return i == 0 || !isWord(s[i-1]) }

// wordEnd is \b at i when s[i-1] is a word character.
func wordEnd(s string, i int) bool { return i == len(s) || !isWord(s[i]) }

// run returns the end of the run of bytes in class starting at i.
func run(s string, i int, class func(byte) bool) int {
	for i < len(s) && class(s[i]) {
		i++
	}
	return i
}

func isB64URL(c byte) bool   { return isUpper(c) || isLower(c) || isDigit(c) || c == '_' || c == '-' }
func isAlnum(c byte) bool    { return isUpper(c) || isLower(c) || isDigit(c) }
func isUpperNum(c byte) bool { return isUpper(c) || isDigit(c) }
func isSpaceRE(c byte) bool  { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }

// index is strings.Index of sub in s[from:], as an index of s.
func index(s, sub string, from int) int {
	if i := strings.Index(s[from:], sub); i >= 0 {
		return from + i
	}
	return -1
}

// pemFind: -----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?:[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY-----|[\s\S]*)
// An unterminated block runs to the end of s.
func pemFind(out [][2]int, s string) [][2]int {
	for i := index(s, "-----BEGIN", 0); i >= 0; i = index(s, "-----BEGIN", i+1) {
		h, ok := pemMarker(s, i+len("-----BEGIN"))
		if !ok {
			continue
		}
		end := len(s)
		for q := index(s, "-----END", h); q >= 0; q = index(s, "-----END", q+1) {
			if e, ok := pemMarker(s, q+len("-----END")); ok {
				end = e
				break
			}
		}
		out = append(out, [2]int{i, end})
		i = end - 1 // the search resumes at the end of the match
	}
	return out
}

// pemMarker matches [A-Z0-9 ]*PRIVATE KEY----- at s[i:]: the run of class
// bytes must end in "PRIVATE KEY", as '-' cannot be part of it.
func pemMarker(s string, i int) (int, bool) {
	j := run(s, i, func(c byte) bool { return isUpperNum(c) || c == ' ' })
	if !strings.HasSuffix(s[i:j], "PRIVATE KEY") || !strings.HasPrefix(s[j:], "-----") {
		return 0, false
	}
	return j + len("-----"), true
}

// jwtFind: eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*, valid ones.
func jwtFind(out [][2]int, s string) [][2]int {
	for i := index(s, "eyJ", 0); i >= 0; i = index(s, "eyJ", i+1) {
		// A start that fails fails for every "eyJ" inside its first run
		// too (they end where it ends), so the search resumes after it:
		// trying each would be quadratic in "eyJeyJeyJ…".
		h := run(s, i+3, isB64URL)
		if h-(i+3) < 2 || h == len(s) || s[h] != '.' {
			i = h - 1
			continue
		}
		c := run(s, h+1, isB64URL)
		if c-(h+1) < 2 || c == len(s) || s[c] != '.' {
			i = h - 1
			continue
		}
		end := run(s, c+1, isB64URL)
		if validJWT(s[i:end]) {
			out = append(out, [2]int{i, end})
		}
		i = end - 1 // the search resumes at the end of the match
	}
	return out
}

// awsFind: \b(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA)[0-9A-Z]{16}\b
func awsFind(out [][2]int, s string) [][2]int {
	for i := index(s, "A", 0); i >= 0 && i+20 <= len(s); i = index(s, "A", i+1) {
		if !wordStart(s, i) || !wordEnd(s, i+20) || run(s[:i+20], i+4, isUpperNum) < i+20 {
			continue
		}
		switch s[i : i+4] {
		case "AKIA", "ASIA", "ABIA", "ACCA", "AIDA", "AROA":
			out = append(out, [2]int{i, i + 20})
			i += 19
		}
	}
	return out
}

// githubFind: \b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b
// A run longer than 255 cannot end at \b, so it is no match.
func githubFind(out [][2]int, s string) [][2]int {
	for i := index(s, "g", 0); i >= 0; i = index(s, "g", i+1) {
		if !wordStart(s, i) {
			continue
		}
		end := -1
		if i+4 <= len(s) && s[i+1] == 'h' && strings.IndexByte("pousr", s[i+2]) >= 0 && s[i+3] == '_' {
			if e := run(s, i+4, isAlnum); e-(i+4) >= 36 && e-(i+4) <= 255 && wordEnd(s, e) {
				end = e
			}
		} else if strings.HasPrefix(s[i:], "github_pat_") {
			if e := run(s, i+11, isWord); e-(i+11) >= 22 && e-(i+11) <= 255 {
				end = e
			}
		}
		if end >= 0 {
			out = append(out, [2]int{i, end})
			i = end - 1
		}
	}
	return out
}

// basicFind: group 1 of (?i)\bbasic\s+([A-Za-z0-9+/]{4,}={0,2}), valid ones.
func basicFind(out [][2]int, s string) [][2]int {
	return schemeFind(out, s, "basic", func(c byte) bool { return isAlnum(c) || c == '+' || c == '/' }, 4, 2, validBasic)
}

// bearerFind: group 1 of (?i)\bbearer\s+([A-Za-z0-9._~+/-]{8,}=*)
func bearerFind(out [][2]int, s string) [][2]int {
	return schemeFind(out, s, "bearer", func(c byte) bool { return isAlnum(c) || strings.IndexByte("._~+/-", c) >= 0 }, 8, -1, nil)
}

// schemeFind finds (?i)\b<scheme>\s+(<class>{minLen,}={0,maxPad}) and
// returns group 1 (maxPad < 0: any number of '='). Under (?i) a letter also
// matches its Unicode case folds: ſ (U+017F) is an s, K (U+212A) a k.
func schemeFind(out [][2]int, s, scheme string, class func(byte) bool, minLen, maxPad int, valid func(string) bool) [][2]int {
	for i := 0; i < len(s); i++ {
		if s[i]|0x20 != scheme[0] || !wordStart(s, i) {
			continue
		}
		j, ok := foldPrefix(s, i, scheme)
		if !ok || j == len(s) || !isSpaceRE(s[j]) {
			continue
		}
		t := run(s, j, isSpaceRE)
		e, n := t, 0
		for e < len(s) {
			if class(s[e]) {
				e, n = e+1, n+1
			} else if w := foldLetter(s[e:]); w > 0 {
				e, n = e+w, n+1
			} else {
				break
			}
		}
		if n < minLen {
			continue
		}
		for p := 0; e < len(s) && s[e] == '=' && (maxPad < 0 || p < maxPad); p++ {
			e++
		}
		if valid == nil || valid(s[t:e]) {
			out = append(out, [2]int{t, e})
		}
		i = e - 1
	}
	return out
}

// foldPrefix matches the lower-case ASCII word at s[i:] as (?i) does and
// returns its end.
func foldPrefix(s string, i int, word string) (int, bool) {
	for k := 0; k < len(word); k++ {
		switch {
		case i < len(s) && s[i]|0x20 == word[k]:
			i++
		case word[k] == 's' && strings.HasPrefix(s[i:], "\u017f"):
			i += len("\u017f")
		case word[k] == 'k' && strings.HasPrefix(s[i:], "\u212a"):
			i += len("\u212a")
		default:
			return 0, false
		}
	}
	return i, true
}

// foldLetter returns the width of a non-ASCII letter that (?i) folds to an
// ASCII one at the start of s (ſ, U+017F, to s; K, U+212A, to k), or 0.
func foldLetter(s string) int {
	for _, f := range []string{"\u017f", "\u212a"} {
		if strings.HasPrefix(s, f) {
			return len(f)
		}
	}
	return 0
}

// cardFind: \b[2-6](?:[ -]?\d){12,18}\b, valid ones.
func cardFind(out [][2]int, s string) [][2]int {
	for i := 0; i < len(s); i++ {
		if s[i] < '2' || s[i] > '6' || !wordStart(s, i) {
			continue
		}
		if e := groupsEnd(s, i+1, 12, 18, isDigit, func(c byte) bool { return c == ' ' || c == '-' }); e >= 0 {
			if validCard(s[i:e]) {
				out = append(out, [2]int{i, e})
			}
			i = e - 1
		}
	}
	return out
}

// ibanFind: \b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b, valid ones.
func ibanFind(out [][2]int, s string) [][2]int {
	for i := 0; i+4 <= len(s); i++ {
		if !isUpper(s[i]) || !isUpper(s[i+1]) || !isDigit(s[i+2]) || !isDigit(s[i+3]) || !wordStart(s, i) {
			continue
		}
		if e := groupsEnd(s, i+4, 11, 30, isUpperNum, func(c byte) bool { return c == ' ' }); e >= 0 {
			if validIBAN(s[i:e]) {
				out = append(out, [2]int{i, e})
			}
			i = e - 1
		}
	}
	return out
}

// groupsEnd matches (?:sep?char){lo,hi}\b at s[i:] and returns its end, or
// -1. Each group is forced (a separator is taken only before a char), so
// the greedy count backs off only to find the \b.
func groupsEnd(s string, i, lo, hi int, char, sep func(byte) bool) int {
	var ends [30]int
	n := 0
	for ; n < hi; n++ {
		if i+1 < len(s) && sep(s[i]) && char(s[i+1]) {
			i += 2
		} else if i < len(s) && char(s[i]) {
			i++
		} else {
			break
		}
		ends[n] = i
	}
	for ; n >= lo; n-- {
		if wordEnd(s, ends[n-1]) {
			return ends[n-1]
		}
	}
	return -1
}

// ssnFind: \b(\d{3})-(\d{2})-(\d{4})\b, valid ones.
func ssnFind(out [][2]int, s string) [][2]int {
	for i := 0; i+11 <= len(s); i++ {
		if isDigit(s[i]) && wordStart(s, i) && wordEnd(s, i+11) && isSSNShape(s[i:i+11]) {
			if validSSN(s[i : i+11]) {
				out = append(out, [2]int{i, i + 11})
			}
			i += 10
		}
	}
	return out
}

func isSSNShape(s string) bool {
	for i := 0; i < 11; i++ {
		if i == 3 || i == 6 {
			if s[i] != '-' {
				return false
			}
		} else if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// emailFind: [A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}
// The local part is the run of local characters before an '@' (it cannot
// contain one), so each '@' is tried once.
func emailFind(out [][2]int, s string) [][2]int {
	for pos := 0; ; {
		a := strings.IndexByte(s[pos:], '@')
		if a < 0 {
			return out
		}
		a += pos
		p := a
		for p > pos && isEmailLocal(s[p-1]) {
			p--
		}
		if e := emailDomainEnd(s, a+1); p < a && e >= 0 {
			out = append(out, [2]int{p, e})
			pos = e
		} else {
			pos = a + 1
		}
	}
}

func isEmailLocal(c byte) bool { return isAlnum(c) || strings.IndexByte("._%+-", c) >= 0 }
func isLabel(c byte) bool      { return isAlnum(c) || c == '-' }

// emailDomainEnd: labels are maximal runs (each is followed by a '.'), and
// the greedy (?:\.label)* backs off from the last label, so the match ends
// in the last label that starts with two letters, after its letters.
func emailDomainEnd(s string, i int) int {
	j := run(s, i, isLabel)
	if j == i {
		return -1
	}
	end := -1
	for j < len(s) && s[j] == '.' {
		k := j + 1
		if l := run(s, k, func(c byte) bool { return isUpper(c) || isLower(c) }); l-k >= 2 {
			end = l
		}
		if j = run(s, k, isLabel); j == k {
			break
		}
	}
	return end
}

// phoneFind: (?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)|\b\d{3})[ .-]\d{3}[ .-]\d{4}\b|\+[1-9]\d{7,14}\b
func phoneFind(out [][2]int, s string) [][2]int {
	for i := 0; i < len(s); i++ {
		// A digit starts a match only at \b (\b\d{3}).
		if c := s[i]; c != '+' && c != '(' && !(isDigit(c) && wordStart(s, i)) {
			continue
		}
		if e := phoneAt(s, i); e >= 0 {
			out = append(out, [2]int{i, e})
			i = e - 1
		}
	}
	return out
}

// phoneAt tries the alternatives at s[i:] in the regexp's order of
// preference and returns the end of the first that matches, or -1.
func phoneAt(s string, i int) int {
	if s[i] == '+' {
		// The country code: longest first, with a separator before without.
		d := run(s[:min(len(s), i+17)], i+1, isDigit) - (i + 1) // 16 tell "more than 15"
		for n := min(d, 3); n >= 1; n-- {
			q := i + 1 + n
			if q < len(s) && isPhoneSep(s[q]) {
				if e := phoneLocal(s, q+1); e >= 0 {
					return e
				}
			}
			if e := phoneLocal(s, q); e >= 0 {
				return e
			}
		}
		// \+[1-9]\d{7,14}\b: \b cannot fall inside the digits.
		if d >= 8 && d <= 15 && s[i+1] != '0' && wordEnd(s, i+1+d) {
			return i + 1 + d
		}
		return -1
	}
	return phoneLocal(s, i)
}

// phoneLocal: (?:\(\d{3}\)|\b\d{3})[ .-]\d{3}[ .-]\d{4}\b at s[i:].
func phoneLocal(s string, i int) int {
	switch {
	case i+5 <= len(s) && s[i] == '(' && digitsAt(s, i+1, 3) && s[i+4] == ')':
		i += 5
	case digitsAt(s, i, 3) && wordStart(s, i):
		i += 3
	default:
		return -1
	}
	if i+9 > len(s) || !isPhoneSep(s[i]) || !digitsAt(s, i+1, 3) || !isPhoneSep(s[i+4]) || !digitsAt(s, i+5, 4) || !wordEnd(s, i+9) {
		return -1
	}
	return i + 9
}

func isPhoneSep(c byte) bool { return c == ' ' || c == '.' || c == '-' }

// digitsAt reports n digits at s[i:].
func digitsAt(s string, i, n int) bool {
	return i+n <= len(s) && run(s[:i+n], i, isDigit) == i+n
}
