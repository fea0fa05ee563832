package sanitize

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

type benign struct{ key, value string }

func benignCorpus(t testing.TB) []benign {
	f, err := os.Open("testdata/benign.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []benign
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "\t"); ok && !strings.HasPrefix(k, "#") {
			out = append(out, benign{k, v})
		}
	}
	return out
}

// TestBenignFalsePositives places each benign value in a JSON body, a query
// parameter and a header, and measures how many the sanitizer changes.
func TestBenignFalsePositives(t *testing.T) {
	s := Default()
	corpus := benignCorpus(t)
	placements, changed := 0, 0
	for _, b := range corpus {
		q, _ := json.Marshal(b.value)
		leaf := string(q)
		if json.Valid([]byte(b.value)) && b.value[0] != '"' {
			leaf = b.value // numbers and booleans stay JSON literals
		}
		body := `{"` + b.key + `":` + leaf + `}`
		exs := map[string]*reprisev1.Exchange{
			"json":   req("/", hdrs("Content-Type", "application/json"), body),
			"query":  req("/q?"+url.QueryEscape(b.key)+"="+url.QueryEscape(b.value), nil, ""),
			"header": req("/", hdrs("X-"+b.key, b.value), ""),
		}
		for where, ex := range exs {
			placements++
			s.Sanitize(ex)
			if len(ex.Redactions) > 0 {
				changed++
				t.Logf("false positive: %s %s=%q by %s", where, b.key, b.value, ex.Redactions[0].Rule)
			}
		}
	}
	rate := float64(changed) / float64(placements)
	fmt.Printf("benign corpus: %d values x 3 placements = %d, changed %d, false-positive rate %.1f%%\n", len(corpus), placements, changed, 100*rate)
	if rate > 0.05 {
		t.Errorf("false-positive rate %.1f%%, want at most 5%%", 100*rate)
	}
}

func writeRules(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var testKey = []byte("0123456789abcdef-test-key")

func load(t *testing.T, yaml string) *Sanitizer {
	t.Helper()
	s, err := Load(writeRules(t, yaml), testKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func bodyOf(t *testing.T, s *Sanitizer, body string) (map[string]any, []*reprisev1.Redaction) {
	t.Helper()
	ex := req("/", hdrs("Content-Type", "application/json"), body)
	s.Sanitize(ex)
	var m map[string]any
	if err := json.Unmarshal(ex.Request.Body, &m); err != nil {
		t.Fatalf("sanitized body %q is not JSON: %v", ex.Request.Body, err)
	}
	return m, ex.Redactions
}

func TestPrecedence(t *testing.T) {
	s := load(t, `
allow:
  - name: csrf-is-public
    keys: [csrf_token]
  - name: test-cards
    values: ['^4242424242424242$']
  - name: public-profile
    locations: ["request.body.profile"]
deny:
  - name: password-mask
    keys: [password]
    action: mask
  - name: email-tokens
    keys: [email]
    action: tokenize
  - name: drop-admin
    keys: [admin_secret]
    action: drop
detectors:
  phone: off
  iban: redact
`)
	m, reds := bodyOf(t, s, `{
		"csrf_token": "keep-me-123",
		"session_token": "gone-456",
		"test_card": "4242424242424242",
		"real_card": "4111111111111111",
		"password": "a-long-password-9876",
		"email": "jane.doe@example.com",
		"contact": "jane.doe@example.com",
		"tel": "+1 415-555-0132",
		"iban": "GB82WEST12345698765432",
		"profile": {"email": "public@example.com", "secret": "kept-too"},
		"jwt": "`+secJWT+`"
	}`)
	want := map[string]any{
		"csrf_token":    "keep-me-123",      // allow beats the built-in *token* rule
		"session_token": Redacted,           // built-in deny
		"test_card":     "4242424242424242", // allow by value beats the card detector
		"real_card":     "****1111",         // detector, built-in mask
		"password":      "****9876",         // user deny beats the built-in redact
		"contact":       Redacted,           // email detector: the deny rule is by key only
		"tel":           "+1 415-555-0132",  // detector switched off
		"iban":          Redacted,           // detector action overridden
		"jwt":           Redacted,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if tok, _ := m["email"].(string); !tokenRe.MatchString(tok) {
		t.Errorf("email = %v, want a token (deny rule beats the detector)", m["email"])
	}
	if p := m["profile"].(map[string]any); p["email"] != "public@example.com" || p["secret"] != "kept-too" {
		t.Errorf("profile = %v, want the allow-listed subtree untouched", p)
	}
	rules := map[string]string{}
	for _, r := range reds {
		rules[r.Location] = r.Rule + "/" + r.Action
	}
	for loc, want := range map[string]string{
		"request.body.session_token": "sensitive-key/redact",
		"request.body.password":      "password-mask/mask",
		"request.body.email":         "email-tokens/tokenize",
		"request.body.contact":       "email/redact",
		"request.body.jwt":           "jwt/redact", // the JWT detector wins over entropy
	} {
		if rules[loc] != want {
			t.Errorf("redaction at %s = %q, want %q", loc, rules[loc], want)
		}
	}

	// A drop rule drops the whole exchange, and nothing of it is left.
	ex := req("/", nil, `{"admin_secret":"x-1","password":"p"}`)
	if s.Sanitize(ex) {
		t.Fatal("Sanitize kept an exchange a drop rule matched")
	}
	if ex.Request != nil || ex.Response != nil {
		t.Errorf("dropped exchange keeps request/response: %v", ex)
	}
	if r := ex.Redactions[len(ex.Redactions)-1]; r.Location != "exchange" || r.Rule != "drop-admin" || r.Action != ActionDrop {
		t.Errorf("last redaction = %v, want the drop marker", r)
	}
	if c := s.Counts(); c["drop-admin"] != 1 || c["password-mask"] != 2 || c["jwt"] != 1 {
		t.Errorf("counts = %v, want drop-admin 1, password-mask 2, jwt 1", c)
	}
}

func TestBuiltinOff(t *testing.T) {
	s := load(t, "builtin: false\ndeny:\n  - name: only\n    keys: [only]\n")
	m, _ := bodyOf(t, s, `{"password":"kept","only":"gone","mail":"jane@example.com"}`)
	if m["password"] != "kept" || m["only"] != Redacted || m["mail"] != "jane@example.com" {
		t.Errorf("body = %v, want only the file's rule applied", m)
	}
}

func TestTypesAndTokens(t *testing.T) {
	s := load(t, `
deny:
  - name: ids
    keys: [customer]
    action: tokenize
  - name: scores
    keys: [score]
`)
	body := `{"customer":"cus-1","again":{"customer":"cus-1"},"other":{"customer":"cus-2"},
		"score":[1,2.5,-3],"ids":{"customer":123456},"secret":{"a":[true,null,"x",{"b":7}]}}`
	ex := req("/", nil, body)
	s.Sanitize(ex)
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(ex.Request.Body))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("body %s: %v", ex.Request.Body, err)
	}
	t1, t2, t3 := m["customer"], m["again"].(map[string]any)["customer"], m["other"].(map[string]any)["customer"]
	if t1 != t2 || t1 == t3 || !tokenRe.MatchString(t1.(string)) {
		t.Errorf("tokens %v %v %v: want equal for equal values, different otherwise", t1, t2, t3)
	}
	if n, ok := m["ids"].(map[string]any)["customer"].(json.Number); !ok || n.String() == "123456" {
		t.Errorf("tokenized number = %v, want another number", m["ids"])
	}
	if sc := m["score"].([]any); len(sc) != 3 || sc[0] != json.Number("0") || sc[2] != json.Number("0") {
		t.Errorf("score = %v, want three zeros (array length and types kept)", sc)
	}
	sec := m["secret"].(map[string]any)["a"].([]any)
	if len(sec) != 4 || sec[0] != true || sec[1] != nil || sec[2] != Redacted || sec[3].(map[string]any)["b"] != json.Number("0") {
		t.Errorf("secret = %v, want [true null [REDACTED] {b:0}]", sec)
	}

	// Another key gives other tokens: they cannot be computed without it.
	other, err := Load(writeRules(t, "deny:\n  - name: ids\n    keys: [customer]\n    action: tokenize\n"), []byte("another-key-of-16-bytes"))
	if err != nil {
		t.Fatal(err)
	}
	ex2 := req("/", nil, `{"customer":"cus-1"}`)
	other.Sanitize(ex2)
	if strings.Contains(string(ex2.Request.Body), t1.(string)) {
		t.Errorf("two keys gave the same token %v", t1)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"deny:\n  - name: x\n    keys: [a]\n    action: hide\n", `line 2: deny[0].action (x): "hide" is not one of`},
		{"deny:\n  - name: x\n    kyes: [a]\n", `line 3: unknown rule field "kyes"`},
		{"deny:\n  - keys: [a]\n", "line 2: deny[0].name: required"},
		{"allow:\n  - name: y\n", "line 2: allow[0] (y): needs at least one of keys, locations, values"},
		{"allow:\n  - name: y\n    keys: [a]\n    action: redact\n", "allow rules take no action"},
		{"deny:\n  - name: re\n    values: ['(']\n", "line 2: deny[0].values[0] (re): error parsing regexp"},
		{"detectors:\n  cards: redact\n", "line 2: detectors.cards: unknown detector"},
		{"detectors:\n  card: shred\n", `line 2: detectors.card: "shred" is not one of`},
		{"limit:\n  max_depth: 3\n", "line 1: field limit not found"},
	}
	for _, tt := range tests {
		_, err := Load(writeRules(t, tt.yaml), testKey)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%q) = %v, want an error containing %q", tt.yaml, err, tt.want)
		}
	}
	// Tokenize without a key is a start-up error, not a silent redact.
	_, err := Load(writeRules(t, "deny:\n  - name: t\n    keys: [a]\n    action: tokenize\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "deny rule t (line 2) tokenizes but no token key is set") {
		t.Errorf("tokenize without key: %v", err)
	}
	_, err = Load(writeRules(t, "detectors:\n  email: tokenize\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "REPRISE_TOKEN_KEY") {
		t.Errorf("tokenize detector without key: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil); err == nil {
		t.Error("Load of a missing file: no error")
	}
}

func TestExampleRulesFile(t *testing.T) {
	if _, err := Load("../../deploy/sanitize.yaml", testKey); err != nil {
		t.Fatalf("deploy/sanitize.yaml: %v", err)
	}
}

func TestKeyFromEnvOrFile(t *testing.T) {
	t.Setenv("REPRISE_TOKEN_KEY", "env-key-0123456789")
	if k, err := KeyFromEnvOrFile(""); err != nil || string(k) != "env-key-0123456789" {
		t.Errorf("env key = %q, %v", k, err)
	}
	p := filepath.Join(t.TempDir(), "key")
	os.WriteFile(p, []byte("file-key-0123456789\n"), 0o600)
	if k, err := KeyFromEnvOrFile(p); err != nil || string(k) != "file-key-0123456789" {
		t.Errorf("file key = %q, %v (the file wins over the environment)", k, err)
	}
	t.Setenv("REPRISE_TOKEN_KEY", "short")
	if _, err := KeyFromEnvOrFile(""); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("short key: %v", err)
	}
	os.Unsetenv("REPRISE_TOKEN_KEY")
	if k, err := KeyFromEnvOrFile(""); k != nil || err != nil {
		t.Errorf("no key = %q, %v, want nil, nil", k, err)
	}
	if _, err := KeyFromEnvOrFile(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("missing key file: no error")
	}
}

func TestFailClosed(t *testing.T) {
	s := load(t, "limits:\n  max_body_bytes: 65536\n  max_depth: 8\n  max_fields: 50\n")
	bomb := compress(t, "gzip", bytes.Repeat([]byte(`{"a":"`+secEmail+`"}`), 100_000))
	manyFields := "[" + strings.Repeat(`"x",`, 60) + `"x"]`
	tests := []struct {
		name, reason string
		headers      []*reprisev1.Header
		body         []byte
	}{
		{"corrupt gzip", ReasonUndecodable, hdrs("Content-Encoding", "gzip"), []byte("\x1f\x8bnot gzip " + secEmail)},
		{"truncated zstd", ReasonUndecodable, hdrs("Content-Encoding", "zstd"), compress(t, "zstd", []byte(`{"email":"`+secEmail+`"}`))[:12]},
		{"unknown encoding", ReasonUndecodable, hdrs("Content-Encoding", "compress"), []byte(secEmail)},
		{"gzip bomb", ReasonTooLarge, hdrs("Content-Encoding", "gzip"), bomb},
		{"gzip bomb without Content-Encoding", ReasonTooLarge, hdrs("Content-Type", "application/json"), bomb},
		{"zstd bomb inside gzip", ReasonTooLarge, hdrs("Content-Encoding", "gzip"), compress(t, "gzip", compress(t, "zstd", bytes.Repeat([]byte("a"), 1<<20)))},
		{"too large", ReasonTooLarge, nil, bytes.Repeat([]byte("a "+secEmail), 10_000)},
		{"too deep", ReasonTooDeep, nil, []byte(strings.Repeat("[", 20) + `"` + secEmail + `"` + strings.Repeat("]", 20))},
		{"too many fields", ReasonTooMany, nil, []byte(manyFields)},
		{"broken multipart", ReasonUnparsable, hdrs("Content-Type", "multipart/form-data; boundary=b"), []byte("--b\r\nContent-Disposition: form-data; name=\"p\"\r\n\r\n" + secEmail)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := resp(tt.headers, tt.body)
			if !s.Sanitize(ex) {
				t.Fatal("dropped, want kept without its body")
			}
			if len(ex.Response.Body) != 0 || ex.Response.BodySize != 0 {
				t.Errorf("body kept: %q", ex.Response.Body)
			}
			want := &reprisev1.Redaction{Location: "response.body", Rule: tt.reason, Action: ActionRemove}
			if len(ex.Redactions) != 1 || !proto.Equal(ex.Redactions[0], want) {
				t.Errorf("redactions = %v, want %v", ex.Redactions, want)
			}
			assertNoSecrets(t, ex, []string{secEmail})
		})
	}
	if c := s.Counts(); c[ReasonUndecodable] != 3 || c[ReasonTooLarge] != 4 {
		t.Errorf("counts = %v", c)
	}
}

func TestHeadersAndCookies(t *testing.T) {
	ex := &reprisev1.Exchange{
		Request: &reprisev1.HttpRequest{Method: "GET", Target: "/", Headers: hdrs(
			"authorization", "Bearer lower", "Accept", "*/*", "Authorization-Hint", "none", "Set-Cookie", "odd=1")},
		Response: &reprisev1.HttpResponse{StatusCode: 200, Headers: hdrs(
			"set-COOKIE", "a=first; Path=/", "Set-Cookie", "b=second; Expires=Wed, 21 Oct 2026 07:28:00 GMT", "Cookie", "not=a-response-header")},
	}
	Default().Sanitize(ex)
	got := func(hs []*reprisev1.Header) (out []string) {
		for _, h := range hs {
			out = append(out, h.Name+": "+h.Value)
		}
		return out
	}
	wantReq := []string{"authorization: " + Redacted, "Accept: */*", "Authorization-Hint: none", "Set-Cookie: odd=1"}
	wantResp := []string{"set-COOKIE: a=" + Redacted + "; Path=/", "Set-Cookie: b=" + Redacted + "; Expires=Wed, 21 Oct 2026 07:28:00 GMT", "Cookie: not=a-response-header"}
	if g := got(ex.Request.Headers); fmt.Sprint(g) != fmt.Sprint(wantReq) {
		t.Errorf("request headers = %q, want %q", g, wantReq)
	}
	if g := got(ex.Response.Headers); fmt.Sprint(g) != fmt.Sprint(wantResp) {
		t.Errorf("response headers = %q, want %q", g, wantResp)
	}
	// Nil parts and nil headers are not an error.
	for _, ex := range []*reprisev1.Exchange{{Id: "empty"}, {Request: &reprisev1.HttpRequest{Headers: []*reprisev1.Header{nil}}}} {
		if !Default().Sanitize(ex) || len(ex.Redactions) != 0 {
			t.Errorf("Sanitize(%v): redactions %v", ex, ex.Redactions)
		}
	}
}

// TestConcurrent runs one Sanitizer from many goroutines (under -race).
func TestConcurrent(t *testing.T) {
	s := Default()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, tc := range secretCorpus(t) {
				s.Sanitize(tc.ex)
			}
		})
	}
	wg.Wait()
	if s.Counts()["email"] == 0 {
		t.Error("no email redactions counted")
	}
}

// TestOverlapsMerge: when two detectors find overlapping text, neither
// leaves a part of its find behind.
func TestOverlapsMerge(t *testing.T) {
	tail := "9xQ2vL7mK4nR8tW1yB6cF3hJ5sD0gA"
	ex := req("/", hdrs("X-Note", "see jane@example.comzP"+tail+" now", "X-Auth", "Bearer "+secJWT), "")
	Default().Sanitize(ex)
	if got := ex.Request.Headers[0].Value; got != "see "+Redacted+" now" {
		t.Errorf("X-Note = %q, want the email and the token redacted as one", got)
	}
	if got := ex.Request.Headers[1].Value; got != "Bearer "+Redacted {
		t.Errorf("X-Auth = %q", got)
	}
	rules := []string{}
	for _, r := range ex.Redactions {
		rules = append(rules, r.Rule)
	}
	if fmt.Sprint(rules) != "[email jwt]" {
		t.Errorf("rules = %v, want [email jwt] (the earlier detector names a merged find)", rules)
	}
}

// Leaves' locations are built only when needed: location rules must still
// see them, in any case, and Redactions must name them in full.
func TestLeafLocations(t *testing.T) {
	s := load(t, `
deny:
  - name: user-notes
    locations: ["request.body.user.*"]
`)
	m, reds := bodyOf(t, s, `{"User": {"Notes": "x", "n\u00e9": "y", "tags": ["z"], "Deep": [{"a": "w"}]}, "note": "kept", "": {"": "q"},
		"us": "kept too", "other": {"user": {"a": "kept"}}}`)
	user := m["User"].(map[string]any)
	if user["Notes"] != Redacted || user["né"] != Redacted || user["tags"].([]any)[0] != Redacted || m["note"] != "kept" || m["us"] != "kept too" {
		t.Errorf("body = %v", m)
	}
	// Containers decide once whether a location rule can match under them.
	if deep := user["Deep"].([]any)[0].(map[string]any); deep["a"] != Redacted {
		t.Errorf("User.Deep = %v", deep)
	}
	if other := m["other"].(map[string]any)["user"].(map[string]any); other["a"] != "kept" {
		t.Errorf("other.user = %v", other)
	}
	var locs []string
	for _, r := range reds {
		locs = append(locs, r.Location)
	}
	slices.Sort(locs)
	if want := []string{"request.body.User.Deep[].a", "request.body.User.Notes", "request.body.User.n\u00e9", "request.body.User.tags[]"}; !slices.Equal(locs, want) {
		t.Errorf("locations = %q, want %q", locs, want)
	}
}

// TestKeyCacheBounded: more distinct keys than the key cache holds, from
// two goroutines, are each still decided by their rules, and the cache
// stops growing at its bound.
func TestKeyCacheBounded(t *testing.T) {
	s := Default()
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Go(func() {
			for i := range keyCacheMax * 3 / 4 {
				body := fmt.Sprintf(`{"item%d_%d":"hello","Item%d_%d_Token":"hello"}`, g, i, g, i)
				ex := req("/", hdrs("Content-Type", "application/json"), body)
				s.Sanitize(ex)
				want := fmt.Sprintf(`{"item%d_%d":"hello","Item%d_%d_Token":"[REDACTED]"}`, g, i, g, i)
				if got := string(ex.Request.Body); got != want {
					t.Errorf("body %s sanitized to %s, want %s", body, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	if n := len(*s.keys.Load()) + len(s.newKeys); n > keyCacheMax || n < keyCacheMax/2 {
		t.Errorf("key cache holds %d keys, want at most %d (and most of them cached)", n, keyCacheMax)
	}
}

// TestManyLocations: an exchange with more redactions than one buffer of
// location strings holds reports each at its own location.
func TestManyLocations(t *testing.T) {
	var body strings.Builder
	var want []string
	body.WriteString(`{"account":{`)
	for i := range 60 {
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `"nested_%02d":{"long_field_name_%02d_password":"hunter2"}`, i, i)
		want = append(want, fmt.Sprintf("request.body.account.nested_%02d.long_field_name_%02d_password", i, i))
	}
	body.WriteString(`}}`)
	_, reds := bodyOf(t, Default(), body.String())
	var got []string
	for _, r := range reds {
		got = append(got, r.Location)
	}
	if !slices.Equal(got, want) {
		t.Errorf("locations = %q, want %q", got, want)
	}
}

// TestSniffMultipartType: a multipart Content-Type wins over bytes that
// look like JSON, in any case; JSON bytes skip parsing other types.
func TestSniffMultipartType(t *testing.T) {
	for _, tc := range []struct {
		ct, body string
		kind     bodyKind
		boundary string
	}{
		{"MultiPart/Form-Data; boundary=b", `{"a":1}`, bodyMultipart, "b"},
		{" multipart/mixed;boundary=\"x y\"", `[1]`, bodyMultipart, "x y"},
		{"application/json", `{"a":1}`, bodyJSON, ""},
		{"text/plain; charset=\u00e9", `[1]`, bodyJSON, ""},
		{"multipart/form-data", `{"a":1}`, bodyJSON, ""}, // no boundary
	} {
		if k, b := sniff(tc.ct, []byte(tc.body)); k != tc.kind || b != tc.boundary {
			t.Errorf("sniff(%q, %q) = %v, %q; want %v, %q", tc.ct, tc.body, k, b, tc.kind, tc.boundary)
		}
	}
}

// TestLocationRulesOutsideBodies: headers, path segments and query
// parameters decide once per exchange whether a location rule can match
// there; rules that can still match each of them.
func TestLocationRulesOutsideBodies(t *testing.T) {
	s := load(t, `
deny:
  - name: loc
    locations: ["request.headers.x-secret", "request.url.path[2]", "request.url.query.q", "response.headers.x-*"]
`)
	ex := req("/a/b/c?q=one&r=two", hdrs("X-Secret", "hidden", "X-Other", "shown"), "")
	ex.Response = &reprisev1.HttpResponse{StatusCode: 200, Headers: hdrs("X-Resp", "hidden", "Server", "shown")}
	s.Sanitize(ex)
	if got, want := ex.Request.Target, "/a/"+url.PathEscape(Redacted)+"/c?q="+url.QueryEscape(Redacted)+"&r=two"; got != want {
		t.Errorf("target = %q, want %q", got, want)
	}
	got := map[string]string{}
	for _, h := range append(ex.Request.Headers, ex.Response.Headers...) {
		got[h.Name] = h.Value
	}
	if want := map[string]string{"X-Secret": Redacted, "X-Other": "shown", "X-Resp": Redacted, "Server": "shown"}; !maps.Equal(got, want) {
		t.Errorf("headers = %v, want %v", got, want)
	}
}

// TestHasKVWord: the byte loop finds a key word where lowering the whole
// value does, in any case and with the Unicode folds (?i) accepts.
func TestHasKVWord(t *testing.T) {
	pieces := []string{"Pass", "pas", "SECRET", "toKen", "kEy", "credentia", "Credential", "SeSsIoN", "ssn", "SS", "\u212aey", "\u017f", "é", "x", " ", "=", "c", "T"}
	r := rand.New(rand.NewPCG(5, 6))
	for range 20_000 {
		var b strings.Builder
		for n := r.IntN(6); n >= 0; n-- {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		v := b.String()
		l := strings.ToLower(v)
		if got, want := hasKVWord(v), slices.ContainsFunc(kvWords, func(w string) bool { return strings.Contains(l, w) }); got != want {
			t.Fatalf("hasKVWord(%q) = %v, want %v", v, got, want)
		}
	}
}
