package http1

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxStartLine bounds the start lines resynchronisation looks for.
const maxStartLine = 8 << 10

// parseHead parses a complete head (start line, fields, empty line) into a
// new message and picks the body framing.
func (p *Parser) parseHead(block []byte) error {
	// One string per head: every name and value is a substring of it.
	s := string(block)
	m, room := p.spare, []Header(nil)
	if m != nil {
		p.spare, room = nil, m.Headers[:cap(m.Headers)]
		clear(room) // let the old head's string go
		*m = Message{}
	} else {
		a := &headAlloc{}
		m, room = &a.m, a.headers[:]
	}
	// Protobuf strings must be UTF-8 and the wire may carry any byte
	// (obs-text in a value, a raw byte in a target): checked once per head.
	if !utf8.ValidString(s) {
		s, m.TextRepaired = strings.ToValidUTF8(s, "\uFFFD"), true
	}
	line, rest := nextLine(s)
	if p.response {
		if err := parseStatusLine(m, line); err != nil {
			return fmt.Errorf("parse status line: %w", err)
		}
	} else if err := parseRequestLine(m, line); err != nil {
		return fmt.Errorf("parse request line: %w", err)
	}
	var err error
	if m.Headers, err = p.parseFields(rest, room); err != nil {
		return fmt.Errorf("parse header: %w", err)
	}
	p.msg = m
	return p.frame()
}

// headAlloc holds a message and the fields of a small head in one
// allocation: two per message were a tenth of the agent's allocations.
type headAlloc struct {
	m       Message
	headers [8]Header
}

// frame sets the state that reads the body of p.msg (RFC 9112, 6.3).
func (p *Parser) frame() error {
	m := p.msg
	if p.response {
		method := p.method()
		c := m.StatusCode
		if c < 200 || c == 204 || c == 304 || method == "HEAD" || method == "CONNECT" && c < 300 {
			p.state = stIdle
			return nil
		}
	}
	chunked, hasTE := transferCoding(m.Headers)
	switch {
	case chunked:
		p.state = stChunkSize
		return nil
	case hasTE && !p.response:
		return fmt.Errorf("transfer-encoding: %w: not ending in chunked", ErrMalformed)
	case hasTE:
		p.state = stCloseBody
		return nil
	}
	n, ok, err := contentLength(m.Headers)
	switch {
	case err != nil:
		return err
	case ok && n > 0:
		m.Body = newBody(int(min(n, int64(p.cfg.BodyCap))))
		p.state, p.remain = stBody, n
	case ok || !p.response:
		p.state = stIdle
	default:
		p.state = stCloseBody
	}
	return nil
}

// transferCoding reports whether the message has Transfer-Encoding fields
// and whether their last coding is chunked.
func transferCoding(hs []Header) (chunked, present bool) {
	for _, h := range hs {
		if !equalFold(h.Name, "Transfer-Encoding") {
			continue
		}
		for c := range strings.SplitSeq(h.Value, ",") {
			if c = strings.TrimSpace(c); c != "" {
				present, chunked = true, equalFold(c, "chunked")
			}
		}
	}
	return chunked, present
}

// contentLength returns the Content-Length of the message, rejecting values
// that are invalid or disagree (a request smuggling signal).
func contentLength(hs []Header) (n int64, ok bool, err error) {
	for _, h := range hs {
		if !equalFold(h.Name, "Content-Length") {
			continue
		}
		for v := range strings.SplitSeq(h.Value, ",") {
			u, perr := strconv.ParseUint(strings.TrimSpace(v), 10, 63)
			if perr != nil || ok && int64(u) != n {
				return 0, false, fmt.Errorf("content-length: %w", ErrMalformed)
			}
			n, ok = int64(u), true
		}
	}
	return n, ok, nil
}

// parseChunkSize parses "1a;ext=v\r\n" to 0x1a, ignoring extensions.
func parseChunkSize(line []byte) (int64, error) {
	line = bytes.TrimRight(line, "\r\n")
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	n, err := strconv.ParseUint(string(bytes.TrimRight(line, " \t")), 16, 63)
	if err != nil {
		return 0, fmt.Errorf("chunk size: %w", ErrMalformed)
	}
	return int64(n), nil
}

func parseRequestLine(m *Message, line string) error {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !isToken(method) || !isTarget(target) || !isProto(proto) {
		return ErrMalformed
	}
	m.Method, m.Target, m.Proto = method, target, proto
	return nil
}

func parseStatusLine(m *Message, line string) error {
	proto, rest, _ := strings.Cut(line, " ")
	if !isProto(proto) || len(rest) < 3 || len(rest) > 3 && rest[3] != ' ' ||
		!isDigit(rest[0]) || rest[0] == '0' || !isDigit(rest[1]) || !isDigit(rest[2]) {
		return ErrMalformed
	}
	m.Proto = proto
	m.StatusCode = int(rest[0]-'0')*100 + int(rest[1]-'0')*10 + int(rest[2]-'0')
	if len(rest) > 3 {
		m.Reason = rest[4:]
	}
	return nil
}

// parseFields parses header or trailer lines up to the empty line that ends
// them, into room when it is large enough. Each line is scanned once: the
// name is checked while looking for the colon, the value while trimming it.
func (p *Parser) parseFields(s string, room []Header) ([]Header, error) {
	n := strings.Count(s, "\n") - 1
	if n > p.cfg.MaxHeaders {
		return nil, fmt.Errorf("%w: over %d", ErrTooManyHeaders, p.cfg.MaxHeaders)
	}
	hs := room[:0]
	if n > cap(room) {
		hs = make([]Header, 0, n)
	}
	for {
		var line string
		line, s = nextLine(s)
		if line == "" {
			return hs, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			// Obsolete line folding continues the previous value; RFC 9112
			// 5.2 allows replacing it with a space.
			if len(hs) == 0 {
				return nil, fmt.Errorf("%w: continuation line first", ErrMalformed)
			}
			v, ok := fieldValue(line)
			if !ok {
				return nil, ErrMalformed
			}
			hs[len(hs)-1].Value += " " + v
			continue
		}
		colon := 0
		for colon < len(line) && tokenBytes[line[colon]] {
			colon++
		}
		if colon == 0 || colon == len(line) || line[colon] != ':' {
			return nil, ErrMalformed
		}
		value, ok := fieldValue(line[colon+1:])
		if !ok {
			return nil, ErrMalformed
		}
		hs = append(hs, Header{Name: line[:colon], Value: value})
	}
}

// fieldValue trims the optional whitespace around a field value, and
// reports false when the value holds a CR or NUL.
func fieldValue(v string) (string, bool) {
	for i := 0; i < len(v); i++ {
		// One comparison per byte in the common case.
		if c := v[i]; c <= '\r' && (c == '\r' || c == 0) {
			return "", false
		}
	}
	return trimOWS(v), true
}

// nextLine splits s after its first LF, dropping the line's CRLF or LF.
func nextLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		line, rest = s, ""
	} else {
		line, rest = s[:i], s[i+1:]
	}
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, rest
}

// trimOWS drops leading and trailing spaces and tabs.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func isProto(s string) bool {
	return len(s) == 8 && strings.HasPrefix(s, "HTTP/1.") && isDigit(s[7])
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenBytes[s[i]] {
			return false
		}
	}
	return true
}

// tokenBytes marks the bytes of RFC 9110 tokens.
var tokenBytes = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
	}
	return t
}()

func isTarget(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTargetByte(s[i]) {
			return false
		}
	}
	return true
}

// isTargetByte accepts visible ASCII and, as servers do, raw non-ASCII bytes.
func isTargetByte(c byte) bool { return c > ' ' && c != 0x7f }

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }

// equalFold compares ASCII strings case-insensitively, without the Unicode
// work strings.EqualFold does.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if l := x | 0x20; l != y|0x20 || l < 'a' || l > 'z' {
			return false
		}
	}
	return true
}

// knownMethods are the methods whose names end an uppercase run found while
// resynchronising, so that "}GET" and "XGET" both give GET.
var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// IndexRequestStart returns the offset in b of the first plausible request
// line, "METHOD SP target SP HTTP/1.x" ended by LF, or -1. The method is an
// uppercase run; when the run ends with a well-known method but is not one,
// the line starts at that method, since the bytes before it likely end the
// previous message.
func IndexRequestStart(b []byte) int {
	const anchor = " HTTP/1."
	for off := 0; ; {
		k := bytes.Index(b[off:], []byte(anchor))
		if k < 0 {
			return -1
		}
		k += off
		off = k + 1
		// Version digit, then LF or CRLF.
		v := k + len(anchor)
		if v >= len(b) || !isDigit(b[v]) {
			continue
		}
		lf := v + 1
		if lf < len(b) && b[lf] == '\r' {
			lf++
		}
		if lf >= len(b) {
			return -1
		}
		if b[lf] != '\n' {
			continue
		}
		lo := max(0, lf+1-maxStartLine)
		t := k
		for t > lo && isTargetByte(b[t-1]) {
			t--
		}
		if t == k || t-1 < lo || b[t-1] != ' ' {
			continue
		}
		end := t - 1
		m := end
		for m > lo && isUpper(b[m-1]) {
			m--
		}
		if m == end {
			continue
		}
		return m + knownSuffix(string(b[m:end]))
	}
}

// knownSuffix returns where the longest well-known method ending run begins,
// or 0 when run is itself one or none ends it.
func knownSuffix(run string) int {
	best := 0
	for _, m := range knownMethods {
		if m == run {
			return 0
		}
		if strings.HasSuffix(run, m) && (best == 0 || len(run)-len(m) < best) {
			best = len(run) - len(m)
		}
	}
	return best
}

// IndexResponseStart returns the offset in b of the first plausible status
// line, "HTTP/1.x NNN" ended by LF, or -1.
func IndexResponseStart(b []byte) int {
	const anchor = "HTTP/1."
	for off := 0; ; {
		k := bytes.Index(b[off:], []byte(anchor))
		if k < 0 {
			return -1
		}
		k += off
		off = k + 1
		if k+12 >= len(b) {
			return -1
		}
		if !isDigit(b[k+7]) || b[k+8] != ' ' || !isDigit(b[k+9]) || b[k+9] == '0' ||
			!isDigit(b[k+10]) || !isDigit(b[k+11]) || strings.IndexByte(" \r\n", b[k+12]) < 0 {
			continue
		}
		lf := bytes.IndexByte(b[k+12:], '\n')
		if lf < 0 {
			return -1
		}
		if lf+13 <= maxStartLine {
			return k
		}
	}
}
