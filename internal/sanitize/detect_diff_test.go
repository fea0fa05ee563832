package sanitize

import (
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// The regexps the detectors' finders replaced (find.go). A finder must
// return what FindAll of its regexp returns, filtered by its validator.
var detectorRegexps = map[string]struct {
	re    *regexp.Regexp
	group int
	valid func(string) bool
}{
	"pem":    {regexp.MustCompile(`-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?:[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY-----|[\s\S]*)`), 0, nil},
	"jwt":    {regexp.MustCompile(`eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*`), 0, validJWT},
	"aws":    {regexp.MustCompile(`\b(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA)[0-9A-Z]{16}\b`), 0, nil},
	"github": {regexp.MustCompile(`\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b`), 0, nil},
	"basic":  {regexp.MustCompile(`(?i)\bbasic\s+([A-Za-z0-9+/]{4,}={0,2})`), 1, validBasic},
	"bearer": {regexp.MustCompile(`(?i)\bbearer\s+([A-Za-z0-9._~+/-]{8,}=*)`), 1, nil},
	"card":   {regexp.MustCompile(`\b[2-6](?:[ -]?\d){12,18}\b`), 0, validCard},
	"iban":   {regexp.MustCompile(`\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b`), 0, validIBAN},
	"ssn":    {regexp.MustCompile(`\b(\d{3})-(\d{2})-(\d{4})\b`), 0, validSSN},
	"email":  {regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}`), 0, nil},
	"phone":  {regexp.MustCompile(`(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)|\b\d{3})[ .-]\d{3}[ .-]\d{4}\b|\+[1-9]\d{7,14}\b`), 0, nil},
}

// regexpFind is the old finder: every match of group g that valid accepts.
func regexpFind(name, s string) (found, raw [][2]int) {
	r := detectorRegexps[name]
	for _, m := range r.re.FindAllStringSubmatchIndex(s, -1) {
		if m[2*r.group] < 0 {
			continue
		}
		sp := [2]int{m[2*r.group], m[2*r.group+1]}
		raw = append(raw, sp)
		if r.valid == nil || r.valid(s[sp[0]:sp[1]]) {
			found = append(found, sp)
		}
	}
	return found, raw
}

// checkDetectors compares every finder with its regexp on s, and checks
// that a detector's need never rules out a value its regexp matches.
func checkDetectors(t *testing.T, s string) {
	t.Helper()
	sh := shapeOf(s)
	for _, d := range detectors {
		if d.name == "entropy" {
			if got := entropyFind(nil, s); len(got) > 0 && !sh.meets(&d.need) {
				t.Fatalf("entropy: need rules out %q, which has %v", s, got)
			}
			for run := range strings.FieldsFuncSeq(s, func(r rune) bool { return r >= 0x80 || !isTokenChar(byte(r)) }) {
				if got, want := highEntropy(run), plainEntropy(run) >= 4.0; isToken(run) && got != want {
					t.Fatalf("highEntropy(%q) = %v, its sum says %v", run, got, want)
				}
				if got, want := mixedClasses(run), plainMixed(run); got != want {
					t.Fatalf("mixedClasses(%q) = %v, counting the pieces says %v", run, got, want)
				}
			}
			continue
		}
		want, raw := regexpFind(d.name, s)
		if got := d.find(nil, s); !slices.Equal(got, want) {
			t.Fatalf("%s on %q: finder %v, regexp %v", d.name, s, got, want)
		}
		if len(raw) > 0 && !sh.meets(&d.need) {
			t.Fatalf("%s: need rules out %q, which the regexp matches at %v", d.name, s, raw)
		}
	}
}

// plainEntropy is the Shannon entropy of s in bits per byte, summed over
// the byte values in order as highEntropy sums it: its threshold must not
// move by a rounding.
func plainEntropy(s string) float64 {
	var freq [256]int
	for i := 0; i < len(s); i++ {
		freq[s[i]]++
	}
	h := 0.0
	for _, f := range freq {
		if f > 0 {
			p := float64(f) / float64(len(s))
			h -= p * math.Log2(p)
		}
	}
	return h
}

var alnumRe = regexp.MustCompile(`[A-Za-z0-9]+`)

// plainMixed is mixedClasses by splitting run into its alphanumeric pieces
// and counting class changes within each with unicode's predicates.
func plainMixed(run string) bool {
	class := func(r rune) int {
		switch {
		case unicode.IsLower(r):
			return 1
		case unicode.IsUpper(r):
			return 2
		}
		return 3
	}
	pairs, changes := 0, 0
	for _, piece := range alnumRe.FindAllString(run, -1) {
		for i := 1; i < len(piece); i++ {
			pairs++
			if class(rune(piece[i])) != class(rune(piece[i-1])) {
				changes++
			}
		}
	}
	return float64(changes) >= 0.3*float64(pairs)
}

// isToken reports a run of token characters with the mixed classes
// highEntropy asks for before it sums.
func isToken(s string) bool {
	var lower, upper, digit, nonHex bool
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isTokenChar(c) {
			return false
		}
		lower, upper, digit = lower || isLower(c), upper || isUpper(c), digit || isDigit(c)
		nonHex = nonHex || c > 'f' && c <= 'z' || c > 'F' && c <= 'Z'
	}
	return lower && upper && digit && nonHex
}

// Pieces that make the detectors' patterns, their near misses and the
// Unicode case folds their (?i) regexps accept.
var detectorPieces = []string{
	"a", "Z", "x", "0", "1", "7", "9", "5", "-", "--", " ", "  ", ".", "@", "_", "+", "/", "=", "==", "(", ")", "\n", "\t", ":", ",",
	"eyJ", "eyJhbGciOiJIUzI1NiJ9", "-----BEGIN", "PRIVATE KEY", "-----END", "-----", " RSA ", "-----BEGIN EC PRIVATE KEY-----", "-----END PRIVATE KEY-----", "AKIA", "ASIA", "gh", "ghp_", "p_",
	"github_pat_", "basic ", "Basic", "BASIC", "bearer", "Bearer ", "ba\u017fic", "\u017f", "\u212a", "é", "\xff", "\xe2",
	"4111", "1111", "0000", "555", "415", "078-05-1120", "666", "GB82", "DE89", "WEST", "com", "example", ".org", "jane.doe",
	"1234567890", "ABCDEFGHIJKLMNOP", "abcdefghijklmnopqrstuvwxyz0123456789", "dXNlcjpwYXNz",
	"2026-11-24T10:14:49Z", "7c9e6679-7425-40de-944b-e07fc1f90ae7", "ORD-2026-000123", "12", "123", "1234", "AA10", "q", "Qz", "kW",
}

func randomDetectorInput(r *rand.Rand) string {
	var b strings.Builder
	for n := r.IntN(24); n >= 0; n-- {
		b.WriteString(detectorPieces[r.IntN(len(detectorPieces))])
	}
	return b.String()
}

// TestFindersMatchRegexps: the hand-written finders agree with the
// regexps they replaced on the corpora and on random inputs built from the
// patterns' pieces.
func TestFindersMatchRegexps(t *testing.T) {
	inputs := []string{secCard, secCard2, secIBAN, secIBAN2, secEmail, secPhone, secPhone2, secSSN, secAWS, secGitHub,
		secEntropy, "Bearer " + secBearer, "Basic " + secBasic, secPEM, "key:\n" + secPEM + "\n", secJWT, "x " + secJWT + " y",
		"-----BEGIN PRIVATE KEY-----\nunterminated", "(415) 555-0132", "+1(415) 555-0132", "+14155550132", "+1415 555 0132",
		"a@b.com9", "a@b.com.", "x@a.b.c9", "a@b@c.com", "jane@x.example.com-1.de", "4111 1111 1111 1111 1111",
		"ghp_" + strings.Repeat("a", 300), strings.Repeat("eyJ", 2000), strings.Repeat("1", 5000), "+" + strings.Repeat("1", 5000), strings.Repeat("AKIA", 2000), strings.Repeat("-----BEGIN", 1000),
		"github_pat_" + strings.Repeat("A", 22) + "_x", "bAsIc " + secBasic, "Bearer\u212a" + secBearer,
	}
	for _, b := range benignCorpus(t) {
		inputs = append(inputs, b.value)
	}
	for _, tc := range secretCorpus(t) {
		inputs = append(inputs, tc.ex.GetRequest().GetTarget(), string(tc.ex.GetRequest().GetBody()))
		for _, h := range tc.ex.GetRequest().GetHeaders() {
			inputs = append(inputs, h.Value)
		}
	}
	for _, s := range inputs {
		checkDetectors(t, s)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 30_000 {
		checkDetectors(t, randomDetectorInput(r))
	}
}

// FuzzFinders: any input, the finders agree with the regexps.
func FuzzFinders(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		f.Add(randomDetectorInput(r))
	}
	f.Add(secPEM + " " + secJWT + " Basic " + secBasic + " " + secEmail + " " + secPhone + " " + secCard + " " + secIBAN)
	f.Fuzz(func(t *testing.T, s string) {
		checkDetectors(t, s)
	})
}
