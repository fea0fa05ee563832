package sanitize

import (
	"encoding/base64"
	"math"
	"math/big"
	"regexp"
	"strings"
)

// A detector finds secrets by their value, wherever they are. find returns
// [start, end) spans of s; minLen (the shortest text its pattern matches)
// and quick are cheap tests that rule s out early, as most values are short
// words and numbers.
type detector struct {
	name   string
	minLen int
	quick  func(s string) bool
	find   func(s string) [][2]int
}

func contains(sub string) func(string) bool {
	return func(s string) bool { return strings.Contains(s, sub) }
}

// reFind returns the spans of group g of every match that valid accepts.
func reFind(re *regexp.Regexp, g int, valid func(string) bool) func(string) [][2]int {
	return func(s string) [][2]int {
		var out [][2]int
		var ms [][]int
		if g == 0 {
			ms = re.FindAllStringIndex(s, -1)
		} else {
			ms = re.FindAllStringSubmatchIndex(s, -1)
		}
		for _, m := range ms {
			if m[2*g] < 0 {
				continue
			}
			sp := [2]int{m[2*g], m[2*g+1]}
			if valid == nil || valid(s[sp[0]:sp[1]]) {
				out = append(out, sp)
			}
		}
		return out
	}
}

var (
	pemRe    = regexp.MustCompile(`-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?:[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY-----|[\s\S]*)`)
	jwtRe    = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*`)
	awsRe    = regexp.MustCompile(`\b(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA)[0-9A-Z]{16}\b`)
	githubRe = regexp.MustCompile(`\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b`)
	basicRe  = regexp.MustCompile(`(?i)\bbasic\s+([A-Za-z0-9+/]{4,}={0,2})`)
	bearerRe = regexp.MustCompile(`(?i)\bbearer\s+([A-Za-z0-9._~+/-]{8,}=*)`)
	cardRe   = regexp.MustCompile(`\b[2-6](?:[ -]?\d){12,18}\b`)
	ibanRe   = regexp.MustCompile(`\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b`)
	ssnRe    = regexp.MustCompile(`\b(\d{3})-(\d{2})-(\d{4})\b`)
	emailRe  = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}`)
	phoneRe  = regexp.MustCompile(`(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)|\b\d{3})[ .-]\d{3}[ .-]\d{4}\b|\+[1-9]\d{7,14}\b`)
)

// detectors in precedence order: when spans overlap the earlier one wins, so
// a JWT is reported as a JWT and not as a high-entropy string.
var detectors = []*detector{
	{"pem", 26, contains("-----BEGIN"), reFind(pemRe, 0, nil)},
	{"jwt", 9, contains("eyJ"), reFind(jwtRe, 0, validJWT)},
	{"aws", 20, awsQuick, reFind(awsRe, 0, nil)},
	{"github", 33, githubQuick, reFind(githubRe, 0, nil)},
	{"basic", 10, func(s string) bool { return strings.Contains(s, "asic") || strings.Contains(s, "ASIC") }, reFind(basicRe, 1, validBasic)},
	{"bearer", 15, func(s string) bool { return strings.Contains(s, "earer") || strings.Contains(s, "EARER") }, reFind(bearerRe, 1, nil)},
	{"card", 13, cardQuick, reFind(cardRe, 0, validCard)},
	{"iban", 15, ibanQuick, reFind(ibanRe, 0, validIBAN)},
	{"ssn", 11, ssnQuick, reFind(ssnRe, 0, validSSN)},
	{"email", 6, contains("@"), reFind(emailRe, 0, nil)},
	{"phone", 9, phoneQuick, reFind(phoneRe, 0, nil)},
	{"entropy", 24, func(string) bool { return true }, entropyFind},
}

var awsPrefixes = []string{"AKIA", "ASIA", "ABIA", "ACCA", "AIDA", "AROA"}

// awsQuick looks for a key prefix at each 'A' only: most values have none.
func awsQuick(s string) bool {
	for i := strings.IndexByte(s, 'A'); i >= 0 && i+20 <= len(s); {
		for _, p := range awsPrefixes {
			if strings.HasPrefix(s[i:], p) {
				return true
			}
		}
		j := strings.IndexByte(s[i+1:], 'A')
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}

// githubQuick wants a token prefix: "gh" alone is in too many words.
func githubQuick(s string) bool {
	for i := strings.Index(s, "gh"); i >= 0 && i+4 <= len(s); {
		if strings.IndexByte("pousr", s[i+2]) >= 0 && s[i+3] == '_' {
			return true
		}
		j := strings.Index(s[i+2:], "gh")
		if j < 0 {
			break
		}
		i += 2 + j
	}
	return strings.Contains(s, "github_pat_")
}

// ssnQuick wants the ddd-dd-dddd shape around a dash: dates and UUIDs
// have dashes and digits, but not in that shape.
func ssnQuick(s string) bool {
	for i := strings.IndexByte(s, '-'); i >= 0 && i+8 <= len(s); {
		if i >= 3 && isDigit(s[i-3]) && isDigit(s[i-2]) && isDigit(s[i-1]) && isDigit(s[i+1]) && isDigit(s[i+2]) &&
			s[i+3] == '-' && isDigit(s[i+4]) && isDigit(s[i+5]) && isDigit(s[i+6]) && isDigit(s[i+7]) {
			return true
		}
		j := strings.IndexByte(s[i+1:], '-')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// ibanQuick wants two capitals then two digits somewhere.
func ibanQuick(s string) bool {
	for i := 0; i+4 <= len(s); i++ {
		if isUpper(s[i]) && isUpper(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			return true
		}
	}
	return false
}

// cardQuick wants 13 digits in a row, single spaces or dashes allowed.
func cardQuick(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isDigit(c):
			if n++; n >= 13 {
				return true
			}
		case (c == ' ' || c == '-') && i > 0 && isDigit(s[i-1]):
		default:
			n = 0
		}
	}
	return false
}

// phoneQuick wants "+<digit>" or "ddd", one or two of " .-)", "ddd", one of " .-".
func phoneQuick(s string) bool {
	for i := 0; i+8 <= len(s); i++ {
		if s[i] == '+' && isDigit(s[i+1]) {
			return true
		}
		if !isDigit(s[i]) || !isDigit(s[i+1]) || !isDigit(s[i+2]) || !isPhoneSep(s[i+3]) {
			continue
		}
		j := i + 4
		if isPhoneSep(s[j]) {
			j++
		}
		if j+4 <= len(s) && isDigit(s[j]) && isDigit(s[j+1]) && isDigit(s[j+2]) && isPhoneSep(s[j+3]) {
			return true
		}
	}
	return false
}

func isPhoneSep(c byte) bool { return c == ' ' || c == '.' || c == '-' || c == ')' }

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isTokenChar(c byte) bool {
	return isUpper(c) || isDigit(c) || (c >= 'a' && c <= 'z') || c == '+' || c == '/' || c == '_' || c == '=' || c == '-'
}

// entropyFind finds runs of 24+ token characters that look generated; a
// loop, as the equivalent regexp costs more than all other detectors.
func entropyFind(s string) [][2]int {
	var out [][2]int
	for i := 0; i < len(s); {
		if !isTokenChar(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isTokenChar(s[j]) {
			j++
		}
		if j-i >= 24 && highEntropy(s[i:j]) {
			out = append(out, [2]int{i, j})
		}
		i = j
	}
	return out
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
	return err == nil && strings.Contains(string(b), ":")
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

// validSSN applies the SSA's rules: no area 000, 666 or 9xx, no group 00,
// no serial 0000.
func validSSN(s string) bool {
	m := ssnRe.FindStringSubmatch(s)
	return m != nil && m[1] != "000" && m[1] != "666" && m[1][0] != '9' && m[2] != "00" && m[3] != "0000"
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
	return h >= 4.0
}
