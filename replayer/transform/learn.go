package transform

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Learn notes the values that got carries where rec had different ones: id-
// like JSON fields at the same path, and cookies set under the same name.
// Later requests of the session get the replayed values instead.
func (p *Pipeline) Learn(session string, rec, got *reprisev1.HttpResponse) {
	if p.learnKeys == nil || rec == nil || got == nil {
		return
	}
	found := map[string]string{}
	if a, ok := decodeJSON(rec.GetBody()); ok {
		if b, ok := decodeJSON(got.GetBody()); ok {
			p.diffJSON("", a, b, found)
		}
	}
	recCookies, gotCookies := setCookies(rec.GetHeaders()), setCookies(got.GetHeaders())
	for name, old := range recCookies {
		if v, ok := gotCookies[name]; ok && v != old && old != "" {
			found[old] = v
		}
	}
	if len(found) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.learned[session]
	if m == nil {
		m = map[string]string{}
		p.learned[session] = m
	}
	for k, v := range found {
		m[k] = v
	}
}

func (p *Pipeline) learnable(key string) bool {
	for _, re := range p.learnKeys {
		if re.MatchString(key) {
			return true
		}
	}
	return false
}

// diffJSON walks a and b together and notes differing scalar values under
// learnable keys.
func (p *Pipeline) diffJSON(key string, a, b any, found map[string]string) {
	switch a := a.(type) {
	case map[string]any:
		if b, ok := b.(map[string]any); ok {
			for k, va := range a {
				if vb, ok := b[k]; ok {
					p.diffJSON(k, va, vb, found)
				}
			}
		}
	case []any:
		if b, ok := b.([]any); ok {
			for i := range min(len(a), len(b)) {
				p.diffJSON(key, a[i], b[i], found)
			}
		}
	default:
		sa, okA := scalar(a)
		sb, okB := scalar(b)
		if okA && okB && sa != sb && sa != "" && key != "" && p.learnable(key) {
			found[sa] = sb
		}
	}
}

// scalar is the text of a JSON string or number.
func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	}
	return "", false
}

func decodeJSON(body []byte) (any, bool) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || (body[0] != '{' && body[0] != '[') {
		return nil, false
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil || d.More() {
		return nil, false
	}
	return v, true
}

func encodeJSON(v any) []byte {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func setCookies(hs []*reprisev1.Header) map[string]string {
	out := map[string]string{}
	for _, h := range hs {
		if textproto.CanonicalMIMEHeaderKey(h.GetName()) != "Set-Cookie" {
			continue
		}
		if c, err := http.ParseSetCookie(h.GetValue()); err == nil {
			out[c.Name] = c.Value
		}
	}
	return out
}

// substitute replaces whole learned values in the path segments, query
// values, headers (whole, after an auth scheme, or as cookie values) and
// JSON body leaves of req. Only whole values are replaced, so an old id
// "1" never changes "/v1" or "10".
func substitute(req *reprisev1.HttpRequest, subst map[string]string) {
	req.Target = substituteTarget(req.GetTarget(), subst)
	for _, h := range req.GetHeaders() {
		h.Value = substituteHeader(textproto.CanonicalMIMEHeaderKey(h.GetName()), h.GetValue(), subst)
	}
	if !jsonBody(req) {
		return
	}
	if v, ok := decodeJSON(req.GetBody()); ok {
		if v, changed := substituteJSON(v, subst); changed {
			if b := encodeJSON(v); b != nil {
				req.Body, req.BodySize = b, int64(len(b))
			}
		}
	}
}

// jsonBody reports whether the body is plain JSON that may be rewritten: a
// compressed body is left alone.
func jsonBody(req *reprisev1.HttpRequest) bool {
	for _, h := range req.GetHeaders() {
		if textproto.CanonicalMIMEHeaderKey(h.GetName()) == "Content-Encoding" && !strings.EqualFold(h.GetValue(), "identity") {
			return false
		}
	}
	return len(req.GetBody()) > 0
}

func substituteTarget(target string, subst map[string]string) string {
	path, query, hasQuery := strings.Cut(target, "?")
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if u, err := url.PathUnescape(s); err == nil {
			if v, ok := subst[u]; ok {
				segs[i] = url.PathEscape(v)
			}
		}
	}
	out := strings.Join(segs, "/")
	if !hasQuery {
		return out
	}
	return out + "?" + mapQuery(query, func(_, v string) (string, bool) {
		nv, ok := subst[v]
		return nv, ok
	})
}

// mapQuery rewrites the values of a raw query that f changes, keeping the
// rest of the query byte for byte.
func mapQuery(query string, f func(key, value string) (string, bool)) string {
	pairs := strings.Split(query, "&")
	for i, pair := range pairs {
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			continue
		}
		key, err1 := url.QueryUnescape(k)
		value, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			continue
		}
		if nv, ok := f(key, value); ok {
			pairs[i] = k + "=" + url.QueryEscape(nv)
		}
	}
	return strings.Join(pairs, "&")
}

func substituteHeader(name, value string, subst map[string]string) string {
	if v, ok := subst[value]; ok {
		return v
	}
	if name == "Cookie" {
		parts := strings.Split(value, ";")
		for i, part := range parts {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if nv, found := subst[v]; ok && found {
				parts[i] = k + "=" + nv
			} else {
				parts[i] = strings.TrimSpace(part)
			}
		}
		return strings.Join(parts, "; ")
	}
	// "Bearer <token>" and other scheme-prefixed values.
	if scheme, rest, ok := strings.Cut(value, " "); ok {
		if v, found := subst[rest]; found {
			return scheme + " " + v
		}
	}
	return value
}

func substituteJSON(v any, subst map[string]string) (any, bool) {
	changed := false
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if ne, c := substituteJSON(e, subst); c {
				t[k], changed = ne, true
			}
		}
		return t, changed
	case []any:
		for i, e := range t {
			if ne, c := substituteJSON(e, subst); c {
				t[i], changed = ne, true
			}
		}
		return t, changed
	case string:
		if nv, ok := subst[t]; ok {
			return nv, true
		}
	case json.Number:
		if nv, ok := subst[t.String()]; ok {
			// Keep a number a number when the new value is one.
			var f float64
			if json.Unmarshal([]byte(nv), &f) == nil {
				return json.Number(nv), true
			}
			return nv, true
		}
	}
	return v, false
}
