package sanitize

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestKeyTokens: the built-in key rules read names by tokens, in every
// spelling, and never read a registered HTTP field name as secret.
func TestKeyTokens(t *testing.T) {
	s := Default()
	secret := func(key string) bool {
		// A rule that selects by key (the cookie rule selects by location).
		km := s.keyMatches(key)
		for i, r := range slices.Concat(s.allow, s.deny) {
			if km.match[i] && len(r.keys) > 0 && len(r.locations) == 0 {
				return true
			}
		}
		return false
	}
	for _, key := range []string{
		"password", "Password", "user_password", "userPassword", "userpassword", "PASSWORD_HASH", "db.password",
		"X-Api-Key", "api_key", "apiKey", "APIKey", "API.KEY", "x-api-key", "access_token", "accessToken",
		"AccessToken", "csrftoken", "refresh-token", "id_token", "tokens", "client_secret", "clientSecret",
		"secretkey", "secret_key", "session_id", "sessionId", "JSESSIONID", "credentials", "aws_credentials",
		"X-Amz-Signature", "X-Goog-Signature", "signature", "sig", "Authorization", "proxy-authorization",
		"card", "cvv", "pin", "otp", "ssn", "password2", "oauth2Token", "X-Auth-Token", "private_key",
	} {
		if !secret(key) {
			t.Errorf("%q: no built-in key rule, want secret", key)
		}
	}
	for _, key := range []string{
		"Access-Control-Allow-Credentials", "access-control-allow-headers", "Content-Security-Policy",
		"X-Request-Id", "traceparent", "Cache-Control", "ETag", "Sec-Fetch-Site", "Strict-Transport-Security",
		"tokenizer", "session_idle_timeout", "token_type", "tokenType", "password_min_length", "secret_name",
		"max_tokens", "prompt_tokens", "completion_tokens", "total_tokens", "token_expires_in", "pinned",
		"spinner", "cardinality", "keyboard", "Signature-Input-Hint", "tokens_used", "X-RateLimit-Remaining",
	} {
		if secret(key) {
			t.Errorf("%q: a built-in key rule matches, want none", key)
		}
	}
}

// TestRegisteredFieldsKeepUserRules: a rules file may still name a
// registered field, and its value still meets the detectors.
func TestRegisteredFieldsKeepUserRules(t *testing.T) {
	s := load(t, "deny:\n  - name: no-trace\n    keys: [x-request-id]\n")
	ex := resp(hdrs("X-Request-Id", "r-1", "Access-Control-Allow-Credentials", "true", "Link", "<mailto:"+secEmail+">"), nil)
	s.Sanitize(ex)
	got := map[string]string{}
	for _, h := range ex.Response.Headers {
		got[h.Name] = h.Value
	}
	if got["X-Request-Id"] != Redacted || got["Access-Control-Allow-Credentials"] != "true" || got["Link"] != "<mailto:"+Redacted+">" {
		t.Errorf("headers %v", got)
	}
}

func TestKeyNameTokens(t *testing.T) {
	for _, c := range []struct {
		key  string
		want []string
	}{
		{"X-Api-Key", []string{"x", "api", "key"}},
		{"APIKey", []string{"api", "key"}},
		{"oauth2Token", []string{"oauth", "2", "token"}},
		{"user_password.hash", []string{"user", "password", "hash"}},
		{"JSESSIONID", []string{"jsessionid"}},
		{"a[b]", []string{"a", "[", "b", "]"}},
	} {
		kn := newKeyName(c.key)
		var got []string
		for i := 0; i < len(kn.n); {
			tok, next := kn.tokenAfter(i)
			got = append(got, tok)
			i = next
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("tokens of %q = %q, want %q", c.key, got, c.want)
		}
	}
}

// TestOAuthRedirect: the one-time code and state of an OAuth redirect are
// redacted in Location; the rest of the URL is kept.
func TestOAuthRedirect(t *testing.T) {
	ex := resp(hdrs("Location", "https://app.example/cb?code=SplxlOBeZQQYbYS6WxSbIA&state=af0ifjsldkj&lang=en#nonce=n-0S6_WzA2Mj"), nil)
	Default().Sanitize(ex)
	want := "https://app.example/cb?code=%5BREDACTED%5D&state=%5BREDACTED%5D&lang=en#nonce=%5BREDACTED%5D"
	if got := ex.Response.Headers[0].Value; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
}

// TestPlainLocation: a location plainLocation passes has nothing any
// detector finds, on the corpora and on random inputs.
func TestPlainLocation(t *testing.T) {
	s := Default()
	check := func(loc string) {
		if plainLocation(loc) && s.mayFind(loc) {
			t.Fatalf("plainLocation(%q), but a detector finds something", loc)
		}
	}
	for _, tc := range secretCorpus(t) {
		check(string(tc.ex.GetRequest().GetBody()))
		check(tc.ex.GetRequest().GetTarget())
	}
	r := rand.New(rand.NewPCG(9, 10))
	for range 30_000 {
		check(randomDetectorInput(r))
	}
	if !plainLocation("request.body.items[].sku") || plainLocation("request.url.query."+secEmail) {
		t.Error("plainLocation misjudges a plain or an e-mail location")
	}
}
