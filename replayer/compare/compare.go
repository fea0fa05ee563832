// Package compare finds the differences between a recorded HTTP response and
// the response a replay of its request got.
//
// Decisions a reader of a report needs to know:
//   - The status code is compared first. When it differs the bodies are not
//     compared: the body of another status is another document, and diffing
//     an error page against a JSON object only buries the real finding.
//   - Bodies are decoded from their Content-Encoding (gzip, x-gzip, deflate,
//     identity, in the order listed) before comparison. A body that cannot be
//     decoded (unknown coding, corrupt data) is compared as raw bytes.
//   - Bodies are compared as JSON when either side declares a JSON content
//     type and both sides parse as JSON; key order and whitespace do not
//     matter. Numbers compare by exact decimal value, so 1, 1.0 and 1e0 are
//     equal while 0.1 and 0.10000000000000001 are not (float64 would say they
//     are). Anything else is compared byte for byte.
//   - When a body was truncated on either side (the capture keeps only a
//     prefix), only the common prefix of the decoded bodies is compared, as
//     bytes: a truncated JSON document cannot be parsed.
package compare

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"mime"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Kinds of difference.
const (
	// KindChanged: same place, same JSON type, another value.
	KindChanged = "changed"
	// KindMissing: in the recorded response, not in the replayed one.
	KindMissing = "missing"
	// KindAdded: in the replayed response, not in the recorded one.
	KindAdded = "added"
	// KindType: the JSON type changed (e.g. number to string).
	KindType = "type"
	// KindTruncated: more differences were found than are listed.
	KindTruncated = "truncated"
)

// MaxDifferences bounds the differences listed for one response, so that a
// completely different body does not produce a report of megabytes; one more
// entry of kind KindTruncated then says how many were left out.
const MaxDifferences = 50

// maxValueLen bounds the length of the values shown in a difference.
const maxValueLen = 80

// Difference is one place where the replayed response differs.
type Difference struct {
	// "status", "body", or a JSONPath-like path into a JSON body: $.items[0].price.
	Path     string `json:"path"`
	Kind     string `json:"kind"`
	Recorded string `json:"recorded,omitempty"`
	Replayed string `json:"replayed,omitempty"`
}

// Compare returns the differences between the recorded and the replayed
// response; none means they match.
func Compare(recorded, replayed *reprisev1.HttpResponse) []Difference {
	if recorded.GetStatusCode() != replayed.GetStatusCode() {
		return []Difference{{
			Path:     "status",
			Kind:     KindChanged,
			Recorded: strconv.Itoa(int(recorded.GetStatusCode())),
			Replayed: strconv.Itoa(int(replayed.GetStatusCode())),
		}}
	}
	d := &differ{}
	d.body(recorded, replayed)
	if d.more > 0 {
		d.diffs = append(d.diffs, Difference{
			Path:     "$",
			Kind:     KindTruncated,
			Recorded: fmt.Sprintf("%d more differences not listed", d.more),
		})
	}
	return d.diffs
}

type differ struct {
	diffs []Difference
	more  int
}

func (d *differ) add(diff Difference) {
	if len(d.diffs) < MaxDifferences {
		d.diffs = append(d.diffs, diff)
		return
	}
	d.more++
}

func (d *differ) body(recorded, replayed *reprisev1.HttpResponse) {
	rec := decodedBody(recorded)
	rep := decodedBody(replayed)
	if recorded.GetBodyTruncated() || replayed.GetBodyTruncated() {
		n := min(len(rec), len(rep))
		d.bytes(rec[:n], rep[:n])
		return
	}
	if isJSON(recorded.GetHeaders()) || isJSON(replayed.GetHeaders()) {
		recVal, recErr := parseJSON(rec)
		repVal, repErr := parseJSON(rep)
		if recErr == nil && repErr == nil {
			d.json("$", recVal, repVal)
			return
		}
	}
	d.bytes(rec, rep)
}

// bytes reports one difference at "body", showing both sides from a little
// before the first byte that differs.
func (d *differ) bytes(rec, rep []byte) {
	if bytes.Equal(rec, rep) {
		return
	}
	i := 0
	for i < len(rec) && i < len(rep) && rec[i] == rep[i] {
		i++
	}
	from := max(0, i-16)
	d.add(Difference{Path: "body", Kind: KindChanged, Recorded: excerpt(rec, from), Replayed: excerpt(rep, from)})
}

func (d *differ) json(path string, rec, rep any) {
	switch r := rec.(type) {
	case map[string]any:
		p, ok := rep.(map[string]any)
		if !ok {
			d.typeChange(path, rec, rep)
			return
		}
		for _, k := range slices.Sorted(maps.Keys(r)) {
			if pv, ok := p[k]; ok {
				d.json(childPath(path, k), r[k], pv)
			} else {
				d.add(Difference{Path: childPath(path, k), Kind: KindMissing, Recorded: short(r[k])})
			}
		}
		for _, k := range slices.Sorted(maps.Keys(p)) {
			if _, ok := r[k]; !ok {
				d.add(Difference{Path: childPath(path, k), Kind: KindAdded, Replayed: short(p[k])})
			}
		}
	case []any:
		p, ok := rep.([]any)
		if !ok {
			d.typeChange(path, rec, rep)
			return
		}
		for i := range max(len(r), len(p)) {
			ip := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= len(p):
				d.add(Difference{Path: ip, Kind: KindMissing, Recorded: short(r[i])})
			case i >= len(r):
				d.add(Difference{Path: ip, Kind: KindAdded, Replayed: short(p[i])})
			default:
				d.json(ip, r[i], p[i])
			}
		}
	case json.Number:
		p, ok := rep.(json.Number)
		if !ok {
			d.typeChange(path, rec, rep)
			return
		}
		if canonicalNumber(r) != canonicalNumber(p) {
			d.add(Difference{Path: path, Kind: KindChanged, Recorded: r.String(), Replayed: p.String()})
		}
	default: // string, bool, nil
		if typeName(rec) != typeName(rep) {
			d.typeChange(path, rec, rep)
			return
		}
		if rec != rep {
			d.add(Difference{Path: path, Kind: KindChanged, Recorded: short(rec), Replayed: short(rep)})
		}
	}
}

func (d *differ) typeChange(path string, rec, rep any) {
	d.add(Difference{
		Path:     path,
		Kind:     KindType,
		Recorded: typeName(rec) + " " + short(rec),
		Replayed: typeName(rep) + " " + short(rep),
	})
}

func parseJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	// A second value after the first means this is not one JSON document
	// (e.g. JSON lines), which is better compared as bytes.
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("more than one JSON value")
	}
	return v, nil
}

func isJSON(headers []*reprisev1.Header) bool {
	mt, _, err := mime.ParseMediaType(header(headers, "Content-Type"))
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// header returns the first value of the named header, case-insensitively.
func header(headers []*reprisev1.Header, name string) string {
	for _, h := range headers {
		if strings.EqualFold(h.GetName(), name) {
			return h.GetValue()
		}
	}
	return ""
}

// canonicalNumber rewrites a JSON number as sign, significant digits and
// exponent, so that numbers with the same exact value have the same string.
// Unlike big.Rat it costs nothing on hostile input such as 1e999999999.
func canonicalNumber(n json.Number) string {
	s := string(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, exp := s, int64(0)
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.ParseInt(strings.TrimPrefix(s[i+1:], "+"), 10, 64)
		if err != nil {
			return string(n) // exponent beyond int64: compare as written
		}
		mant, exp = s[:i], e
	}
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		exp -= int64(len(mant) - i - 1)
		mant = mant[:i] + mant[i+1:]
	}
	mant = strings.TrimLeft(mant, "0")
	if mant == "" {
		return "0" // -0 and 0.000 are zero
	}
	trimmed := strings.TrimRight(mant, "0")
	exp += int64(len(mant) - len(trimmed))
	sign := ""
	if neg {
		sign = "-"
	}
	return sign + trimmed + "e" + strconv.FormatInt(exp, 10)
}

func childPath(parent, key string) string {
	if isIdent(key) {
		return parent + "." + key
	}
	return parent + "[" + strconv.Quote(key) + "]"
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		letter := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func typeName(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case json.Number:
		return "number"
	case string:
		return "string"
	case bool:
		return "boolean"
	}
	return "null"
}

// short renders a JSON value compactly, cut to maxValueLen.
func short(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return truncate(string(b))
}

// excerpt renders body bytes from offset from: as text when they are UTF-8,
// otherwise as a byte count, since binary in a terminal helps nobody.
func excerpt(b []byte, from int) string {
	if len(b) == 0 {
		return "(empty)"
	}
	if !utf8.Valid(b) {
		return fmt.Sprintf("(%d bytes of binary)", len(b))
	}
	s := truncate(string(b[from:]))
	if from > 0 {
		s = "…" + s
	}
	return s
}

func truncate(s string) string {
	if len(s) <= maxValueLen {
		return s
	}
	cut := maxValueLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
