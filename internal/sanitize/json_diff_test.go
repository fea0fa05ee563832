package sanitize

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// jsontextLeaves is the reference the walker replaced: whether jsontext
// (duplicate names and invalid UTF-8 allowed) reads b to the end, and the
// offsets and unquoted text of its string and number leaves (not names).
func jsontextLeaves(b []byte) (leaves []edit, ok bool) {
	dec := jsontext.NewDecoder(bytes.NewReader(b), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	for {
		k := dec.PeekKind()
		if k == 0 {
			_, err := dec.ReadToken()
			return leaves, errors.Is(err, io.EOF)
		}
		if k != '"' && k != '0' {
			if _, err := dec.ReadToken(); err != nil {
				return nil, false
			}
			continue
		}
		in, n := dec.StackIndex(dec.StackDepth())
		v, err := dec.ReadValue()
		if err != nil {
			return nil, false
		}
		if in == '{' && n%2 == 0 {
			continue // a name
		}
		end := int(dec.InputOffset())
		text := bytes.Clone(v) // v is the decoder's buffer
		if k == '"' {
			text, _ = jsontext.AppendUnquote(nil, v)
		}
		leaves = append(leaves, edit{end - len(v), end, text})
	}
}

// redactAll denies every location, so the walker replaces every leaf.
func redactAll(t testing.TB) *Sanitizer {
	c, err := parseRules([]byte("builtin: false\ndeny:\n  - name: all\n    locations: ['*']\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := build(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkJSONWalk runs the walker with every leaf denied and compares its
// verdict and output with jsontext's leaves, each replaced as field would.
func checkJSONWalk(t *testing.T, s *Sanitizer, b []byte) {
	t.Helper()
	want, ok := jsontextLeaves(b)
	for _, l := range want {
		if tr := strings.TrimSpace(string(l.repl)); len(tr) > 1 && (tr[0] == '{' || tr[0] == '[') {
			return // JSON inside a string is walked again: not this reference's business
		}
	}
	sc := &scan{s: s}
	got, err := sc.json("request.body", "", b, 0, nil)
	if _, limit := isLimit(err); limit {
		return
	}
	if (err == nil) != ok {
		t.Fatalf("%q: walker error %v, jsontext accepts it: %v", b, err, ok)
	}
	if !ok {
		return
	}
	var edits []edit
	for _, l := range want {
		v := string(l.repl)
		switch {
		case v == "" || isMarker(v) || v == "0" && b[l.start] != '"':
		case b[l.start] == '"':
			edits = append(edits, edit{l.start, l.end, []byte(`"` + Redacted + `"`)})
		default:
			edits = append(edits, edit{l.start, l.end, []byte("0")})
		}
	}
	if exp := splice(b, edits); !bytes.Equal(got, exp) {
		t.Fatalf("%q: walker wrote\n%s\nwant\n%s", b, got, exp)
	}
}

var jsonPieces = []string{
	"{", "}", "[", "]", ",", ":", " ", "\n", `"a"`, `"k"`, `""`, `"x y"`, `"\u00e9"`, `"\ud800"`, `"\ud83d\ude00"`, `"\n"`,
	`"\"q\""`, `"\\"`, `"\/"`, `"\x"`, `"\u12"`, "\"\xff\xfe\"", "\"\x01\"", `"é"`, `"[REDACTED]"`, `"****"`, "0", "-1", "12",
	"1.5", "1e3", "-0.0E+2", "01", "1.", "-", "1e", ".5", "true", "false", "null", "tru", "nul", "\ufeff", "x", "/", "\t",
}

// randomJSON builds a value, then sometimes breaks it with a random piece.
func randomJSON(r *rand.Rand, depth int) string {
	n := r.IntN(10)
	if depth == 0 {
		n = r.IntN(5) // a container at the top
	}
	switch {
	case n < 3 && depth < 6:
		var b strings.Builder
		b.WriteString("{")
		for i := r.IntN(4); i > 0; i-- {
			b.WriteString(`"k` + string(rune('a'+r.IntN(3))) + `":` + randomJSON(r, depth+1))
			if i > 1 {
				b.WriteString(",")
			}
		}
		b.WriteString("}")
		return b.String()
	case n < 5 && depth < 6:
		var parts []string
		for i := r.IntN(4); i > 0; i-- {
			parts = append(parts, randomJSON(r, depth+1))
		}
		return "[" + strings.Join(parts, " , ") + "]"
	default:
		return jsonPieces[r.IntN(len(jsonPieces))]
	}
}

func mutate(r *rand.Rand, s string) string {
	for range r.IntN(3) {
		i := r.IntN(len(s) + 1)
		switch r.IntN(3) {
		case 0:
			s = s[:i] + jsonPieces[r.IntN(len(jsonPieces))] + s[i:]
		case 1:
			if i < len(s) {
				s = s[:i] + s[i+1:]
			}
		default:
			s = s[:i]
		}
	}
	return s
}

// TestJSONWalkMatchesJSONText: the walker accepts what jsontext accepts and
// finds the same leaves, on the corpora and on random, often broken, JSON.
func TestJSONWalkMatchesJSONText(t *testing.T) {
	s := redactAll(t)
	inputs := []string{"", " ", "{}", "[]", "{}{}", "1 2", "01", "truefalse", `{"a":1}x`, `{"a":1,}`, `[1,]`, `{"a" 1}`,
		`{"a":{"b":[1,{"c":"d"}]}}`, "\ufeff{}", `"\ud800"`, `{"a":"\u00e9\ud83d\ude00"}`, "[" + strings.Repeat(`"x",`, 5) + `1]`}
	for _, tc := range secretCorpus(t) {
		inputs = append(inputs, string(tc.ex.GetRequest().GetBody()), string(tc.ex.GetResponse().GetBody()))
	}
	for _, in := range inputs {
		checkJSONWalk(t, s, []byte(in))
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 30_000 {
		checkJSONWalk(t, s, []byte(mutate(r, randomJSON(r, 0))))
	}
}

// FuzzJSONWalk: any input, the walker agrees with jsontext.
func FuzzJSONWalk(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 50 {
		f.Add([]byte(randomJSON(r, 0)))
	}
	s := redactAll(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkJSONWalk(t, s, b)
	})
}

// TestMayBeJSON: the first-byte shortcut rules out no string that,
// trimmed, starts a JSON object or array (json.Valid decides the rest).
func TestMayBeJSON(t *testing.T) {
	pieces := []string{"{", "[", "}", " ", "\t", "\v", "\u00a0", "\u2003", "\x85", "a", "1", "\"", "é"}
	r := rand.New(rand.NewPCG(7, 8))
	for range 20_000 {
		var b strings.Builder
		for n := r.IntN(5); n >= 0; n-- {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		s := b.String()
		tr := strings.TrimSpace(s)
		if len(tr) > 1 && (tr[0] == '{' || tr[0] == '[') && !mayBeJSON(s) {
			t.Fatalf("mayBeJSON(%q) = false", s)
		}
	}
}
