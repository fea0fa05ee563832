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
//   - A Context says what the replayer changed and what the recording does
//     not hold (see Context); docs/verify.md lists every rule.
package compare

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/reprise-dev/reprise/internal/header"
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

// Options say what to compare beyond the status and the body.
type Options struct {
	// Headers are the response headers to compare, by name; "*" compares
	// every header present on either side.
	Headers []string
	// Ignore lists the paths not to compare (see ParsePath).
	Ignore []string
	// Sets maps JSON array paths (patterns such as $.items or
	// $.orders[*].lines) to the key that pairs their elements when the
	// array is compared as a set; "" pairs elements by equal value.
	Sets map[string]string
	// IgnoreCookieExpiry leaves the Expires and Max-Age attributes of
	// Set-Cookie out, as they are relative to the time of the response.
	IgnoreCookieExpiry bool
	// ExactTimes lists the paths where times are compared as written, not
	// by their offset from their exchange's time (see Context).
	ExactTimes []string
}

// Comparer compares responses under a set of Options. It is immutable and
// safe for concurrent use.
type Comparer struct {
	headers    []string
	allHeaders bool
	ignore     []pattern
	exactTimes []pattern
	sets       []setRule
	cookies    bool
}

type setRule struct {
	at  pattern
	key string
}

// New checks the options and returns their Comparer.
func New(o Options) (*Comparer, error) {
	c := &Comparer{cookies: o.IgnoreCookieExpiry}
	for _, h := range o.Headers {
		if h == "*" {
			c.allHeaders = true
			continue
		}
		if h == "" || strings.ContainsAny(h, " \t:") {
			return nil, fmt.Errorf("header name %q is not valid", h)
		}
		c.headers = append(c.headers, h)
	}
	for _, s := range o.Ignore {
		p, err := ParsePath(s)
		if err != nil {
			return nil, err
		}
		c.ignore = append(c.ignore, p)
	}
	for _, s := range o.ExactTimes {
		p, err := ParsePath(s)
		if err != nil {
			return nil, err
		}
		c.exactTimes = append(c.exactTimes, p)
	}
	for _, s := range slices.Sorted(maps.Keys(o.Sets)) {
		p, err := ParsePath(s)
		if err != nil {
			return nil, err
		}
		if p.top != "$" {
			return nil, fmt.Errorf("set path %q: must be a JSON path starting with $", s)
		}
		c.sets = append(c.sets, setRule{at: p, key: o.Sets[s]})
	}
	return c, nil
}

var plain = &Comparer{}

// Compare returns the differences between the recorded and the replayed
// response, comparing status and body only; none means they match.
func Compare(recorded, replayed *reprisev1.HttpResponse) []Difference {
	return plain.Compare(recorded, replayed)
}

// CompareIn is Compare in the context of one replay (see Context).
func CompareIn(ctx Context, recorded, replayed *reprisev1.HttpResponse) []Difference {
	return plain.CompareIn(ctx, recorded, replayed)
}

// Compare returns the differences between the recorded and the replayed
// response that no ignore rule covers; none means they match.
func (c *Comparer) Compare(recorded, replayed *reprisev1.HttpResponse) []Difference {
	return c.CompareIn(Context{}, recorded, replayed)
}

// CompareIn is Compare in the context of one replay: what the replayer
// changed, what the recording does not hold, and when each side was made.
func (c *Comparer) CompareIn(ctx Context, recorded, replayed *reprisev1.HttpResponse) []Difference {
	d := &differ{c: c, ctx: ctx, replace: ctx.replacer()}
	for _, u := range ctx.Unknown {
		if p, err := ParsePath(u); err == nil {
			d.unknown = append(d.unknown, p)
		}
	}
	if recorded.GetStatusCode() != replayed.GetStatusCode() && !d.ignoredTop("status") {
		return []Difference{{
			Path:     "status",
			Kind:     KindChanged,
			Recorded: strconv.Itoa(int(recorded.GetStatusCode())),
			Replayed: strconv.Itoa(int(replayed.GetStatusCode())),
		}}
	}
	d.headers(recorded.GetHeaders(), replayed.GetHeaders())
	d.body(recorded, replayed)
	return d.result()
}

// Bodies compares two bodies that are not HTTP responses (the mock compares
// request bodies with it), as JSON when either content type is JSON and
// both parse, else as bytes.
func (c *Comparer) Bodies(recContentType string, rec []byte, repContentType string, rep []byte) []Difference {
	d := &differ{c: c}
	if !d.ignoredTop("body") {
		d.bodyBytes(rec, rep, isJSONType(recContentType) || isJSONType(repContentType))
	}
	return d.result()
}

type differ struct {
	c       *Comparer
	ctx     Context
	replace *strings.Replacer // nil: nothing to replace
	unknown []pattern         // the redacted paths of ctx
	diffs   []Difference
	more    int
}

func (d *differ) result() []Difference {
	if d.more > 0 {
		d.diffs = append(d.diffs, Difference{
			Path:     "$",
			Kind:     KindTruncated,
			Recorded: fmt.Sprintf("%d more differences not listed", d.more),
		})
	}
	return d.diffs
}

func (d *differ) add(diff Difference) {
	if len(d.diffs) < MaxDifferences {
		d.diffs = append(d.diffs, diff)
		return
	}
	d.more++
}

// rules are the ignore rules and the redacted paths.
func (d *differ) rules() []pattern {
	if len(d.unknown) == 0 {
		return d.c.ignore
	}
	return slices.Concat(d.c.ignore, d.unknown)
}

func (d *differ) ignoredTop(top string) bool {
	for _, p := range d.rules() {
		if p.top == top {
			return true
		}
	}
	return false
}

func (d *differ) ignoredHeader(name string) bool {
	if d.ctx.own(name) {
		return true
	}
	for _, p := range d.rules() {
		if p.matchHeader(name) {
			return true
		}
	}
	return false
}

func (d *differ) ignoredJSON(segs []segment) bool {
	for _, p := range d.rules() {
		if p.matchJSON(segs) {
			return true
		}
	}
	return false
}

// headers compares the chosen headers; several values of one header are
// compared as one list in their order.
func (d *differ) headers(rec, rep []*reprisev1.Header) {
	names := d.c.headers
	if d.c.allHeaders {
		seen := map[string]bool{}
		names = nil
		for _, h := range slices.Concat(rec, rep) {
			k := textproto.CanonicalMIMEHeaderKey(h.GetName())
			if !seen[k] {
				seen[k] = true
				names = append(names, k)
			}
		}
		slices.Sort(names)
	}
	for _, name := range names {
		if d.ignoredHeader(name) {
			continue
		}
		rv, rok := d.headerValue(rec, name)
		pv, pok := d.headerValue(rep, name)
		path := "headers." + textproto.CanonicalMIMEHeaderKey(name)
		switch {
		case rok && !pok:
			d.add(Difference{Path: path, Kind: KindMissing, Recorded: truncate(rv)})
		case !rok && pok:
			d.add(Difference{Path: path, Kind: KindAdded, Replayed: truncate(pv)})
		case !d.sameText(path, d.replaced(rv), pv):
			d.add(Difference{Path: path, Kind: KindChanged, Recorded: truncate(rv), Replayed: truncate(pv)})
		}
	}
}

func (d *differ) headerValue(hs []*reprisev1.Header, name string) (string, bool) {
	var vals []string
	cookie := strings.EqualFold(name, "Set-Cookie")
	for _, h := range hs {
		if strings.EqualFold(h.GetName(), name) {
			v := h.GetValue()
			if cookie && d.c.cookies {
				v = withoutExpiry(v)
			}
			vals = append(vals, v)
		}
	}
	return strings.Join(vals, ", "), len(vals) > 0
}

// withoutExpiry drops the Expires and Max-Age attributes of a Set-Cookie
// value.
func withoutExpiry(v string) string {
	parts := strings.Split(v, ";")
	kept := parts[:0]
	for _, p := range parts {
		attr, _, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(attr, "Expires") || strings.EqualFold(attr, "Max-Age") {
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, ";")
}

func (d *differ) body(recorded, replayed *reprisev1.HttpResponse) {
	if d.ignoredTop("body") || d.ctx.NoBody {
		return
	}
	partial := d.ctx.Partial || recorded.GetBodyTruncated()
	rec := decodedBody(recorded, partial)
	rep := decodedBody(replayed, replayed.GetBodyTruncated())
	switch {
	case partial:
		// The replayed body must begin with the recorded head.
		d.text(rec, rep, true)
	case replayed.GetBodyTruncated():
		n := min(len(rec), len(rep))
		d.bytes(rec[:n], rep[:n])
	default:
		d.bodyBytes(rec, rep, isJSON(recorded.GetHeaders()) || isJSON(replayed.GetHeaders()))
	}
}

func (d *differ) bodyBytes(rec, rep []byte, asJSON bool) {
	if asJSON {
		recVal, recErr := parseJSON(rec)
		repVal, repErr := parseJSON(rep)
		if recErr == nil && repErr == nil {
			d.json(nil, recVal, repVal)
			return
		}
		// JSON lines: each value compared as an element of an array.
		recSeq, recOK := parseJSONSeq(rec)
		repSeq, repOK := parseJSONSeq(rep)
		if recOK && repOK {
			d.json(nil, recSeq, repSeq)
			return
		}
	}
	d.text(rec, rep, false)
}

// text compares bodies as bytes after the context's rewrites: replacements
// in the recorded body, the replayer's own headers out of the replayed one,
// markers matching any text. With head, rep need only begin with rec.
func (d *differ) text(rec, rep []byte, head bool) {
	if d.replace != nil && utf8.Valid(rec) {
		rec = []byte(d.replace.Replace(string(rec)))
	}
	rep = d.ctx.withoutOwnLines(rec, rep)
	if d.ctx.Markers {
		if pieces := splitMarkers(string(rec)); len(pieces) > 1 {
			if !wildcardMatch(pieces, string(rep), head) {
				d.bytes(rec, rep)
			}
			return
		}
	}
	if head && len(rep) > len(rec) {
		rep = rep[:len(rec)]
	}
	if !bytes.Equal(rec, rep) && !d.exactTime("body") && d.ctx.sameTimedText(string(rec), string(rep)) {
		return
	}
	d.bytes(rec, rep)
}

// replaced is a recorded value with the context's replacements applied.
func (d *differ) replaced(s string) string {
	if d.replace == nil {
		return s
	}
	return d.replace.Replace(s)
}

// sameText reports whether a recorded value (replacements applied) and a
// replayed one at path match: equal, equal but for markers, or times at
// the same offset from their exchange's time.
func (d *differ) sameText(path string, rec, rep string) bool {
	if rec == rep {
		return true
	}
	if d.ctx.Markers {
		// A marker in the replayed value is the service reflecting a
		// redacted value the replayer sent as recorded: unknown too.
		if pieces := splitMarkers(rec); len(pieces) > 1 && wildcardMatch(pieces, rep, false) {
			return true
		}
		if pieces := splitMarkers(rep); len(pieces) > 1 && wildcardMatch(pieces, rec, false) {
			return true
		}
	}
	return !d.exactTime(path) && d.ctx.sameTime(rec, rep)
}

func (d *differ) exactTime(path string) bool {
	for _, p := range d.c.exactTimes {
		if p.top == "body" && path == "body" {
			return true
		}
		if p.top == "$" && strings.HasPrefix(path, "$") {
			if q, err := ParsePath(path); err == nil && p.matchJSON(q.segs) {
				return true
			}
			continue
		}
		if p.top == "headers" && p.matchHeader(strings.TrimPrefix(path, "headers.")) {
			return true
		}
	}
	return false
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

func child(segs []segment, s segment) []segment {
	return append(segs[:len(segs):len(segs)], s)
}

func (d *differ) json(segs []segment, rec, rep any) {
	if d.ignoredJSON(segs) {
		return
	}
	path := pathString(segs)
	switch r := rec.(type) {
	case map[string]any:
		p, ok := rep.(map[string]any)
		if !ok {
			d.typeChange(path, rec, rep)
			return
		}
		for _, k := range slices.Sorted(maps.Keys(r)) {
			cs := child(segs, segment{kind: segMember, name: k})
			if pv, ok := p[k]; ok {
				d.json(cs, r[k], pv)
			} else if !d.ignoredJSON(cs) {
				d.add(Difference{Path: pathString(cs), Kind: KindMissing, Recorded: short(r[k])})
			}
		}
		for _, k := range slices.Sorted(maps.Keys(p)) {
			cs := child(segs, segment{kind: segMember, name: k})
			if _, ok := r[k]; !ok && !d.ignoredJSON(cs) && !d.ctx.own(k) {
				d.add(Difference{Path: pathString(cs), Kind: KindAdded, Replayed: short(p[k])})
			}
		}
	case []any:
		p, ok := rep.([]any)
		if !ok {
			d.typeChange(path, rec, rep)
			return
		}
		if key, ok := d.setKey(segs); ok {
			d.set(segs, key, r, p)
			return
		}
		for i := range max(len(r), len(p)) {
			cs := child(segs, segment{kind: segIndex, index: i})
			switch {
			case d.ignoredJSON(cs):
			case i >= len(p):
				d.add(Difference{Path: pathString(cs), Kind: KindMissing, Recorded: short(r[i])})
			case i >= len(r):
				d.add(Difference{Path: pathString(cs), Kind: KindAdded, Replayed: short(p[i])})
			default:
				d.json(cs, r[i], p[i])
			}
		}
	case json.Number:
		p, ok := rep.(json.Number)
		if !ok {
			d.typeChange(path, rec, rep)
			return
		}
		if canonicalNumber(r) != canonicalNumber(p) && (d.exactTime(path) || !d.ctx.sameTime(r.String(), p.String())) {
			d.add(Difference{Path: path, Kind: KindChanged, Recorded: r.String(), Replayed: p.String()})
		}
	default: // string, bool, nil
		if typeName(rec) != typeName(rep) {
			d.typeChange(path, rec, rep)
			return
		}
		if rs, ok := rec.(string); ok {
			if !d.sameText(path, d.replaced(rs), rep.(string)) {
				d.add(Difference{Path: path, Kind: KindChanged, Recorded: short(rec), Replayed: short(rep)})
			}
			return
		}
		if rec != rep {
			d.add(Difference{Path: path, Kind: KindChanged, Recorded: short(rec), Replayed: short(rep)})
		}
	}
}

func (d *differ) setKey(segs []segment) (string, bool) {
	for _, s := range d.c.sets {
		if s.at.equalJSON(segs) {
			return s.key, true
		}
	}
	return "", false
}

// set compares two arrays as sets: elements are paired by the value of key
// (or by equal value when key is ""), order does not matter. Paired
// elements are compared as usual under the path [key=value]; an element
// without a partner is missing or added.
func (d *differ) set(segs []segment, key string, rec, rep []any) {
	ident := func(v any, i int) segment {
		if key == "" {
			return segment{kind: segIndex, index: i}
		}
		if obj, ok := v.(map[string]any); ok {
			if kv, ok := obj[key]; ok {
				return segment{kind: segKeyed, name: key, value: keyText(kv)}
			}
		}
		return segment{kind: segIndex, index: i}
	}
	pairKey := func(v any, i int) string {
		if key == "" {
			return canonicalJSON(v)
		}
		s := ident(v, i)
		if s.kind == segIndex {
			return canonicalJSON(v) // no key: pair by value
		}
		return s.value
	}
	unpaired := map[string][]int{}
	for j, v := range rep {
		k := pairKey(v, j)
		unpaired[k] = append(unpaired[k], j)
	}
	used := make([]bool, len(rep))
	for i, v := range rec {
		cs := child(segs, ident(v, i))
		k := pairKey(v, i)
		if js := unpaired[k]; len(js) > 0 {
			unpaired[k] = js[1:]
			used[js[0]] = true
			d.json(cs, v, rep[js[0]])
			continue
		}
		if !d.ignoredJSON(cs) {
			d.add(Difference{Path: pathString(cs), Kind: KindMissing, Recorded: short(v)})
		}
	}
	for j, v := range rep {
		cs := child(segs, ident(v, j))
		if !used[j] && !d.ignoredJSON(cs) {
			d.add(Difference{Path: pathString(cs), Kind: KindAdded, Replayed: short(v)})
		}
	}
}

// canonicalJSON renders a value with sorted keys and canonical numbers, so
// equal values render alike.
func canonicalJSON(v any) string {
	switch t := v.(type) {
	case map[string]any:
		var b strings.Builder
		b.WriteString("{")
		for i, k := range slices.Sorted(maps.Keys(t)) {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(strconv.Quote(k) + ":" + canonicalJSON(t[k]))
		}
		return b.String() + "}"
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			parts[i] = canonicalJSON(e)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case json.Number:
		return canonicalNumber(t)
	}
	b, _ := json.Marshal(v)
	return string(b)
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

// parseJSONSeq parses a body of two or more JSON values one after the
// other (JSON lines) as the array of them.
func parseJSONSeq(b []byte) ([]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var vals []any
	for dec.More() {
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		vals = append(vals, v)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	return vals, len(vals) > 1
}

func isJSON(headers []*reprisev1.Header) bool {
	return isJSONType(header.Get(headers, "Content-Type"))
}

func isJSONType(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
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
