package httpstream

import (
	"testing"
)

func TestFilter(t *testing.T) {
	tests := []struct {
		methods, paths []string
		method, target string
		want           bool
	}{
		{nil, nil, "GET", "/anything", true},
		{[]string{"post", "PUT"}, nil, "POST", "/x", true},
		{[]string{"post", "PUT"}, nil, "GET", "/x", false},
		{nil, []string{"/api/"}, "GET", "/api/orders?id=1", true},
		{nil, []string{"/api/"}, "GET", "/health", false},
		{nil, []string{"/api/*/items"}, "GET", "/api/v2/items?x=/y", true},
		{nil, []string{"/api/*/items"}, "GET", "/api/v2/x/items", true}, // internal/pathglob: * crosses slashes
		{nil, []string{"/api/*/items"}, "GET", "/api/v2/x/items/1", false},
		{[]string{"GET"}, []string{"/healthz", "/orders/[0-9]*"}, "GET", "/orders/42", true},
		{[]string{"GET"}, []string{"/healthz", "/orders/[0-9]*"}, "DELETE", "/orders/42", false},
	}
	for _, tc := range tests {
		f, err := NewFilter(tc.methods, tc.paths)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Match(tc.method, tc.target); got != tc.want {
			t.Errorf("%v %v: Match(%s %s) = %v", tc.methods, tc.paths, tc.method, tc.target, got)
		}
	}
	for _, bad := range []string{"api", "/a/[", "/a/[*"} {
		if _, err := NewFilter(nil, []string{bad}); err == nil {
			t.Errorf("NewFilter(%q) accepted", bad)
		}
	}
}

func TestTrackerFilter(t *testing.T) {
	f, err := NewFilter([]string{"GET"}, []string{"/api/"})
	if err != nil {
		t.Fatal(err)
	}
	s := server(id1).open().
		in("GET /api/a HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na").
		in("GET /metrics HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nm").
		in("POST /api/b HTTP/1.1\r\nContent-Length: 1\r\n\r\nb").out("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n").
		in("GET /api/c HTTP/1.1\r\n\r\n").out("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc").close()
	tr, got := run(Config{Filter: f}, s.events)
	// Sequence numbers count every exchange of the connection, so gaps
	// show where filtered ones were.
	if s := summaries(got); s != "#0 GET /api/a -> 200 [a]\n#3 GET /api/c -> 200 [c]\n" {
		t.Fatalf("got %s", s)
	}
	if st := tr.Stats(); st.Filtered != 2 || st.Exchanges != 2 {
		t.Fatalf("stats %+v", st)
	}
}
