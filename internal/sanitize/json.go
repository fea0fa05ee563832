package sanitize

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// jsonWalk scans JSON text in place and decides each string and number
// leaf where it stands: nothing is decoded into values, plain names and
// strings are substrings of the body, and untouched bytes stay as they
// were. It accepts what jsontext accepts with duplicate names and invalid
// UTF-8 allowed (json_diff_test.go checks it against jsontext), so a body
// that is not JSON is scanned as text, as before.
type jsonWalk struct {
	sc     *scan
	s      string // the body
	i      int    // where the next token starts
	edits  []edit
	quoted []byte // the quoted replacements the edits point into
}

// edit replaces the body from start to w.i with repl.
func (w *jsonWalk) edit(start int, repl []byte) {
	w.edits = append(w.edits, edit{start, w.i, repl})
}

// jsonMaxDepth is jsontext's nesting limit: deeper input is a syntax error
// there, so it is one here too (limits.max_depth is usually far lower).
const jsonMaxDepth = 10000

type jsonError struct {
	off  int
	what string
}

func (e *jsonError) Error() string { return fmt.Sprintf("json: %s at offset %d", e.what, e.off) }

func (w *jsonWalk) fail(what string) error { return &jsonError{w.i, what} }

func (sc *scan) json(loc, key string, b []byte, depth int, forced *rule) ([]byte, error) {
	// The scan's buffers, taken so that JSON in a string gets its own;
	// splice copies what the edits hold, so they can be given back.
	w := &jsonWalk{sc: sc, s: string(b), edits: sc.edits, quoted: sc.quoted}
	sc.edits, sc.quoted = nil, nil
	// Several top-level values (JSON lines) are scanned one after another;
	// as in jsontext, nothing needs to separate them.
	for w.space(); w.i < len(w.s); w.space() {
		if err := w.value(where{base: loc}, key, depth, forced); err != nil {
			return nil, err
		}
	}
	out := splice(b, w.edits)
	sc.edits, sc.quoted = w.edits[:0], w.quoted[:0]
	return out, nil
}

func (w *jsonWalk) space() {
	for w.i < len(w.s) && (w.s[w.i] == ' ' || w.s[w.i] == '\n' || w.s[w.i] == '\r' || w.s[w.i] == '\t') {
		w.i++
	}
}

// value scans the value at w.i; forced is a deny rule inherited from an
// enclosing key.
func (w *jsonWalk) value(at where, key string, depth int, forced *rule) error {
	if w.i == len(w.s) {
		return w.fail("unexpected end")
	}
	switch c := w.s[w.i]; {
	case c == '{' || c == '[':
		return w.container(at, key, depth, forced)
	case c == '"':
		return w.stringLeaf(at, key, depth, forced)
	case c == '-' || isDigit(c):
		return w.numberLeaf(at, key, forced)
	default:
		return w.literal()
	}
}

// container scans an object or an array. An array's elements share one
// location and the array's key; a member's location ends in its name.
func (w *jsonWalk) container(at where, key string, depth int, forced *rule) error {
	sc := w.sc
	if depth++; depth > sc.s.limits.MaxDepth {
		return &limitError{ReasonTooDeep}
	}
	if depth > jsonMaxDepth {
		return w.fail("too deep")
	}
	object := w.s[w.i] == '{'
	loc := sc.locString(at)
	// Decided once here rather than at each member.
	noLoc := at.noLoc || !sc.s.locMayMatchUnder(loc)
	elem := where{}
	if !object {
		elem = where{base: loc + "[]", noLoc: noLoc}
	}
	return w.members(object, func(name string) error {
		k, l, f := key, elem, forced
		if object {
			k, l = name, where{base: loc, name: name, named: true, noLoc: noLoc}
		}
		// Leaves are decided by field; containers by their key here.
		if c := w.s[w.i]; f == nil && object && (c == '{' || c == '[') {
			// Built once here, it is also the base of the container's members.
			l = where{base: sc.locString(l), noLoc: noLoc}
			r, allow := sc.decideKey(l, k)
			if allow {
				// An allow-listed key keeps its whole subtree.
				return w.skip(depth)
			}
			f = r
		}
		return w.value(l, k, depth, f)
	})
}

// members reads the container opening at w.i up to its end, calling member
// with w.i at each member's value (name is the member's name in an object).
func (w *jsonWalk) members(object bool, member func(name string) error) error {
	closer := byte(']')
	if object {
		closer = '}'
	}
	w.i++
	w.space()
	if w.i < len(w.s) && w.s[w.i] == closer {
		w.i++
		return nil
	}
	for {
		var name string
		if object {
			if w.i == len(w.s) || w.s[w.i] != '"' {
				return w.fail("expecting a name")
			}
			var err error
			if name, err = w.str(); err != nil {
				return err
			}
			w.space()
			if w.i == len(w.s) || w.s[w.i] != ':' {
				return w.fail("expecting ':'")
			}
			w.i++
		}
		w.space()
		if w.i == len(w.s) {
			return w.fail("unexpected end")
		}
		if err := member(name); err != nil {
			return err
		}
		w.space()
		switch {
		case w.i == len(w.s):
			return w.fail("unexpected end")
		case w.s[w.i] == ',':
			w.i++
			w.space()
		case w.s[w.i] == closer:
			w.i++
			return nil
		default:
			return w.fail("expecting ',' or the end of the container")
		}
	}
}

// skip validates the value at w.i without deciding anything in it.
func (w *jsonWalk) skip(depth int) error {
	if w.i == len(w.s) {
		return w.fail("unexpected end")
	}
	switch c := w.s[w.i]; {
	case c == '{' || c == '[':
		if depth++; depth > jsonMaxDepth {
			return w.fail("too deep")
		}
		return w.members(c == '{', func(string) error { return w.skip(depth) })
	case c == '"':
		_, err := w.str()
		return err
	case c == '-' || isDigit(c):
		_, err := w.number()
		return err
	default:
		return w.literal()
	}
}

func (w *jsonWalk) stringLeaf(at where, key string, depth int, forced *rule) error {
	sc := w.sc
	start := w.i
	t, err := w.str()
	if err != nil {
		return err
	}
	if sc.fields++; sc.fields > sc.s.limits.MaxFields {
		return &limitError{ReasonTooMany}
	}
	var repl string
	if mayBeJSON(t) && json.Valid([]byte(strings.TrimSpace(t))) {
		// JSON inside a string: scan it as JSON.
		out, err := sc.json(at.String(), key, []byte(t), depth+1, forced)
		if err != nil {
			return err
		}
		repl = string(out)
	} else {
		repl = sc.fieldAt(at, key, t, kindText, forced)
	}
	if repl != t {
		// Quoted into one buffer for the body: an edit keeps its slice even
		// when a later append moves the buffer.
		n := len(w.quoted)
		w.quoted, _ = jsontext.AppendQuote(w.quoted, repl)
		w.edit(start, w.quoted[n:len(w.quoted):len(w.quoted)])
	}
	return nil
}

// mayBeJSON is false when t, trimmed of spaces, cannot be a JSON object or
// array: most strings are ruled out by their first byte, not trimmed.
func mayBeJSON(t string) bool {
	if len(t) < 2 {
		return false
	}
	if c := t[0]; c < utf8.RuneSelf && !asciiSpace[c] {
		return c == '{' || c == '['
	}
	tr := strings.TrimSpace(t)
	return len(tr) > 1 && (tr[0] == '{' || tr[0] == '[')
}

// asciiSpace marks the ASCII bytes unicode.IsSpace accepts.
var asciiSpace = [utf8.RuneSelf]bool{'\t': true, '\n': true, '\v': true, '\f': true, '\r': true, ' ': true}

func (w *jsonWalk) numberLeaf(at where, key string, forced *rule) error {
	sc := w.sc
	start := w.i
	raw, err := w.number()
	if err != nil {
		return err
	}
	if sc.fields++; sc.fields > sc.s.limits.MaxFields {
		return &limitError{ReasonTooMany}
	}
	if repl := sc.fieldAt(at, key, raw, kindNumber, forced); repl != raw {
		w.edit(start, []byte(repl))
	}
	return nil
}

// str reads the string at w.i and returns its contents: a substring of the
// body when it has no escapes and is ASCII (nearly all), else unquoted as
// jsontext does (invalid UTF-8 becomes U+FFFD). Escapes are checked as
// jsontext checks them with invalid UTF-8 allowed: \u needs four hex
// digits, and surrogates need not pair.
func (w *jsonWalk) str() (string, error) {
	s, start := w.s, w.i
	plain := true
	for i := start + 1; i < len(s); {
		for i < len(s) && plainJSON[s[i]] {
			i++
		}
		if i == len(s) {
			break
		}
		switch c := s[i]; {
		case c == '"':
			w.i = i + 1
			if plain {
				return s[start+1 : i], nil
			}
			b, _ := jsontext.AppendUnquote(nil, s[start:i+1])
			return string(b), nil
		case c == '\\':
			plain = false
			n := escapeLen(s[i:])
			if n == 0 {
				w.i = i
				return "", w.fail("invalid escape")
			}
			i += n
		case c < ' ':
			w.i = i
			return "", w.fail("control character in string")
		case c >= 0x80:
			plain = false
			i++
		default:
			i++
		}
	}
	w.i = len(s)
	return "", w.fail("unterminated string")
}

// plainJSON marks the bytes a string holds as they are: printable ASCII
// but the quote and the backslash.
var plainJSON = func() (t [256]bool) {
	for c := ' '; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// escapeLen returns the length of the escape sequence s starts with, or 0.
func escapeLen(s string) int {
	if len(s) < 2 {
		return 0
	}
	switch s[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2
	case 'u':
		if len(s) < 6 {
			return 0
		}
		for _, c := range []byte(s[2:6]) {
			if !isDigit(c) && (c|0x20 < 'a' || c|0x20 > 'f') {
				return 0
			}
		}
		return 6
	}
	return 0
}

// number reads -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)? at w.i.
func (w *jsonWalk) number() (string, error) {
	s, start := w.s, w.i
	i := start
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && isDigit(s[i]):
		i = run(s, i, isDigit)
	default:
		w.i = i
		return "", w.fail("expecting a digit")
	}
	if i < len(s) && s[i] == '.' {
		if i+1 == len(s) || !isDigit(s[i+1]) {
			w.i = i + 1
			return "", w.fail("expecting a digit")
		}
		i = run(s, i+1, isDigit)
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i == len(s) || !isDigit(s[i]) {
			w.i = i
			return "", w.fail("expecting a digit")
		}
		i = run(s, i, isDigit)
	}
	w.i = i
	return s[start:i], nil
}

// literal reads true, false or null: they carry no secret worth a change.
func (w *jsonWalk) literal() error {
	for _, lit := range []string{"true", "false", "null"} {
		if strings.HasPrefix(w.s[w.i:], lit) {
			w.i += len(lit)
			return nil
		}
	}
	return w.fail("invalid character")
}
