package replay

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// rawServer answers every request on a connection with 200 and "ok",
// keeping the connection open, and hands over each request's head as it
// came off the wire.
func rawServer(t *testing.T) (*url.URL, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	heads := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					var head strings.Builder
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						head.WriteString(line)
						if line == "\r\n" {
							break
						}
					}
					if strings.Contains(head.String(), "Content-Length: 4\r\n") {
						io.CopyN(io.Discard, br, 4)
					}
					heads <- head.String()
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	u, _ := url.Parse("http://" + ln.Addr().String())
	return u, heads
}

// The request goes out byte for byte as recorded: header order and the
// case of names, Connection and Accept-Encoding, no User-Agent of the
// client's own; Host and the run header are the documented changes.
func TestRequestOnTheWire(t *testing.T) {
	base, heads := rawServer(t)
	r, err := New(options(t, base.String(), time.Second, nil))
	if err != nil {
		t.Fatal(err)
	}
	ex := exchange("GET", "/get?b=2&a=1", hdrs(
		"host", "prod.example.com",
		"accept-language", "*",
		"user-agent", "node",
		"accept", "*/*",
		"connection", "keep-alive",
		"accept-encoding", "gzip, deflate",
	), "", 200, "ok")
	post := exchange("POST", "/post", hdrs("Host", "prod.example.com", "Content-Type", "text/plain", "Content-Length", "4"), "book", 200, "ok")
	for _, e := range []*reprisev1.Exchange{ex, post} {
		if res := r.Replay(context.Background(), e); !res.Passed() {
			t.Fatalf("result %+v", res)
		}
	}
	want := "GET /get?b=2&a=1 HTTP/1.1\r\nhost: " + base.Host + "\r\naccept-language: *\r\nuser-agent: node\r\naccept: */*\r\n" +
		"connection: keep-alive\r\naccept-encoding: gzip, deflate\r\nX-Reprise-Replay: run-1\r\n\r\n"
	if got := <-heads; got != want {
		t.Errorf("on the wire:\n%q\nwant\n%q", got, want)
	}
	want = "POST /post HTTP/1.1\r\nHost: " + base.Host + "\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nX-Reprise-Replay: run-1\r\n\r\n"
	if got := <-heads; got != want {
		t.Errorf("on the wire:\n%q\nwant\n%q", got, want)
	}
}

func TestRequestHeadRefusesInjection(t *testing.T) {
	for _, h := range []*reprisev1.Header{{Name: "X-A", Value: "1\r\nX-Injected: 2"}, {Name: "X A", Value: "1"}, {Name: "", Value: "1"}} {
		if _, err := requestHead("GET", "/", []*reprisev1.Header{h}); err == nil {
			t.Errorf("header %q: %q accepted", h.GetName(), h.GetValue())
		}
	}
	if _, err := requestHead("GET /x HTTP/1.1\r\n", "/", nil); err == nil {
		t.Error("a method with spaces was accepted")
	}
}
