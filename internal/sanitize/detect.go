package sanitize

import (
	"bytes"
	"encoding/base64"
	"math"
	"math/big"
	"math/bits"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A detector finds secrets by their value, wherever they are. need is what
// its pattern requires of the value's shape (one pass over the value
// serves every detector), so most values, short words and numbers, are
// ruled out without being read again; find returns the [start, end) spans
// of s it finds (see find.go).
type detector struct {
	name string
	need shape
	find func(out [][2]int, s string) [][2]int // appends to out
}

// detectors in precedence order: when spans overlap the earlier one wins, so
// a JWT is reported as a JWT and not as a high-entropy string.
var detectors = []*detector{
	// "-----BEGIN" and "PRIVATE KEY-----": fifteen capitals.
	{"pem", shape{n: 26, upper: 15, seen: clDash}, pemFind},
	{"jwt", shape{n: 9, upper: 1, seen: clDot}, jwtFind},
	{"aws", shape{upper: 4, maxRun: 20}, awsFind},
	{"github", shape{maxRun: 33, seen: clUnderscore}, githubFind},
	{"basic", shape{n: 10, seen: clSpace | clB}, basicFind},
	{"bearer", shape{n: 15, seen: clSpace | clB}, bearerFind},
	{"card", shape{digits: 13, seen: clCardRun}, cardFind},
	{"iban", shape{upper: 2, digits: 2, alnum: 15, seen: clIBANHead}, ibanFind},
	{"ssn", shape{digits: 9, seen: clSSNGroups}, ssnFind},
	{"email", shape{n: 6, seen: clAt | clDot}, emailFind},
	{"phone", shape{digits: 8, seen: clPhoneTail}, phoneFind},
	{"entropy", shape{n: 24, seen: clGenerated}, entropyFind},
}

// shape is what one pass over a value learns: its length, counts of byte
// classes, the longest run of token characters and the classes seen (with
// digitGroups' classes when it has digits).
type shape struct {
	n, digits, upper, alnum, maxRun int
	seen                            uint32
}

// meets reports whether sh has at least what need asks for.
func (sh *shape) meets(need *shape) bool {
	// The classes first: most needs ask for one most values lack.
	return sh.seen&need.seen == need.seen && sh.n >= need.n && sh.digits >= need.digits && sh.upper >= need.upper &&
		sh.digits+sh.upper >= need.alnum && sh.maxRun >= need.maxRun
}

// minLen is the length under which no value meets need.
func (need *shape) minLen() int {
	return max(need.n, need.digits, need.upper, need.alnum, need.maxRun)
}

// Byte classes of shapeOf, one table lookup per byte.
const (
	clDigit = 1 << iota
	clUpper
	clLower
	clNonHex // a letter after f/F
	clToken  // isTokenChar
	clAt
	clDot
	clDash
	clUnderscore
	clSpace // RE2's \s: \t \n \f \r and space
	clKV    // ':', '=' or '>', the separators of keyValues
	clB     // 'b' or 'B', which "basic" and "bearer" start with
	// clGenerated: a run of 24+ token characters with a lower and an upper
	// case letter, a digit and a non-hex letter, the runs entropyFind tests.
	clGenerated

	// Classes of digitGroups: the groups of digits the card, IBAN, SSN and
	// phone patterns need. Dates, times, UUIDs and order numbers have their
	// digits and dashes but not these groups.
	clCardRun   // 13+ digits with at most one ' ' or '-' between two
	clIBANHead  // [A-Z]{2}\d{2}
	clSSNGroups // \d{3}-\d{2}-\d{4}
	clPhoneTail // \d{3}[ .-]\d{4}\b, or \+\d{8}
)

var byteClass = func() (t [256]uint16) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		switch {
		case isDigit(b):
			t[c] |= clDigit
		case isUpper(b):
			t[c] |= clUpper
		case isLower(b):
			t[c] |= clLower
		}
		if b > 'f' && b <= 'z' || b > 'F' && b <= 'Z' {
			t[c] |= clNonHex
		}
		if isTokenChar(b) {
			t[c] |= clToken
		}
		switch b {
		case '@':
			t[c] |= clAt
		case '.':
			t[c] |= clDot
		case '-':
			t[c] |= clDash
		case '_':
			t[c] |= clUnderscore
		case '\t', '\n', '\f', '\r', ' ':
			t[c] |= clSpace
		case ':', '=', '>':
			t[c] |= clKV
		case 'b', 'B':
			t[c] |= clB
		}
	}
	return t
}()

const generatedRun = clDigit | clUpper | clLower | clNonHex

// byteCounts packs what shapeOf counts of a byte: a digit in the low 32
// bits, an upper-case letter in the high 32, so one add counts both.
var byteCounts = func() (t [256]uint64) {
	for c := range t {
		if isDigit(byte(c)) {
			t[c] = 1
		}
		if isUpper(byte(c)) {
			t[c] = 1 << 32
		}
	}
	return t
}()

// runNeeds are the needs of the detectors that look at runs.
var runNeeds = func() (n []*shape) {
	for _, d := range detectors {
		if d.need.maxRun > 0 {
			n = append(n, &d.need)
		}
	}
	return n
}()

func shapeOf(s string) shape {
	// Locals, not fields of sh: the loop keeps them in registers.
	var seen uint32
	var counts uint64
	for i := 0; i < len(s); i++ {
		seen |= uint32(byteClass[s[i]])
		counts += byteCounts[s[i]]
	}
	sh := shape{n: len(s), digits: int(uint32(counts)), upper: int(counts >> 32), seen: seen}
	if sh.digits >= 8 || sh.digits >= 2 && sh.upper >= 2 && sh.digits+sh.upper >= 15 { // card, ssn, phone; iban
		sh.seen |= digitGroups(s)
	}
	// The length bounds the longest run; the runs themselves are read only
	// when a detector could use them.
	sh.maxRun = len(s)
	if len(s) >= 24 && seen&generatedRun == generatedRun || slices.ContainsFunc(runNeeds, sh.meets) {
		var generated bool
		sh.maxRun, generated = runs(s)
		if generated {
			sh.seen |= clGenerated
		}
	}
	return sh
}

// runs returns the longest run of token characters in s, and whether a run
// is generated-looking (see clGenerated).
func runs(s string) (maxRun int, generated bool) {
	var runCl uint16
	runLen := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			if c := byteClass[s[i]]; c&clToken != 0 {
				runLen++
				runCl |= c
				continue
			}
		}
		maxRun = max(maxRun, runLen)
		generated = generated || runLen >= 24 && runCl&generatedRun == generatedRun
		runLen, runCl = 0, 0
	}
	return maxRun, generated
}

// digitGroups reads the maximal runs of digits of s, each with the one
// byte between it and the run before (0 when none or more), and returns
// the classes they make: what each pattern needs of these runs, so never
// less than it matches (checkDetectors tests that).
func digitGroups(s string) (seen uint32) {
	chain := 0          // digits of this run and the runs joined to it by one ' ' or '-'
	prev, prev2 := 0, 0 // lengths of the run before and the one before it
	var prevSep byte    // the byte before the run before
	prevEnd := -2
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		n := i - start
		var sep byte
		if start-prevEnd == 1 {
			sep = s[start-1]
		}
		if sep == ' ' || sep == '-' {
			chain += n
		} else {
			chain = n
		}
		if chain >= 13 {
			seen |= clCardRun
		}
		if n >= 2 && start >= 2 && isUpper(s[start-1]) && isUpper(s[start-2]) {
			seen |= clIBANHead
		}
		if n == 4 && sep == '-' && prev == 2 && prevSep == '-' && prev2 == 3 {
			seen |= clSSNGroups
		}
		if n == 4 && isPhoneSep(sep) && prev == 3 && wordEnd(s, i) || n >= 8 && start > 0 && s[start-1] == '+' {
			seen |= clPhoneTail
		}
		prev2, prev, prevSep, prevEnd = prev, n, sep, i
	}
	return seen
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isTokenChar(c byte) bool {
	return isUpper(c) || isDigit(c) || isLower(c) || c == '+' || c == '/' || c == '_' || c == '=' || c == '-'
}

// entropyFind finds runs of 24+ token characters that look generated; a
// loop, as the equivalent regexp costs more than all other detectors.
// Generated means random over the token alphabet: high entropy, and the
// class (lower, upper, digit) changing from one letter or digit to the
// next as often as chance makes it, which words, paths, file names and
// identifiers do not (UTF-8-test, mgk25/ucs/examples, getUserV2Settings);
// base64 of an image, font or document is content, not a secret.
func entropyFind(out [][2]int, s string) [][2]int {
	for i := 0; i < len(s); {
		if !isTokenChar(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isTokenChar(s[j]) {
			j++
		}
		if j-i >= 24 && highEntropy(s[i:j]) && mixedClasses(s[i:j]) && !isContent(s, i, j) {
			out = append(out, [2]int{i, j})
		}
		i = j
	}
	return out
}

// mixedClasses reports a run whose neighbouring letters and digits change
// class (lower, upper, digit) at least 3 times in 10, as a random token's
// do about 6 times in 10 and words' once in 6 or fewer; separators
// (- _ / + =) start afresh.
func mixedClasses(run string) bool {
	pairs, changes := 0, 0
	prev := byte(0) // the class of the byte before, 0 after a separator
	for i := 0; i < len(run); i++ {
		cl := byte(0)
		switch c := run[i]; {
		case isLower(c):
			cl = 1
		case isUpper(c):
			cl = 2
		case isDigit(c):
			cl = 3
		}
		if prev != 0 && cl != 0 {
			pairs++
			if cl != prev {
				changes++
			}
		}
		prev = cl
	}
	return changes*10 >= pairs*3
}

// digestLabels name the digest algorithms that label a hash.
var digestLabels = []string{"sha1", "sha224", "sha256", "sha384", "sha512", "md5", "h1"}

// mediaPrefixes are the base64 of the first bytes of image, font, audio,
// video, document and archive formats (\x89PNG, \xff\xd8\xff, GIF8, RIFF,
// %PDF, wOFF, wOF2, OggS, ID3, PK\x03\x04, <svg, <?xm).
var mediaPrefixes = []string{"iVBORw0KGg", "/9j/", "R0lGOD", "UklGR", "JVBERi0", "d09GR", "d09GMg", "T2dnUw",
	"SUQz", "UEsDB", "PHN2Zy", "PD94bW"}

// isContent reports that s[i:j] is random by design, not a secret: a
// multipart boundary, a digest labelled with its algorithm (sha512-… in
// npm's integrity, h1:… in go.sum, SHA256:… fingerprints), or
// base64-encoded media (after "base64,", as in a data URI, or starting as
// an image, font or document does).
func isContent(s string, i, j int) bool {
	if strings.HasSuffix(s[:i], "base64,") || hasPrefixFoldASCII(s[i:j], "boundary=") {
		return true
	}
	for _, l := range digestLabels {
		if hasPrefixFoldASCII(s[i:j], l+"-") || hasPrefixFoldASCII(s[i:j], l+"=") ||
			len(s[:i]) > len(l) && s[i-1] == ':' && hasPrefixFoldASCII(s[i-1-len(l):i-1], l) {
			return true
		}
	}
	for _, p := range mediaPrefixes {
		if strings.HasPrefix(s[i:j], p) {
			return true
		}
	}
	return false
}

func findDetector(name string) *detector {
	for _, d := range detectors {
		if d.name == name {
			return d
		}
	}
	return nil
}

func detectorNames() []string {
	var n []string
	for _, d := range detectors {
		n = append(n, d.name)
	}
	return n
}

func b64url(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// validJWT wants a header that decodes to a JSON object; the claims and the
// signature go with it, so claims never survive in any encoding.
func validJWT(s string) bool {
	h, err := b64url(strings.SplitN(s, ".", 2)[0])
	return err == nil && len(h) > 1 && h[0] == '{'
}

func validBasic(s string) bool {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	}
	// user:password in printable text; English words after "basic" ("Basic
	// Options") decode to bytes that are not.
	i := bytes.IndexByte(b, ':')
	return err == nil && i > 0 && utf8.Valid(b) && !bytes.ContainsFunc(b, unicode.IsControl)
}

func digitsOf(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

func validCard(s string) bool {
	d := digitsOf(s)
	if len(d) < 13 || len(d) > 19 {
		return false
	}
	sum := 0
	for i := len(d) - 1; i >= 0; i-- {
		n := int(d[i] - '0')
		if (len(d)-1-i)%2 == 1 {
			if n *= 2; n > 9 {
				n -= 9
			}
		}
		sum += n
	}
	return sum%10 == 0
}

func validIBAN(s string) bool {
	s = strings.ReplaceAll(s, " ", "")
	if len(s) < 15 || len(s) > 34 {
		return false
	}
	// Move the country and check digits to the end, letters become 10..35.
	var b strings.Builder
	for _, c := range s[4:] + s[:4] {
		switch {
		case c >= '0' && c <= '9':
			b.WriteRune(c)
		case c >= 'A' && c <= 'Z':
			b.WriteString(big.NewInt(int64(c - 'A' + 10)).String())
		default:
			return false
		}
	}
	n, ok := new(big.Int).SetString(b.String(), 10)
	return ok && new(big.Int).Mod(n, big.NewInt(97)).Int64() == 1
}

// validSSN applies the SSA's rules to ddd-dd-dddd: no area 000, 666 or
// 9xx, no group 00, no serial 0000.
func validSSN(s string) bool {
	area, group, serial := s[0:3], s[4:6], s[7:11]
	return area != "000" && area != "666" && area[0] != '9' && group != "00" && serial != "0000"
}

// highEntropy accepts tokens that look generated: mixed letters and digits,
// at least 4 bits per character. Hex strings (hashes, ids) and UUIDs are
// left alone: they are far more often content hashes than secrets.
func highEntropy(s string) bool {
	var lower, upper, digit, nonHex bool
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
			lower = true
			nonHex = nonHex || c > 'f'
		case c >= 'A' && c <= 'Z':
			upper = true
			nonHex = nonHex || c > 'F'
		case c >= '0' && c <= '9':
			digit = true
		}
	}
	if !nonHex || !digit || !(lower && upper) {
		return false
	}
	// Token characters are ASCII; under 16 distinct ones the entropy is
	// below 4 bits whatever their frequencies.
	var freq [128]uint32
	var present [2]uint64 // the bytes seen, so the sum visits only them
	distinct := 0
	for i := 0; i < len(s); i++ {
		c := s[i] & 0x7f
		if freq[c]++; freq[c] == 1 {
			distinct++
			present[c>>6] |= 1 << (c & 63)
		}
	}
	if distinct < 16 {
		return false
	}
	// The sum over the bytes seen in ascending order, as over all of freq,
	// but each small frequency's logarithm is taken once: most characters
	// of a token come once or twice.
	var logs [32]float64 // log2(f/len(s)) by f; 0 is not yet (f < len(s))
	h := 0.0
	for w, set := range present {
		for ; set != 0; set &= set - 1 {
			f := freq[w*64+bits.TrailingZeros64(set)]
			p := float64(f) / float64(len(s))
			var l float64
			if f < uint32(len(logs)) && logs[f] != 0 {
				l = logs[f]
			} else if l = math.Log2(p); f < uint32(len(logs)) {
				logs[f] = l
			}
			h -= p * l
		}
	}
	return h >= 4.0
}
