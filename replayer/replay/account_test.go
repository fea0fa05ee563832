package replay

import (
	"net/url"
	"reflect"
	"testing"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
	"github.com/reprise-dev/reprise/replayer/compare"
)

func TestJSONPathOfRedaction(t *testing.T) {
	for loc, want := range map[string]string{
		".user.email":     "$.user.email",
		".items[].card":   "$.items[*].card",
		"[].x":            "$[*].x",
		".m[][].v":        "$.m[*][*].v",
		".User.né":        `$.User["né"]`,
		".login.@token":   `$.login["@token"]`,
		".a b.c":          `$["a b"].c`,
		".tags[]":         "$.tags[*]",
		".weird\"key\".z": `$["weird\"key\""].z`,
	} {
		got := jsonPath(loc)
		if got != want {
			t.Errorf("jsonPath(%q) = %s, want %s", loc, got, want)
		}
		if _, err := compare.ParsePath(got); err != nil {
			t.Errorf("jsonPath(%q) = %s does not parse: %v", loc, got, err)
		}
	}
}

func TestChangesAndCredentials(t *testing.T) {
	base, _ := url.Parse("http://127.0.0.1:59597/staging")
	rec := &reprisev1.HttpRequest{Method: "GET", Target: "/orders/ord-1", Host: "127.0.0.1:47213", Headers: []*reprisev1.Header{
		{Name: "Host", Value: "127.0.0.1:47213"}, {Name: "Authorization", Value: "Bearer prod-token-1"}, {Name: "X-Id", Value: "1"}}}
	sent := &reprisev1.HttpRequest{Method: "GET", Target: "/orders/ord-9", Host: "127.0.0.1:47213", Headers: []*reprisev1.Header{
		{Name: "Host", Value: "127.0.0.1:47213"}, {Name: "Authorization", Value: "Bearer test-token"}, {Name: "X-Id", Value: "2"}, {Name: "X-Env", Value: "replay"}}}
	want := []compare.Replacement{
		{Old: "http://127.0.0.1:47213", New: "http://127.0.0.1:59597/staging"},
		{Old: "https://127.0.0.1:47213", New: "http://127.0.0.1:59597/staging"},
		{Old: "127.0.0.1:47213", New: "127.0.0.1:59597"},
		{Old: "/orders/ord-1", New: "/orders/ord-9"},
		{Old: "Bearer prod-token-1", New: "Bearer test-token"},
		{Old: "prod-token-1", New: "test-token"},
	}
	if got := changes(rec, sent, base); !reflect.DeepEqual(got, want) {
		t.Errorf("changes\n%v\nwant\n%v", got, want)
	}
	if got := ownHeaders(rec, sent); !reflect.DeepEqual(got, []string{RunHeader, "X-Env"}) {
		t.Errorf("own headers %v", got)
	}

	redacted := &reprisev1.Exchange{Redactions: []*reprisev1.Redaction{{Location: "request.headers.X-Api-Key", Rule: "sensitive-key", Action: "redact"}}}
	for _, tt := range []struct {
		headers []*reprisev1.Header
		target  string
		want    string
	}{
		{[]*reprisev1.Header{{Name: "X-Api-Key", Value: "[REDACTED]"}}, "/", "request.headers.X-Api-Key"},
		{[]*reprisev1.Header{{Name: "X-Api-Key", Value: "test-key"}}, "/", ""},                                          // a transform gave one
		{[]*reprisev1.Header{{Name: "Authorization", Value: "Basic [REDACTED]"}}, "/", "request.headers.Authorization"}, // no redaction record
		{nil, "/", ""},
	} {
		if got := missingCredential(redacted, &reprisev1.HttpRequest{Headers: tt.headers, Target: tt.target}); got != tt.want {
			t.Errorf("missingCredential(%v) = %q, want %q", tt.headers, got, tt.want)
		}
	}
	inURL := &reprisev1.Exchange{Redactions: []*reprisev1.Redaction{{Location: "request.url.query.access_token"}}}
	if got := missingCredential(inURL, &reprisev1.HttpRequest{Target: "/x?access_token=%5BREDACTED%5D"}); got != "request.url.query.access_token" {
		t.Errorf("credential in the URL: %q", got)
	}
}
