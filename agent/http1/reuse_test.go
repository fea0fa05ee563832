package http1

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestReuse parses keep-alive requests the way the agent does: each message
// is recycled and its body released once its fields were copied out. What
// was kept of earlier messages (strings, bodies of messages not released)
// must stay as parsed, and every message must parse as if alone.
func TestReuse(t *testing.T) {
	p := NewRequestParser(Config{})
	type kept struct {
		target, host string
		body         []byte
		want         string
	}
	var keep []kept
	for i := range 40 {
		// Bodies around the pooled sizes, some in one size class.
		body := strings.Repeat(string(rune('a'+i%26)), []int{10, 5000, 4096, 4097, 65536, 70000}[i%6]+i)
		var hs strings.Builder
		for j := range i % 12 { // over and under the fields a message holds inline
			fmt.Fprintf(&hs, "X-F%d: v%d-%d\r\n", j, i, j)
		}
		in := fmt.Sprintf("POST /r/%d HTTP/1.1\r\nHost: h%d\r\n%sContent-Length: %d\r\n\r\n%s", i, i, hs.String(), len(body), body)
		n, m, err := p.Feed([]byte(in))
		if err != nil || m == nil || n != len(in) {
			t.Fatalf("request %d: n=%d m=%v err=%v", i, n, m, err)
		}
		if m.Target != fmt.Sprintf("/r/%d", i) || m.Get("Host") != fmt.Sprintf("h%d", i) || len(m.Headers) != i%12+2 ||
			string(m.Body) != body {
			t.Fatalf("request %d parsed as %q %q, %d fields, body %d bytes", i, m.Target, m.Get("Host"), len(m.Headers), len(m.Body))
		}
		for j := range i % 12 {
			if got, want := m.Get(fmt.Sprintf("X-F%d", j)), fmt.Sprintf("v%d-%d", i, j); got != want {
				t.Fatalf("request %d: X-F%d = %q, want %q", i, j, got, want)
			}
		}
		keep = append(keep, kept{m.Target, m.Get("Host"), m.Body, body})
		p.Recycle(m)
		if i%3 != 0 { // the others are kept, like exchanges not acknowledged yet
			ReleaseBody(m.Body)
			keep[i].body = nil
		}
	}
	for i, k := range keep {
		if k.target != fmt.Sprintf("/r/%d", i) || k.host != fmt.Sprintf("h%d", i) || k.body != nil && !bytes.Equal(k.body, []byte(k.want)) {
			t.Errorf("request %d changed after later ones: %q %q", i, k.target, k.host)
		}
	}
}

// TestRecycleKeepsMessageInProgress checks that a message whose body is
// still arriving is not taken back.
func TestRecycleKeepsMessageInProgress(t *testing.T) {
	p := NewRequestParser(Config{})
	_, _, err := p.Feed([]byte("POST /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nab"))
	h := p.Head()
	if err != nil || h == nil {
		t.Fatalf("head %v, err %v", h, err)
	}
	p.Recycle(h)
	_, m, err := p.Feed([]byte("cd"))
	if err != nil || m != h || m.Target != "/a" || string(m.Body) != "abcd" {
		t.Fatalf("got %+v, err %v", m, err)
	}
}

func TestBodyClass(t *testing.T) {
	last := -1
	for n := minPooled - 10; n <= maxPooled+10; n++ {
		c, size := bodyClass(n)
		if n <= minPooled || n > maxPooled {
			if c != -1 {
				t.Fatalf("%d bytes pooled in class %d", n, c)
			}
			continue
		}
		if c < last || c >= len(bodyPools) || size < n || 5*(size-n) >= size {
			t.Fatalf("%d bytes: class %d (after %d) of %d bytes", n, c, last, size)
		}
		if c2, size2 := bodyClass(size); c2 != c || size2 != size {
			t.Fatalf("a buffer of %d bytes is class %d of %d, not %d", size, c2, size2, c)
		}
		last = c
	}
	if last != len(bodyPools)-1 {
		t.Fatalf("last class %d of %d", last, len(bodyPools))
	}
}
