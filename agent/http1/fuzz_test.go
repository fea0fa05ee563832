package http1

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// FuzzParser feeds the same input whole, byte by byte and in three pieces:
// the parser must not panic, must report the same messages and errors however
// the input is split, and every message must be self-consistent.
func FuzzParser(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), true)
	cfg := Config{BodyCap: 16, MaxHeaderBytes: 512, MaxHeaders: 8}
	methods := strings.Split(strings.Repeat("GET HEAD POST CONNECT ", 16), " ")
	f.Fuzz(func(t *testing.T, in []byte, response bool) {
		whole := parse(cfg, response, methods, [][]byte{in}, true)
		var bytewise [][]byte
		for i := range in {
			bytewise = append(bytewise, in[i:i+1])
		}
		a, b := len(in)/3, 2*len(in)/3
		for name, pieces := range map[string][][]byte{"bytewise": bytewise, "thirds": {in[:a], in[a:b], in[b:]}} {
			h := parse(cfg, response, methods, pieces, true)
			if !reflect.DeepEqual(normal(h.msgs), normal(whole.msgs)) || len(h.errs) != len(whole.errs) {
				t.Fatalf("%s differs from whole:\n got %+v %v\nwant %+v %v", name, normal(h.msgs), h.errs, normal(whole.msgs), whole.errs)
			}
		}
		for _, m := range whole.msgs {
			if err := check(m, cfg, response); err != "" {
				t.Fatalf("%s: %+v", err, *m)
			}
		}
	})
}

// check returns what is inconsistent in m, or "".
func check(m *Message, cfg Config, response bool) string {
	switch {
	case !isProto(m.Proto):
		return "bad proto"
	case response && (m.StatusCode < 100 || m.StatusCode > 999 || m.Method != "" || m.Target != ""):
		return "bad status line"
	case !response && (!isToken(m.Method) || !isTarget(m.Target) || m.StatusCode != 0):
		return "bad request line"
	case len(m.Body) > cfg.BodyCap || int64(len(m.Body)) > m.BodySize:
		return "body over the cap or over its size"
	case m.BodyTruncated != (m.BodySize > int64(len(m.Body))):
		return "truncation flag disagrees with sizes"
	case len(m.Headers) > cfg.MaxHeaders || len(m.Trailers) > cfg.MaxHeaders:
		return "too many fields"
	}
	for _, h := range append(m.Headers, m.Trailers...) {
		if !isToken(h.Name) || strings.ContainsAny(h.Value, "\r\n\x00") {
			return "bad field"
		}
	}
	// A request framed by Content-Length carries exactly that many bytes.
	if cl := m.Get("Content-Length"); !response && !m.Incomplete && cl != "" && m.Get("Transfer-Encoding") == "" {
		if n, err := strconv.ParseInt(strings.TrimSpace(strings.Split(cl, ",")[0]), 10, 64); err != nil || n != m.BodySize {
			return "body size differs from Content-Length"
		}
	}
	return ""
}

// FuzzSkip mixes unavailable bytes (sendfile) and bytes left out past the
// cap into parsing: wherever Skip or Discard is called the parser must stay
// consistent and go on framing.
func FuzzSkip(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"), uint16(38), uint16(10))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n\r\n0\r\n\r\n"), uint16(51), uint16(5))
	// Skipped bytes that run past the body into the next response.
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 204 No Content\r\n\r\n"), uint16(39), uint16(50))
	cfg := Config{BodyCap: 16, MaxHeaderBytes: 512, MaxHeaders: 8}
	f.Fuzz(func(t *testing.T, in []byte, at, skip uint16) {
		p := NewResponseParser(cfg, nil)
		at = min(at, uint16(len(in)))
		var msgs []*Message
		feed := func(b []byte) {
			for len(b) > 0 {
				n, m, err := p.Feed(b)
				if err != nil {
					p.Resync()
				}
				if m != nil {
					msgs = append(msgs, m)
				}
				if n == 0 && m == nil && err == nil {
					t.Fatal("Feed made no progress")
				}
				b = b[n:]
			}
		}
		feed(in[:at])
		// Odd skips are bytes the capture left out past the cap: as many
		// as Discarding says are always accepted.
		if keep, d := p.Discarding(); skip%2 == 1 && keep == 0 && d > 0 {
			if h := p.Head(); h == nil || len(h.Body) < cfg.BodyCap {
				t.Fatalf("Discarding %d before the body reached the cap", d)
			}
			m, used := p.Discard(min(d, int64(skip)))
			if used != min(d, int64(skip)) {
				t.Fatalf("Discard(%d) used %d while Discarding is %d", min(d, int64(skip)), used, d)
			}
			if m != nil {
				msgs = append(msgs, m)
			}
		} else {
			// Bytes a body cannot take are lost: what follows them
			// is found by resyncing.
			m, used := p.Skip(int64(skip))
			if used < 0 || used > int64(skip) || used == 0 && m != nil {
				t.Fatalf("Skip(%d) used %d, message %v", skip, used, m)
			}
			if m != nil {
				msgs = append(msgs, m)
			}
			if used < int64(skip) {
				p.Resync()
			}
		}
		feed(in[at:])
		if m := p.Close(); m != nil {
			msgs = append(msgs, m)
		}
		for _, m := range msgs {
			if err := check(m, cfg, true); err != "" {
				t.Fatalf("%s: %+v", err, *m)
			}
			if m.BodyUnavailable && !m.BodyTruncated {
				t.Fatalf("unavailable body not truncated: %+v", *m)
			}
		}
	})
}
