// Package endpoint groups request paths into endpoints: the collector's
// stats and the replayer's reports both speak of `/orders/{id}`, not of
// every order that was ever fetched.
package endpoint

import "strings"

// Placeholder replaces a path segment that identifies one resource.
const Placeholder = "{id}"

// Normalize returns the endpoint of a request target: the path without its
// query or fragment, with identifier segments (numbers, UUIDs, long hex or
// token-like strings) replaced by {id}.
func Normalize(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	// Absolute form (to a proxy): keep only the path.
	if i := strings.Index(target, "://"); i >= 0 {
		rest := target[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			target = rest[j:]
		} else {
			target = "/"
		}
	}
	if target == "" {
		return "/"
	}
	segs := strings.Split(target, "/")
	for i, s := range segs {
		if isID(s) {
			segs[i] = Placeholder
		}
	}
	return strings.Join(segs, "/")
}

// isID reports whether a path segment looks like an identifier rather than
// a fixed name. Names are words; identifiers are numbers or carry digits
// in long machine-made strings.
func isID(s string) bool {
	if s == "" {
		return false
	}
	digits, hex, token := 0, true, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			digits++
		case 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		case 'g' <= c && c <= 'z', 'G' <= c && c <= 'Z', c == '_':
			hex = false
		case c == '-':
			// UUIDs are hex with dashes.
		default:
			hex, token = false, false
		}
	}
	switch {
	case digits == len(s):
		return true
	case hex && digits > 0 && len(s) >= 8:
		return true
	case token && digits > 0 && len(s) >= 16:
		return true
	}
	return false
}
