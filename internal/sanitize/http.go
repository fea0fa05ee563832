// HTTP locations: headers, cookies, URLs and name=value pairs.

package sanitize

import (
	"net/url"
	"strconv"
	"strings"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// headers scans every header value; cookies are decided one by one.
func (sc *scan) headers(side string, hs []*reprisev1.Header) {
	base := "response.headers" // constants: no concatenation per exchange
	if side == "request" {
		base = "request.headers"
	}
	noLoc := !sc.s.locMayMatchUnder(base)
	for _, h := range hs {
		if h == nil {
			continue
		}
		at := where{base: base, name: h.Name, named: true, noLoc: noLoc}
		switch n := h.Name; {
		case side == "request" && isName(n, "cookie"):
			h.Value = sc.cookies("request.cookies", h.Value, false)
		case side == "response" && isName(n, "set-cookie"):
			h.Value = sc.cookies("response.set-cookie", h.Value, true)
		case isName(n, "referer") || isName(n, "location") || isName(n, "content-location") || isName(n, "origin"):
			// A rule on the header itself decides the whole value.
			if r, allow := sc.decideKey(at, n); r != nil || allow {
				h.Value = sc.fieldAt(at, n, h.Value, kindText, nil)
			} else {
				h.Value = sc.url(at.String(), h.Value)
			}
		default:
			km := sc.s.keyMatches(n)
			h.Value = sc.fieldKeyed(at, km, h.Value, kindText, nil)
			// Names are sent by the client too: a secret there goes as well.
			if km.nameFinds {
				h.Name = sc.text(base, n)
			}
		}
	}
}

// isName reports whether the header name n is the ASCII name w in any
// case, as strings.EqualFold does; a shorter n is not (no character's case
// fold is longer than it), and most names are ruled out so.
func isName(n, w string) bool {
	return len(n) >= len(w) && strings.EqualFold(n, w)
}

// rebuild writes a string with some of its parts replaced; a string with
// none replaced is returned as it was, without a copy.
type rebuild struct {
	src     string
	b       strings.Builder
	last    int // src[:last] is written to b
	changed bool
}

// replace replaces src[start:end]; calls come in the order of the parts.
func (r *rebuild) replace(start, end int, repl string) {
	if !r.changed {
		r.b.Grow(len(r.src) + len(repl))
	}
	r.b.WriteString(r.src[r.last:start])
	r.b.WriteString(repl)
	r.last, r.changed = end, true
}

func (r *rebuild) String() string {
	if !r.changed {
		return r.src
	}
	r.b.WriteString(r.src[r.last:])
	return r.b.String()
}

// cookies decides each name=value of a Cookie header, or the first one of a
// Set-Cookie header (the rest are attributes).
func (sc *scan) cookies(loc, v string, set bool) string {
	out := rebuild{src: v}
	start := 0
	for p := range strings.SplitSeq(v, ";") {
		if name, val, ok := strings.Cut(p, "="); ok {
			n := strings.TrimSpace(name)
			if repl := sc.fieldAt(where{base: loc, name: n, named: true}, n, val, kindText, nil); repl != val {
				out.replace(start+len(name)+1, start+len(p), repl)
			}
		}
		if set {
			break
		}
		start += len(p) + 1
	}
	return out.String()
}

// pathNames are the location names of the first path segments, so most
// URLs build none.
var pathNames = func() (n [16]string) {
	for i := range n {
		n[i] = "path[" + strconv.Itoa(i) + "]"
	}
	return n
}()

func pathName(i int) string {
	if i < len(pathNames) {
		return pathNames[i]
	}
	return "path[" + strconv.Itoa(i) + "]"
}

// url scans a request target or URL: userinfo, each path segment and each
// query parameter. Replacements are escaped so the URL stays valid.
func (sc *scan) url(loc, target string) string {
	rest, frag, hasFrag := strings.Cut(target, "#")
	rest, query, hasQuery := strings.Cut(rest, "?")
	out := rebuild{src: target}
	pathStart := 0
	if i := strings.Index(rest, "://"); i >= 0 {
		// Absolute form: scheme://[userinfo@]host[/path].
		pathStart = len(rest)
		if j := strings.IndexByte(rest[i+3:], '/'); j >= 0 {
			pathStart = i + 3 + j
		}
		if at := strings.LastIndexByte(rest[i+3:pathStart], '@'); at >= 0 {
			ui := rest[i+3 : i+3+at]
			if repl := sc.userinfo(loc+".userinfo", ui); repl != ui {
				out.replace(i+3, i+3+at, repl)
			}
		}
	}
	start, i := pathStart, 0
	noLoc := !sc.s.locMayMatchUnder(loc)
	for seg := range strings.SplitSeq(rest[pathStart:], "/") {
		if dec, err := url.PathUnescape(seg); err == nil && dec != "" {
			if repl := sc.fieldAt(where{base: loc, name: pathName(i), named: true, noLoc: noLoc}, "", dec, kindText, nil); repl != dec {
				out.replace(start, start+len(seg), url.PathEscape(repl))
			}
		}
		start += len(seg) + 1
		i++
	}
	if hasQuery {
		if q := sc.pairs(loc+".query", query, '&'); q != query {
			out.replace(len(rest)+1, len(rest)+1+len(query), q)
		}
	}
	if hasFrag {
		if f := sc.pairs(loc+".fragment", frag, '&'); f != frag {
			out.replace(len(target)-len(frag), len(target), f)
		}
	}
	return out.String()
}

func (sc *scan) userinfo(loc, ui string) string {
	user, pass, hasPass := strings.Cut(ui, ":")
	if u, err := url.PathUnescape(user); err == nil {
		if repl := sc.field(loc, "username", u, kindText, nil); repl != u {
			user = url.PathEscape(repl)
		}
	}
	if !hasPass {
		return user
	}
	// A password in a URL is a credential whatever it looks like.
	p, err := url.PathUnescape(pass)
	if err != nil {
		p = pass
	}
	return user + ":" + url.PathEscape(sc.field(loc, "password", p, kindText, nil))
}

// pairs scans name=value pairs (a query string or a urlencoded form),
// leaving untouched pairs byte for byte as they were.
func (sc *scan) pairs(loc, s string, sep byte) string {
	out := rebuild{src: s}
	noLoc := !sc.s.locMayMatchUnder(loc)
	start := 0
	for p := range strings.SplitSeq(s, string(sep)) {
		name, val, _ := strings.Cut(p, "=")
		n, err := url.QueryUnescape(name)
		if err != nil {
			n = name
		}
		v, err := url.QueryUnescape(val)
		if err != nil {
			v = val
		}
		if n != "" || v != "" {
			km := sc.s.keyMatches(n)
			repl := sc.fieldKeyed(where{base: loc, name: n, named: true, noLoc: noLoc}, km, v, kindText, nil)
			replName := n
			if km.nameFinds {
				replName = sc.text(loc, n)
			}
			if replName != n {
				name = url.QueryEscape(replName)
			}
			if repl != v {
				val = url.QueryEscape(repl)
			}
			if repl != v || replName != n {
				out.replace(start, start+len(p), name+"="+val)
			}
		}
		start += len(p) + 1
	}
	return out.String()
}
