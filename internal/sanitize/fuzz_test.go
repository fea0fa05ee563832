package sanitize

import (
	"bytes"
	"strings"
	"testing"

	"github.com/reprise-dev/reprise/internal/contentcoding"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
	"google.golang.org/protobuf/proto"
)

// FuzzDecode: any bytes under any Content-Encoding either decode within the
// limit or fail; never a panic, never more output than the limit.
func FuzzDecode(f *testing.F) {
	plain := []byte(`{"email":"jane.doe@example.com"}`)
	for _, enc := range []string{"gzip", "deflate", "raw-deflate", "br", "zstd"} {
		name := enc
		if enc == "raw-deflate" {
			name = "deflate"
		}
		f.Add(name, compress(f, enc, plain))
	}
	f.Add("gzip, br", []byte("\x1f\x8b\x08"))
	f.Add("zstd", []byte("\x28\xb5\x2f\xfd\x00\x58"))
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, enc string, b []byte) {
		out, err := decode(enc, b, limit)
		if err == nil && len(out) > limit {
			t.Fatalf("decoded %d bytes, limit %d", len(out), limit)
		}
	})
}

const planted = "Fz9-planted-S3cret-value"

// FuzzBody: a body with a planted secret under a sensitive key, followed by
// arbitrary bytes in any sniffed kind, never comes out with the secret.
func FuzzBody(f *testing.F) {
	seeds := []struct{ ct, prefix, rest string }{
		{"application/json", `{"password":"` + planted + `","data":`, `[1,{"a":"b"}]}`},
		{"", `{"password":"` + planted + `","data":`, `{"x":[[[[`},
		{"application/x-www-form-urlencoded", "password=" + planted + "&", "a=b&c=%zz"},
		{"application/xml", "<r><password>" + planted + "</password>", "<a x='1'>t</a></r>"},
		{"text/plain", "password=" + planted + " ", "anything at all"},
		{"multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n" + planted + "\r\n", "--b--\r\n"},
	}
	for _, s := range seeds {
		f.Add(s.ct, s.prefix, []byte(s.rest))
	}
	s := Default()
	f.Fuzz(func(t *testing.T, ct, prefix string, rest []byte) {
		// Only the seeded prefixes plant the secret in a place the rules cover.
		if !strings.Contains(prefix, planted) || strings.Count(prefix, planted) != 1 {
			return
		}
		ok := false
		for _, sd := range seeds {
			if sd.prefix == prefix && sd.ct == ct {
				ok = true
			}
		}
		if !ok || bytes.Contains(rest, []byte(planted[:8])) {
			return
		}
		ex := req("/", hdrs("Content-Type", ct), prefix+string(rest))
		s.Sanitize(ex)
		if bytes.Contains(ex.Request.Body, []byte(planted)) {
			t.Fatalf("planted secret kept in %q", ex.Request.Body)
		}
	})
}

// FuzzSanitize: arbitrary target, header and body never panic, and a second
// pass is a no-op (the sanitizer's markers are stable).
func FuzzSanitize(f *testing.F) {
	for _, tc := range secretCorpus(f) {
		f.Add(tc.ex.GetRequest().GetTarget(), "Cookie", "sid=x; a=b", "application/json", tc.ex.GetRequest().GetBody())
	}
	f.Add("http://u:p@h/a/b?c=d#e=f", "Referer", "https://x/?token=1", "text/xml", []byte("<a b='c'>d<!-- password=x --></a>"))
	s := Default()
	f.Fuzz(func(t *testing.T, target, hname, hvalue, ct string, body []byte) {
		ex := req(target, hdrs(hname, hvalue, "Content-Type", ct), string(body))
		s.Sanitize(ex)
		if ex.Request == nil {
			return
		}
		first := proto.Clone(ex).(*reprisev1.Exchange)
		s.Sanitize(ex)
		if !proto.Equal(first, ex) {
			t.Fatalf("second pass changed the exchange:\n%v\n%v", first, ex)
		}
	})
}

// FuzzLayers: a planted secret under any stack of gzip, zlib and zstd,
// whole or cut, labelled or not, never survives: the stored body, decoded
// as far as its bytes allow, does not hold it.
func FuzzLayers(f *testing.F) {
	f.Add([]byte{0}, uint16(0), false)
	f.Add([]byte{0, 2}, uint16(0), true)
	f.Add([]byte{1, 1, 0}, uint16(7), false)
	f.Add([]byte{2, 0, 1, 2}, uint16(1000), true)
	s := Default()
	codings := []string{"gzip", "deflate", "zstd"}
	f.Fuzz(func(t *testing.T, layers []byte, cut uint16, labelled bool) {
		if len(layers) > 6 {
			return
		}
		b := []byte(`{"password":"` + planted + `"}`)
		var applied []string
		for _, l := range layers {
			c := codings[int(l)%len(codings)]
			b = compress(t, c, b)
			applied = append([]string{c}, applied...) // the outermost first
		}
		if int(cut) < len(b) && cut > 0 {
			b = b[:len(b)-int(cut)]
		}
		var hs []*reprisev1.Header
		if labelled && len(applied) > 0 {
			hs = hdrs("Content-Encoding", applied[0]) // the outermost only: the bytes tell the rest
		}
		ex := resp(hs, b)
		s.Sanitize(ex)
		out := ex.Response.Body
		for c := contentcoding.Sniff(out); c != ""; c = contentcoding.Sniff(out) {
			d, err := contentcoding.Decode(out, c, 1<<20, true)
			if err != nil || bytes.Equal(d, out) {
				break
			}
			out = d
		}
		if bytes.Contains(out, []byte(planted)) {
			t.Fatalf("layers %v cut %d: planted secret stored in %q", applied, cut, out)
		}
	})
}
