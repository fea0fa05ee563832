package reqtarget

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Target
		wantErr string
	}{
		{in: "/orders?page=2", want: Target{Path: "/orders", Query: "page=2", HasQuery: true}},
		{in: "/files/a%2Fb?q=x%20y", want: Target{Path: "/files/a%2Fb", Query: "q=x%20y", HasQuery: true}},
		{in: "//host/p", want: Target{Path: "//host/p"}},
		{in: "/@evil.example/p", want: Target{Path: "/@evil.example/p"}},
		{in: "/x?", want: Target{Path: "/x", HasQuery: true}},
		{in: "http://prod.example.com:8080/api/orders?page=2", want: Target{Scheme: "http", Host: "prod.example.com:8080", Path: "/api/orders", Query: "page=2", HasQuery: true}},
		{in: "https://prod.example.com", want: Target{Scheme: "https", Host: "prod.example.com", Path: "/"}},
		{in: "x:@127.0.0.1:9/pwn", wantErr: "neither origin form"},
		{in: "x:.evil.example/p", wantErr: "neither origin form"},
		{in: "*", wantErr: "neither origin form"},
		{in: "orders.example.com:443", wantErr: "neither origin form"},
		{in: "http://user:pw@prod.example.com/x", wantErr: "user info"},
		{in: "http://prod.example.com/x#frag", wantErr: "fragment"},
		{in: "/a#b", wantErr: `byte '#'`},
		{in: "/a b", wantErr: `byte ' '`},
		{in: "/a\r\nHost: evil", wantErr: `byte '\r'`},
		{in: "/a%zz", wantErr: "starts no escape"},
		{in: "/a%4", wantErr: "starts no escape"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

// Whatever a recording holds, an accepted target is an origin-form path
// and query that parses back to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"/orders?page=2", "http://h:1/a?b", "x:@127.0.0.1:9/pwn", "//h/p", "/a%2F", "https://h", "*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := Parse(s)
		if err != nil {
			return
		}
		uri := tg.RequestURI()
		if !strings.HasPrefix(uri, "/") || strings.ContainsAny(uri, "# \r\n\x00") {
			t.Fatalf("Parse(%q) gives request URI %q", s, uri)
		}
		back, err := Parse(uri)
		if err != nil || back.RequestURI() != uri || back.Host != "" {
			t.Fatalf("Parse(%q) = %q, which parses to %+v, %v", s, uri, back, err)
		}
	})
}
