package sanitize

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func hdrs(kv ...string) []*reprisev1.Header {
	var hs []*reprisev1.Header
	for i := 0; i < len(kv); i += 2 {
		hs = append(hs, &reprisev1.Header{Name: kv[i], Value: kv[i+1]})
	}
	return hs
}

func TestSanitize(t *testing.T) {
	tests := []struct {
		name     string
		req      []*reprisev1.Header
		resp     []*reprisev1.Header
		secrets  []string
		wantReq  []*reprisev1.Header
		wantResp []*reprisev1.Header
		wantLocs []string
	}{
		{
			name:     "all four headers",
			req:      hdrs("Authorization", "Bearer tok-1", "Proxy-Authorization", "Basic cHJveHk=", "Cookie", "sid=abc123"),
			resp:     hdrs("Set-Cookie", "sid=def456; HttpOnly"),
			secrets:  []string{"tok-1", "cHJveHk=", "abc123", "def456"},
			wantReq:  hdrs("Authorization", Redacted, "Proxy-Authorization", Redacted, "Cookie", Redacted),
			wantResp: hdrs("Set-Cookie", Redacted),
			wantLocs: []string{"request.headers.Authorization", "request.headers.Proxy-Authorization", "request.headers.Cookie", "response.headers.Set-Cookie"},
		},
		{
			name:     "mixed case keeps the wire name",
			req:      hdrs("authorization", "Bearer lower", "COOKIE", "a=upper"),
			resp:     hdrs("set-COOKIE", "b=mixed"),
			secrets:  []string{"lower", "upper", "mixed"},
			wantReq:  hdrs("authorization", Redacted, "COOKIE", Redacted),
			wantResp: hdrs("set-COOKIE", Redacted),
			wantLocs: []string{"request.headers.authorization", "request.headers.COOKIE", "response.headers.set-COOKIE"},
		},
		{
			name:     "multiple occurrences",
			req:      hdrs("Cookie", "a=first", "Accept", "*/*", "Cookie", "b=second"),
			resp:     hdrs("Set-Cookie", "c=third", "Set-Cookie", "d=fourth"),
			secrets:  []string{"first", "second", "third", "fourth"},
			wantReq:  hdrs("Cookie", Redacted, "Accept", "*/*", "Cookie", Redacted),
			wantResp: hdrs("Set-Cookie", Redacted, "Set-Cookie", Redacted),
			wantLocs: []string{"request.headers.Cookie", "request.headers.Cookie", "response.headers.Set-Cookie", "response.headers.Set-Cookie"},
		},
		{
			name:     "benign headers untouched",
			req:      hdrs("Accept", "application/json", "X-Request-Id", "r-1", "Authorization-Hint", "none"),
			resp:     hdrs("Content-Type", "text/plain", "Cookie", "response cookies are not a request header"),
			wantReq:  hdrs("Accept", "application/json", "X-Request-Id", "r-1", "Authorization-Hint", "none"),
			wantResp: hdrs("Content-Type", "text/plain", "Cookie", "response cookies are not a request header"),
		},
		{
			name:     "set-cookie on a request is not the response header",
			req:      hdrs("Set-Cookie", "odd"),
			wantReq:  hdrs("Set-Cookie", "odd"),
			wantResp: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := &reprisev1.Exchange{
				Id:       "ex-1",
				Request:  &reprisev1.HttpRequest{Method: "GET", Target: "/", Headers: tt.req},
				Response: &reprisev1.HttpResponse{StatusCode: 200, Headers: tt.resp},
			}
			Sanitize(ex)

			if !equalHeaders(ex.Request.Headers, tt.wantReq) {
				t.Errorf("request headers = %v, want %v", ex.Request.Headers, tt.wantReq)
			}
			if !equalHeaders(ex.Response.Headers, tt.wantResp) {
				t.Errorf("response headers = %v, want %v", ex.Response.Headers, tt.wantResp)
			}
			var locs []string
			for _, r := range ex.Redactions {
				locs = append(locs, r.Location)
				if r.Rule != "sensitive-header" || r.Action != "redact" {
					t.Errorf("redaction %v: want rule sensitive-header, action redact", r)
				}
			}
			if strings.Join(locs, ",") != strings.Join(tt.wantLocs, ",") {
				t.Errorf("redaction locations = %q, want %q", locs, tt.wantLocs)
			}
			b, err := proto.Marshal(ex)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.secrets {
				if strings.Contains(string(b), s) {
					t.Errorf("marshalled exchange still contains %q", s)
				}
			}

			// A second pass (agent then collector) adds nothing.
			n := len(ex.Redactions)
			Sanitize(ex)
			if len(ex.Redactions) != n {
				t.Errorf("second pass added %d redactions", len(ex.Redactions)-n)
			}
		})
	}
}

func TestSanitizeNilParts(t *testing.T) {
	ex := &reprisev1.Exchange{Id: "no-request-or-response"}
	Sanitize(ex)
	if len(ex.Redactions) != 0 {
		t.Errorf("redactions = %v, want none", ex.Redactions)
	}
}

func equalHeaders(got, want []*reprisev1.Header) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			return false
		}
	}
	return true
}
