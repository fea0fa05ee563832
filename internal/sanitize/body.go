package sanitize

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/reprise-dev/reprise/internal/contentcoding"
	"github.com/reprise-dev/reprise/internal/header"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// body decodes, scans and rewrites one body, at loc (request.body or
// response.body). Compression is undone as Content-Encoding says, then as
// the bytes say (a server may compress without saying so, or twice); what
// cannot be decoded is removed. A body in which nothing changed is kept as
// received, compressed or not. A changed one is stored decoded:
// Content-Encoding is removed and Content-Length fixed, so the original
// bytes never reach the store.
func (sc *scan) body(loc string, hs *[]*reprisev1.Header, body *[]byte, size *int64, truncated bool) {
	if len(*body) == 0 {
		return
	}
	b, labelled, reason := sc.decodeBody(header.Combined(*hs, "Content-Encoding"), *body)
	if reason == "" && int64(len(b)) > sc.s.limits.MaxBodyBytes {
		reason = ReasonTooLarge
	}
	if reason != "" {
		sc.remove(loc, reason, body, size)
		return
	}
	recorded := len(sc.out)
	out, err := sc.content(loc, "", header.Combined(*hs, "Content-Type"), b, 0, nil)
	if err != nil {
		reason, ok := isLimit(err)
		if !ok {
			reason = ReasonUnparsable
		}
		sc.out = sc.out[:recorded] // what was found before the failure goes with the body
		sc.remove(loc, reason, body, size)
		return
	}
	if bytes.Equal(out, b) {
		return
	}
	*body = out
	var kept []*reprisev1.Header
	for _, h := range *hs {
		switch {
		case h != nil && labelled && isName(h.Name, "content-encoding"):
			continue
		case h != nil && !truncated && isName(h.Name, "content-length"):
			h.Value = strconv.Itoa(len(out))
		}
		kept = append(kept, h)
	}
	*hs = kept
	if !truncated {
		*size = int64(len(out))
	}
}

// decodeBody undoes the codings Content-Encoding names (labelled: it named
// one), then those the bytes begin with, layer by layer, up to
// limits.max_depth layers. A non-empty reason means the body must go.
func (sc *scan) decodeBody(enc string, b []byte) (out []byte, labelled bool, reason string) {
	limit := sc.s.limits.MaxBodyBytes
	if contentcoding.Encoded(enc) {
		var err error
		if b, err = decode(enc, b, limit); err != nil {
			if reason, ok := isLimit(err); ok {
				return nil, true, reason
			}
			return nil, true, ReasonUndecodable
		}
		labelled = true
	}
	for layers := 0; ; layers++ {
		c := contentcoding.Sniff(b)
		if c == "" {
			return b, labelled, ""
		}
		if layers == sc.s.limits.MaxDepth {
			return nil, labelled, ReasonTooDeep
		}
		d, err := decode(c, b, limit)
		switch reason, isLim := isLimit(err); {
		case isLim:
			return nil, labelled, reason
		case err != nil && c == "deflate" && utf8.Valid(b):
			return b, labelled, "" // text that begins like a zlib header
		case err != nil:
			return nil, labelled, ReasonUndecodable
		}
		b = d
	}
}

// remove fails closed: the body goes, a Redaction says where and why.
func (sc *scan) remove(loc, reason string, body *[]byte, size *int64) {
	*body, *size = nil, 0
	sc.record(loc, reason, ActionRemove)
}

// decode undoes a Content-Encoding list, reading at most limit bytes of
// output; a larger body is a limit reason, not an undecodable one.
func decode(encodings string, b []byte, limit int64) ([]byte, error) {
	out, err := contentcoding.Decode(b, encodings, limit, false)
	if errors.Is(err, contentcoding.ErrTooLarge) {
		return nil, &limitError{ReasonTooLarge}
	}
	return out, err
}

type bodyKind int

const (
	bodyText bodyKind = iota
	bodyJSON
	bodyXML
	bodyForm
	bodyMultipart
)

// sniff looks at the bytes first: Content-Type is often missing or wrong.
func sniff(contentType string, b []byte) (bodyKind, string) {
	t := bytes.TrimLeft(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), " \t\r\n")
	// JSON bytes need the media type only when it may be multipart:
	// parsing it costs a map per body.
	var mt string
	if len(t) == 0 || t[0] != '{' && t[0] != '[' || mayBeMultipart(contentType) {
		var params map[string]string
		mt, params, _ = mime.ParseMediaType(contentType)
		if strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" {
			return bodyMultipart, params["boundary"]
		}
	}
	switch {
	case len(t) == 0:
		return bodyText, ""
	case t[0] == '{' || t[0] == '[':
		return bodyJSON, ""
	case t[0] == '<':
		if mt == "text/html" || bytes.HasPrefix(bytes.ToLower(t[:min(len(t), 14)]), []byte("<!doctype html")) || bytes.HasPrefix(bytes.ToLower(t[:min(len(t), 5)]), []byte("<html")) {
			return bodyText, ""
		}
		return bodyXML, ""
	case bytes.HasPrefix(t, []byte("--")):
		line, _, _ := bytes.Cut(t[2:], []byte("\n"))
		if bd := string(bytes.TrimRight(line, "\r")); bd != "" && len(bd) <= 70 && bytes.Contains(t, []byte("Content-Disposition")) {
			return bodyMultipart, bd
		}
	case mt == "application/x-www-form-urlencoded" || looksLikeForm(t):
		return bodyForm, ""
	}
	return bodyText, ""
}

// mayBeMultipart is false when ct, in any ASCII case, has no "multipart/",
// so its media type cannot be one; non-ASCII takes the parser's word.
func mayBeMultipart(ct string) bool {
	for i := 0; i < len(ct); i++ {
		if ct[i] >= utf8.RuneSelf || hasPrefixFoldASCII(ct[i:], "multipart/") {
			return true
		}
	}
	return false
}

func looksLikeForm(b []byte) bool {
	// A raw [REDACTED] is the text scan's own output (a form scan writes it
	// escaped): the next pass must scan that body as text again, or it
	// would find new values in it.
	if !bytes.ContainsRune(b, '=') || bytes.Contains(b, []byte(Redacted)) {
		return false
	}
	for _, p := range bytes.Split(b, []byte("&")) {
		name, _, ok := bytes.Cut(p, []byte("="))
		if !ok || len(name) == 0 {
			return false
		}
		for _, c := range p {
			if c <= ' ' || c == '"' || c == '<' || c == '{' || c >= 0x7f {
				return false
			}
		}
	}
	return true
}

// content scans a body (or a part of one) by its kind. Only limit errors
// come back: structured bodies that do not parse are scanned as text,
// except multipart, whose fields text patterns cannot find.
func (sc *scan) content(loc, key, contentType string, b []byte, depth int, forced *rule) ([]byte, error) {
	if depth > sc.s.limits.MaxDepth {
		return nil, &limitError{ReasonTooDeep}
	}
	k, boundary := sniff(contentType, b)
	// Redactions of a structured scan that fails are replaced by the text scan's.
	recorded := len(sc.out)
	var out []byte
	var err error
	switch k {
	case bodyJSON:
		out, err = sc.json(loc, key, b, depth, forced)
	case bodyXML:
		out, err = sc.xml(loc, b, depth, forced)
	case bodyMultipart:
		return sc.multipart(loc, boundary, b, depth)
	case bodyForm:
		if forced == nil {
			return []byte(sc.pairs(loc, string(b), '&')), nil
		}
	}
	if err == nil && out != nil {
		return out, nil
	}
	if _, ok := isLimit(err); ok {
		return nil, err
	}
	sc.out = sc.out[:recorded]
	if forced == nil && isBinary(b) {
		if sc.s.opaque == OpaqueRedact {
			return nil, &limitError{ReasonOpaque}
		}
		return sc.binary(loc, key, b)
	}
	if sc.fields++; sc.fields > sc.s.limits.MaxFields {
		return nil, &limitError{ReasonTooMany}
	}
	return []byte(sc.field(loc, key, string(b), kindText, forced)), nil
}

// isBinary: a NUL or bytes that are not UTF-8 (images, protobuf, archives).
func isBinary(b []byte) bool {
	return bytes.IndexByte(b, 0) >= 0 || !utf8.Valid(b)
}

// binary scans the printable runs of a binary body (the strings of a
// protobuf message, the text chunks of an image) with the value detectors
// and key=value patterns. A find is overwritten in place by as many bytes,
// so lengths and offsets inside the format stay as they were. A rule on
// the body's key or location decides it whole: allow keeps it, deny
// overwrites every run.
func (sc *scan) binary(loc, key string, b []byte) ([]byte, error) {
	at := where{base: loc}
	deny, allow := sc.decideKey(at, key)
	if allow {
		return b, nil
	}
	var out []byte
	for i := 0; i < len(b); {
		if !isPrintable(b[i]) {
			i++
			continue
		}
		j := i
		for j < len(b) && isPrintable(b[j]) {
			j++
		}
		if j-i >= sc.s.detectMinLen {
			if sc.fields++; sc.fields > sc.s.limits.MaxFields {
				return nil, &limitError{ReasonTooMany}
			}
			run := string(b[i:j])
			if len(sc.claims) > 0 {
				sc.confirm(at, run, kindText)
			}
			spans := sc.spans(at, run, kindText)
			if deny != nil && !isMarker(run) {
				spans = []span{{0, len(run), 0, activeDetector{&detector{name: deny.Name}, deny.Action}}}
			}
			for _, sp := range spans {
				if out == nil {
					out = bytes.Clone(b)
				}
				if sp.d.detector != nil { // key=value finds are recorded already
					sc.record(sc.locString(at), sp.d.name, sp.d.action)
				}
				fill(out[i+sp.start : i+sp.end])
			}
		}
		i = j
	}
	if out == nil {
		return b, nil
	}
	return out, nil
}

// fill overwrites dst with [REDACTED] and '*', or only '*' when shorter.
func fill(dst []byte) {
	n := 0
	if len(dst) >= len(Redacted) {
		n = copy(dst, Redacted)
	}
	for i := n; i < len(dst); i++ {
		dst[i] = '*'
	}
}

func isPrintable(c byte) bool { return c >= ' ' && c < 0x7f || c == '\t' || c == '\n' || c == '\r' }

type edit struct {
	start, end int
	repl       []byte
}

func splice(b []byte, edits []edit) []byte {
	if len(edits) == 0 {
		return b
	}
	out := make([]byte, 0, len(b))
	last := 0
	for _, e := range edits {
		out = append(append(out, b[last:e.start]...), e.repl...)
		last = e.end
	}
	return append(out, b[last:]...)
}

// xml scans element text, attribute values and comments, keyed by the
// element or attribute name. RawToken keeps namespace prefixes as written.
func (sc *scan) xml(loc string, b []byte, depth int, forced *rule) ([]byte, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	var edits []edit
	type elem struct {
		loc, key string
		forced   *rule
	}
	stack := []elem{{loc, "", forced}}
	start := 0
	for {
		tok, err := d.RawToken()
		if errors.Is(err, io.EOF) && len(stack) > 1 {
			// Truncated XML is scanned as text, the same way on every pass.
			return nil, errors.New("xml: unclosed element")
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		end := int(d.InputOffset())
		top := stack[len(stack)-1]
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) > sc.s.limits.MaxDepth || depth+len(stack) > sc.s.limits.MaxDepth {
				return nil, &limitError{ReasonTooDeep}
			}
			name := t.Name.Local
			e := elem{loc: top.loc + "." + name, key: name, forced: top.forced}
			if e.forced == nil {
				e.forced, _ = sc.decideKey(where{base: e.loc}, name)
			}
			changed := false
			for i, a := range t.Attr {
				if sc.fields++; sc.fields > sc.s.limits.MaxFields {
					return nil, &limitError{ReasonTooMany}
				}
				if repl := sc.field(e.loc+".@"+a.Name.Local, a.Name.Local, a.Value, kindText, e.forced); repl != a.Value {
					t.Attr[i].Value, changed = repl, true
				}
			}
			if changed {
				edits = append(edits, edit{start, end, startTag(t, bytes.HasSuffix(b[start:end], []byte("/>")))})
			}
			stack = append(stack, e)
		case xml.EndElement:
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
		case xml.CharData:
			if len(bytes.TrimSpace(t)) == 0 {
				break
			}
			if sc.fields++; sc.fields > sc.s.limits.MaxFields {
				return nil, &limitError{ReasonTooMany}
			}
			if repl := sc.field(top.loc, top.key, string(t), kindText, top.forced); repl != string(t) {
				var buf bytes.Buffer
				_ = xml.EscapeText(&buf, []byte(repl))
				edits = append(edits, edit{start, end, buf.Bytes()})
			}
		case xml.Comment:
			if repl := sc.field(top.loc+".#comment", "", string(t), kindText, top.forced); repl != string(t) {
				edits = append(edits, edit{start, end, []byte("<!--" + strings.ReplaceAll(repl, "--", "- -") + "-->")})
			}
		}
		start = end
	}
	return splice(b, edits), nil
}

func startTag(t xml.StartElement, selfClosing bool) []byte {
	var buf bytes.Buffer
	buf.WriteString("<" + qname(t.Name))
	for _, a := range t.Attr {
		buf.WriteString(" " + qname(a.Name) + `="`)
		_ = xml.EscapeText(&buf, []byte(a.Value))
		buf.WriteString(`"`)
	}
	if selfClosing {
		buf.WriteString("/")
	}
	buf.WriteString(">")
	return buf.Bytes()
}

func qname(n xml.Name) string {
	if n.Space != "" {
		return n.Space + ":" + n.Local
	}
	return n.Local
}

// multipart scans each part as a field (its form name is the key) or as a
// body of its own, and writes the parts back with the same boundary.
func (sc *scan) multipart(loc, boundary string, b []byte, depth int) ([]byte, error) {
	r := multipart.NewReader(bytes.NewReader(b), boundary)
	var out bytes.Buffer
	w := multipart.NewWriter(&out)
	if err := w.SetBoundary(boundary); err != nil {
		return nil, fmt.Errorf("multipart boundary: %w", err)
	}
	for i := 0; ; i++ {
		p, err := r.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("multipart part %d: %w", i, err)
		}
		data, err := io.ReadAll(io.LimitReader(p, sc.s.limits.MaxBodyBytes+1))
		if err != nil {
			return nil, fmt.Errorf("multipart part %d: %w", i, err)
		}
		name := p.FormName()
		if name == "" {
			name = strconv.Itoa(i)
		}
		partLoc := loc + "." + name
		deny, allow := sc.decideKey(where{base: partLoc}, name)
		if !allow {
			if data, err = sc.content(partLoc, name, p.Header.Get("Content-Type"), data, depth+1, deny); err != nil {
				return nil, err
			}
		}
		pw, err := w.CreatePart(textproto.MIMEHeader(p.Header))
		if err != nil {
			return nil, fmt.Errorf("multipart part %d: %w", i, err)
		}
		if _, err := pw.Write(data); err != nil {
			return nil, fmt.Errorf("multipart part %d: %w", i, err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("multipart close: %w", err)
	}
	return out.Bytes(), nil
}

// limitError is a limit hit while scanning: the body fails closed.
type limitError struct{ reason string }

func (e *limitError) Error() string { return e.reason }

func isLimit(err error) (string, bool) {
	var le *limitError
	if errors.As(err, &le) {
		return le.reason, true
	}
	return "", false
}
