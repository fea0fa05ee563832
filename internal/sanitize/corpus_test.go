package sanitize

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"io"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	"github.com/reprise-dev/reprise/internal/header"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Synthetic secrets: each is only ever meant to appear where it is planted.
var (
	secCard     = "4111111111111111"
	secCard2    = "5500 0055 5555 5559"
	secIBAN     = "GB82WEST12345698765432"
	secIBAN2    = "DE89 3704 0044 0532 0130 00"
	secEmail    = "jane.doe@example.com"
	secPhone    = "+1 415-555-0132"
	secPhone2   = "+4915123456789"
	secSSN      = "078-05-1120"
	secAWS      = "AKIAIOSFODNN7EXAMPL3"
	secGitHub   = "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
	secEntropy  = "zP9xQ2vL7mK4nR8tW1yB6cF3hJ5sD0gA"
	secPassword = "correct horse battery staple"
	secBearer   = "opaque-Bearer-9f8e7d6c5b"
	secBasic    = base64.StdEncoding.EncodeToString([]byte("svc-user:hunter2-basic"))
	secPEMBody  = "MIIEowIBAAKCAQEAsecretkeymaterialDONOTSTORE"
	secPEM      = "-----BEGIN RSA PRIVATE KEY-----\n" + secPEMBody + "\n-----END RSA PRIVATE KEY-----"
	secJWTClaim = "claims.only@example.org"
	secJWT      = jwt(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"u-8842","email":"`+secJWTClaim+`"}`)
)

func jwt(header, claims string) string {
	e := base64.RawURLEncoding.EncodeToString
	return e([]byte(header)) + "." + e([]byte(claims)) + ".c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
}

func hdrs(kv ...string) []*reprisev1.Header {
	var hs []*reprisev1.Header
	for i := 0; i < len(kv); i += 2 {
		hs = append(hs, &reprisev1.Header{Name: kv[i], Value: kv[i+1]})
	}
	return hs
}

func compress(t testing.TB, enc string, b []byte) []byte {
	var buf bytes.Buffer
	var w io.WriteCloser
	switch enc {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "deflate":
		w = zlib.NewWriter(&buf)
	case "raw-deflate":
		w, _ = flate.NewWriter(&buf, flate.DefaultCompression)
	case "br":
		w = brotli.NewWriter(&buf)
	case "zstd":
		var err error
		if w, err = zstd.NewWriter(&buf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func req(target string, headers []*reprisev1.Header, body string) *reprisev1.Exchange {
	return &reprisev1.Exchange{
		Id:       "ex-1",
		Request:  &reprisev1.HttpRequest{Method: "POST", Target: target, Headers: headers, Body: []byte(body), BodySize: int64(len(body))},
		Response: &reprisev1.HttpResponse{StatusCode: 200},
	}
}

func resp(headers []*reprisev1.Header, body []byte) *reprisev1.Exchange {
	return &reprisev1.Exchange{
		Id:       "ex-1",
		Request:  &reprisev1.HttpRequest{Method: "GET", Target: "/"},
		Response: &reprisev1.HttpResponse{StatusCode: 200, Headers: headers, Body: body, BodySize: int64(len(body))},
	}
}

type secretCase struct {
	name    string
	ex      *reprisev1.Exchange
	secrets []string
	// wantLoc is the location of one Redaction the case must produce.
	wantLoc string
}

func secretCorpus(t testing.TB) []secretCase {
	jsonDeep := `{"a":{"b":[{"c":{"password":"` + secPassword + `"}},{"note":"card ` + secCard + `"}]},"n":1}`
	multipartBody := "--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n" + secPassword +
		"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"meta\"; filename=\"m.json\"\r\nContent-Type: application/json\r\n\r\n" +
		`{"email":"` + secEmail + `"}` + "\r\n--XyZ--\r\n"
	cases := []secretCase{
		{"header by key name", req("/", hdrs("X-Api-Key", "k-123-short"), ""), []string{"k-123-short"}, "request.headers.X-Api-Key"},
		{"authorization bearer", req("/", hdrs("Authorization", "Bearer "+secBearer), ""), []string{secBearer}, "request.headers.Authorization"},
		{"authorization basic", req("/", hdrs("Authorization", "Basic "+secBasic), ""), []string{secBasic, "hunter2-basic"}, "request.headers.Authorization"},
		{"bearer in another header", req("/", hdrs("X-Forwarded-Auth", "Bearer "+secBearer), ""), []string{secBearer}, "request.headers.X-Forwarded-Auth"},
		{"basic in another header", req("/", hdrs("X-Upstream", "Basic "+secBasic), ""), []string{secBasic}, "request.headers.X-Upstream"},
		{"cookie per cookie", req("/", hdrs("Cookie", "theme=dark; sid=SESSION-abc-123"), ""), []string{"SESSION-abc-123"}, "request.cookies.sid"},
		{"set-cookie", resp(hdrs("Set-Cookie", "sid=SESSION-def-456; Path=/; HttpOnly"), nil), []string{"SESSION-def-456"}, "response.set-cookie.sid"},
		{"query by key", req("/cb?code=1&access_token=qtok-998877", nil, ""), []string{"qtok-998877"}, "request.url.query.access_token"},
		{"query by value", req("/search?q="+url.QueryEscape(secEmail), nil, ""), []string{secEmail}, "request.url.query.q"},
		{"query jwt", req("/x?t="+secJWT, nil, ""), []string{secJWT, secJWTClaim}, "request.url.query.t"},
		{"path segment", req("/users/"+secEmail+"/cards/"+secCard, nil, ""), []string{secEmail, secCard}, "request.url.path[4]"},
		{"url userinfo", req("http://admin:pa55-w0rd-url@api.internal:8080/v1?x=1", nil, ""), []string{"pa55-w0rd-url"}, "request.url.userinfo"},
		{"referer query", req("/", hdrs("Referer", "https://app.example/cb?api_key=ref-key-4455&page=2"), ""), []string{"ref-key-4455"}, "request.headers.Referer.query.api_key"},
		{"json deep key", req("/", hdrs("Content-Type", "application/json"), jsonDeep), []string{secPassword, secCard}, "request.body.a.b[].c.password"},
		{"json number card", req("/", nil, `{"payment":{"pan":`+secCard+`,"amount":12.5}}`), []string{secCard}, "request.body.payment.pan"},
		{"json card key", req("/", nil, `{"card":{"number":"`+secCard2+`","cvv":"737"}}`), []string{secCard2, "737"}, "request.body.card.number"},
		{"json values", req("/", nil, `[{"iban":"`+secIBAN2+`"},{"x":"`+secIBAN+`"},{"tel":"`+secPhone+`"},{"m":"`+secPhone2+`"},{"id":"`+secSSN+`"}]`),
			[]string{secIBAN2, secIBAN, secPhone, secPhone2, secSSN}, "request.body[].x"},
		{"json keys of providers", req("/", nil, `{"aws":"`+secAWS+`","gh":"`+secGitHub+`","blob":"`+secEntropy+`"}`), []string{secAWS, secGitHub, secEntropy}, "request.body.gh"},
		{"json in json string", req("/", nil, `{"payload":"{\"password\":\"`+secPassword+`\"}"}`), []string{secPassword}, "request.body.payload.password"},
		{"jwt in body", req("/", nil, `{"id_token_hint":"x","jwt":"`+secJWT+`"}`), []string{secJWT, secJWTClaim}, "request.body.jwt"},
		{"pem in body", req("/", hdrs("Content-Type", "text/plain"), "key:\n"+secPEM+"\n"), []string{secPEMBody}, "request.body"},
		{"form", req("/login", hdrs("Content-Type", "application/x-www-form-urlencoded"), "user=jd&password="+url.QueryEscape(secPassword)+"&cc="+secCard), []string{secPassword, url.QueryEscape(secPassword), secCard}, "request.body.password"},
		{"form sniffed", req("/login", nil, "user=jd&password=plainpass99"), []string{"plainpass99"}, "request.body.password"},
		{"multipart", req("/upload", hdrs("Content-Type", "multipart/form-data; boundary=XyZ"), multipartBody), []string{secPassword, secEmail}, "request.body.meta.email"},
		{"xml text and attribute", req("/soap", hdrs("Content-Type", "application/xml"), `<?xml version="1.0"?><login><user token="xml-attr-tok-77">jd</user><password>`+secPassword+`</password><ns:note xmlns:ns="urn:x">`+secEmail+`</ns:note></login>`),
			[]string{"xml-attr-tok-77", secPassword, secEmail}, "request.body.login.user.@token"},
		{"json labelled text", req("/", hdrs("Content-Type", "text/plain"), `{"token":"mislabelled-tok-11"}`), []string{"mislabelled-tok-11"}, "request.body.token"},
		{"text key value", req("/", nil, "level=info msg=login api_key=txt-key-5566 user=jd"), []string{"txt-key-5566"}, "request.body.api_key"},
		{"broken json", req("/", hdrs("Content-Type", "application/json"), `{"password": "`+secPassword+`", "trunc`), []string{secPassword}, "request.body.password"},
		{"response json", resp(hdrs("Content-Type", "application/json"), []byte(`{"user":{"email":"`+secEmail+`","ssn":"123456789"}}`)), []string{secEmail, "123456789"}, "response.body.user.email"},
	}
	plain := []byte(`{"user":{"email":"` + secEmail + `","card":"` + secCard + `"}}`)
	for _, enc := range []string{"gzip", "deflate", "raw-deflate", "br", "zstd"} {
		name := enc
		if enc == "raw-deflate" {
			name = "deflate"
		}
		cases = append(cases, secretCase{"compressed " + enc,
			resp(hdrs("Content-Type", "application/json", "Content-Encoding", name, "Content-Length", "999"), compress(t, enc, plain)),
			[]string{secEmail, secCard}, "response.body.user.email"})
	}
	return cases
}

func TestSecretCorpus(t *testing.T) {
	s := Default()
	for _, tc := range secretCorpus(t) {
		t.Run(tc.name, func(t *testing.T) {
			ex := tc.ex
			if !s.Sanitize(ex) {
				t.Fatal("exchange dropped, want kept")
			}
			assertNoSecrets(t, ex, tc.secrets)
			var locs []string
			for _, r := range ex.Redactions {
				locs = append(locs, r.Location+"/"+r.Rule+"/"+r.Action)
			}
			if !strings.Contains(strings.Join(locs, " "), tc.wantLoc+"/") {
				t.Errorf("redactions %v: none at %s", locs, tc.wantLoc)
			}
			// Bodies are stored decoded, with headers that say so.
			for _, m := range []struct {
				hs   []*reprisev1.Header
				body []byte
			}{{ex.Request.GetHeaders(), ex.Request.GetBody()}, {ex.Response.GetHeaders(), ex.Response.GetBody()}} {
				if header.Combined(m.hs, "Content-Encoding") != "" {
					t.Errorf("Content-Encoding kept on a rewritten body")
				}
				if cl := header.Combined(m.hs, "Content-Length"); cl != "" && cl != strconv.Itoa(len(m.body)) {
					t.Errorf("Content-Length %s, body is %d bytes", cl, len(m.body))
				}
			}
			// A second pass (agent, then collector) changes nothing more.
			before := proto.Clone(ex)
			s.Sanitize(ex)
			if !proto.Equal(before, ex) {
				t.Errorf("second pass changed the exchange:\n%v\n%v", before, ex)
			}
		})
	}
}

// assertNoSecrets searches the whole marshalled exchange, plain and in the
// encodings a body or URL could carry it.
func assertNoSecrets(t testing.TB, ex *reprisev1.Exchange, secrets []string) {
	t.Helper()
	b, err := proto.Marshal(ex)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		for _, form := range []string{s, url.QueryEscape(s), url.PathEscape(s), base64.StdEncoding.EncodeToString([]byte(s))} {
			if bytes.Contains(b, []byte(form)) {
				t.Errorf("stored exchange still contains %q (as %q)", s, form)
			}
		}
	}
}
