package pathglob

import (
	"database/sql"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

var cases = []struct {
	glob  string
	path  string
	match bool
}{
	{"/api/*", "/api/orders", true},
	{"/api/*", "/api/orders/7/items", true}, // * crosses slashes
	{"/api/*", "/api", false},
	{"/api/*/items", "/api/orders/7/items", true},
	{"/orders/?", "/orders/7", true},
	{"/orders/?", "/orders/77", false},
	{"/orders/[0-9]*", "/orders/7/x", true},
	{"/orders/[0-9]*", "/orders/x7", false},
	{"/orders/[^0-9]*", "/orders/x7", true},
	{"/a[]]b", "/a]b", true},
	{"/a[*]b", "/a*b", true},
	{"/a[*]b", "/axb", false},
	{"/Orders", "/orders", false}, // case-sensitive
	{"/prix/é?", "/prix/éa", true},
	{"/prix/?", "/prix/é", true}, // ? is one character, not one byte
	{"/x.y", "/xzy", false},      // regexp metacharacters are literal
	{"/a\\b", "/a\\b", true},
}

func TestMatch(t *testing.T) {
	for _, c := range cases {
		g, err := Compile(c.glob)
		if err != nil {
			t.Fatalf("Compile(%q): %v", c.glob, err)
		}
		if got := g.Match(c.path); got != c.match {
			t.Errorf("%q matches %q: %v, want %v", c.glob, c.path, got, c.match)
		}
	}
}

// The dialect is SQLite's GLOB: every case gives what SQLite itself says,
// so the store's query and every in-memory matcher agree.
func TestAgreesWithSQLite(t *testing.T) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, c := range cases {
		var sqlite bool
		if err := db.QueryRow("SELECT ? GLOB ?", c.path, c.glob).Scan(&sqlite); err != nil {
			t.Fatal(err)
		}
		if sqlite != c.match {
			t.Errorf("SQLite says %q GLOB %q is %v, the table says %v", c.path, c.glob, sqlite, c.match)
		}
	}
}

func TestCompileRefuses(t *testing.T) {
	for _, tt := range []struct{ glob, want string }{
		{"/a[bc", "unclosed [ at offset 2"},
		{"/a[z-a]", "invalid character class range"},
		{"/\xff", "not valid UTF-8"},
		{"/" + strings.Repeat("*", MaxLen), "at most 1024"},
	} {
		if _, err := Compile(tt.glob); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Compile(%q) = %v, want an error with %q", tt.glob, err, tt.want)
		}
	}
}

func TestPrefix(t *testing.T) {
	for glob, want := range map[string]string{"/api/*": "/api/", "/a?b": "/a", "/x": "/x", "[ab]": ""} {
		if got := Prefix(glob); got != want {
			t.Errorf("Prefix(%q) = %q, want %q", glob, got, want)
		}
	}
}

func FuzzCompile(f *testing.F) {
	for _, c := range cases {
		f.Add(c.glob, c.path)
	}
	f.Fuzz(func(t *testing.T, glob, path string) {
		g, err := Compile(glob)
		if err != nil {
			return
		}
		g.Match(path)
		if !strings.HasPrefix(glob, Prefix(glob)) {
			t.Fatalf("prefix %q of %q", Prefix(glob), glob)
		}
		if !HasWildcard(glob) && g.Match(path) != (glob == path) {
			t.Fatalf("literal %q vs %q", glob, path)
		}
	})
}
