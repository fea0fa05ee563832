package compare

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// A path names a place in a response, in the syntax of Difference.Path, so
// a reported difference can be pasted into the ignore rules:
//
//	status                  the status code
//	headers.Name            a response header (case-insensitive; a trailing *
//	                        matches any suffix: headers.X-B3-*)
//	body                    a body compared as bytes
//	$                       the root of a JSON body, followed by
//	  .name  ["any key"]    an object member (.* for any member)
//	  [3]                   an array element (by position)
//	  [id=42]  [sku="a-1"]  an element of an array compared as a set by key
//	  [*]                   any array element
//
// A pattern matches a path and everything below it.

// segment is one step of a JSON path or pattern.
type segment struct {
	kind  segKind
	name  string // member name, or the key of a keyed element
	value string // JSON text of the key value of a keyed element
	index int
}

type segKind uint8

const (
	segMember segKind = iota
	segIndex
	segKeyed
	segAnyMember
	segAnyElement
)

func (s segment) String() string {
	switch s.kind {
	case segMember:
		if isIdent(s.name) {
			return "." + s.name
		}
		return "[" + strconv.Quote(s.name) + "]"
	case segIndex:
		return "[" + strconv.Itoa(s.index) + "]"
	case segKeyed:
		return "[" + s.name + "=" + s.value + "]"
	case segAnyMember:
		return ".*"
	}
	return "[*]"
}

func (s segment) matches(p segment) bool {
	switch s.kind {
	case segAnyMember:
		return p.kind == segMember
	case segAnyElement:
		return p.kind == segIndex || p.kind == segKeyed
	}
	return s == p
}

func pathString(segs []segment) string {
	var b strings.Builder
	b.WriteString("$")
	for _, s := range segs {
		b.WriteString(s.String())
	}
	return b.String()
}

// pattern is a parsed path.
type pattern struct {
	// top is "status", "body", "headers" or "$".
	top string
	// header is the header name (lower case) for top "headers"; prefix
	// says it ended in *.
	header string
	prefix bool
	segs   []segment
}

// ParsePath parses a path as written in ignore rules; the error says where
// it is wrong.
func ParsePath(s string) (pattern, error) {
	switch {
	case s == "status" || s == "body":
		return pattern{top: s}, nil
	case strings.HasPrefix(s, "headers."):
		name := strings.ToLower(strings.TrimPrefix(s, "headers."))
		p := pattern{top: "headers", header: strings.TrimSuffix(name, "*"), prefix: strings.HasSuffix(name, "*")}
		if p.header == "" && !p.prefix || strings.ContainsAny(p.header, " *\t") {
			return pattern{}, fmt.Errorf("path %q: want headers.Name or headers.Prefix*", s)
		}
		return p, nil
	case !strings.HasPrefix(s, "$"):
		return pattern{}, fmt.Errorf("path %q: want status, body, headers.Name or a JSON path starting with $", s)
	}
	p := pattern{top: "$"}
	rest := s[1:]
	for rest != "" {
		seg, n, err := parseSegment(rest)
		if err != nil {
			return pattern{}, fmt.Errorf("path %q at %q: %w", s, rest, err)
		}
		p.segs = append(p.segs, seg)
		rest = rest[n:]
	}
	return p, nil
}

func parseSegment(s string) (segment, int, error) {
	if s[0] == '.' {
		end := 1
		for end < len(s) && s[end] != '.' && s[end] != '[' {
			end++
		}
		name := s[1:end]
		switch {
		case name == "*":
			return segment{kind: segAnyMember}, end, nil
		case !isIdent(name):
			return segment{}, 0, fmt.Errorf(`member name must be letters, digits and _; write ["%s"] for other keys`, name)
		}
		return segment{kind: segMember, name: name}, end, nil
	}
	if s[0] != '[' {
		return segment{}, 0, fmt.Errorf("want . or [")
	}
	if strings.HasPrefix(s, `["`) {
		// A quoted member name: find the closing quote, skipping escapes.
		i := 2
		for i < len(s) && s[i] != '"' {
			if s[i] == '\\' {
				i++
			}
			i++
		}
		if i+1 >= len(s) || s[i+1] != ']' {
			return segment{}, 0, fmt.Errorf(`unterminated ["…"]`)
		}
		name, err := strconv.Unquote(s[1 : i+1])
		if err != nil {
			return segment{}, 0, fmt.Errorf("quoted member: %w", err)
		}
		return segment{kind: segMember, name: name}, i + 2, nil
	}
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return segment{}, 0, fmt.Errorf("unterminated [")
	}
	inner := s[1:end]
	if inner == "*" {
		return segment{kind: segAnyElement}, end + 1, nil
	}
	if key, val, ok := strings.Cut(inner, "="); ok {
		// A quoted value may hold "]": take the whole JSON string.
		if strings.HasPrefix(val, `"`) {
			var str string
			dec := json.NewDecoder(strings.NewReader(s[1+len(key)+1:]))
			if err := dec.Decode(&str); err != nil {
				return segment{}, 0, fmt.Errorf("key value: %w", err)
			}
			n := 1 + len(key) + 1 + int(dec.InputOffset())
			if n >= len(s) || s[n] != ']' {
				return segment{}, 0, fmt.Errorf("want ] after the key value")
			}
			return segment{kind: segKeyed, name: key, value: keyText(str)}, n + 1, nil
		}
		v, err := parseJSON([]byte(val))
		if err != nil || !isIdent(key) {
			return segment{}, 0, fmt.Errorf("want [key=value] with a JSON value")
		}
		return segment{kind: segKeyed, name: key, value: keyText(v)}, end + 1, nil
	}
	i, err := strconv.Atoi(inner)
	if err != nil || i < 0 {
		return segment{}, 0, fmt.Errorf("want [N], [*], [key=value] or [\"name\"]")
	}
	return segment{kind: segIndex, index: i}, end + 1, nil
}

// keyText renders a key value as it appears in a path.
func keyText(v any) string {
	if n, ok := v.(json.Number); ok {
		return canonicalText(n)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// canonicalText writes a number so that equal values look the same and the
// common ones look as usual: 42, not 42e0.
func canonicalText(n json.Number) string {
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return strconv.FormatInt(i, 10)
	}
	return canonicalNumber(n)
}

// matchJSON reports whether p covers the JSON path segs.
func (p pattern) matchJSON(segs []segment) bool {
	if p.top != "$" || len(p.segs) > len(segs) {
		return false
	}
	for i, s := range p.segs {
		if !s.matches(segs[i]) {
			return false
		}
	}
	return true
}

// equalJSON reports whether p names exactly the place segs.
func (p pattern) equalJSON(segs []segment) bool {
	return len(p.segs) == len(segs) && p.matchJSON(segs)
}

func (p pattern) matchHeader(name string) bool {
	if p.top != "headers" {
		return false
	}
	name = strings.ToLower(name)
	if p.prefix {
		return strings.HasPrefix(name, p.header)
	}
	return name == p.header
}

// Generalize turns a concrete path into the pattern for every element of
// the arrays on the way ($.items[3].id → $.items[*].id), as a learned noise
// rule should be.
func Generalize(path string) string {
	p, err := ParsePath(path)
	if err != nil || p.top != "$" {
		return path
	}
	for i, s := range p.segs {
		if s.kind == segIndex || s.kind == segKeyed {
			p.segs[i] = segment{kind: segAnyElement}
		}
	}
	return pathString(p.segs)
}
