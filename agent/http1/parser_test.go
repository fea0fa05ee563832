package http1

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

// harness feeds a stream to a parser the way httpstream does: Resync after
// every error, and a queue of request methods for responses.
type harness struct {
	p       *Parser
	methods []string // methods of the requests responses answer, in order
	msgs    []*Message
	errs    []error
}

func newHarness(cfg Config, response bool, methods ...string) *harness {
	h := &harness{methods: methods}
	if response {
		h.p = NewResponseParser(cfg, func() string {
			if len(h.methods) == 0 {
				return ""
			}
			return h.methods[0]
		})
	} else {
		h.p = NewRequestParser(cfg)
	}
	return h
}

func (h *harness) feed(data []byte) {
	for len(data) > 0 {
		n, m, err := h.p.Feed(data)
		data = data[n:]
		if err != nil {
			h.errs = append(h.errs, err)
			h.p.Resync()
			continue
		}
		if n == 0 && m == nil {
			panic("Feed made no progress")
		}
		if m != nil {
			h.msgs = append(h.msgs, m)
			if m.StatusCode >= 200 && len(h.methods) > 0 {
				h.methods = h.methods[1:]
			}
		}
	}
}

func (h *harness) close() {
	if m := h.p.Close(); m != nil {
		h.msgs = append(h.msgs, m)
	}
}

// parse runs the whole input through a fresh harness in the given pieces.
func parse(cfg Config, response bool, methods []string, pieces [][]byte, eof bool) *harness {
	h := newHarness(cfg, response, methods...)
	for _, b := range pieces {
		h.feed(b)
	}
	if eof {
		h.close()
	}
	return h
}

// splits returns the input whole, cut at every byte boundary, and byte by byte.
func splits(in []byte) map[string][][]byte {
	out := map[string][][]byte{"whole": {in}}
	for i := 1; i < len(in); i++ {
		out[fmt.Sprintf("split at %d", i)] = [][]byte{in[:i], in[i:]}
	}
	var bytewise [][]byte
	for i := range in {
		bytewise = append(bytewise, in[i:i+1])
	}
	out["bytewise"] = bytewise
	return out
}

// normal makes empty and nil slices compare equal.
func normal(ms []*Message) []Message {
	out := make([]Message, len(ms))
	for i, m := range ms {
		out[i] = *m
		if len(m.Body) == 0 {
			out[i].Body = nil
		}
		if len(m.Headers) == 0 {
			out[i].Headers = nil
		}
		if len(m.Trailers) == 0 {
			out[i].Trailers = nil
		}
	}
	return out
}

func hdrs(kv ...string) []Header {
	var hs []Header
	for i := 0; i < len(kv); i += 2 {
		hs = append(hs, Header{kv[i], kv[i+1]})
	}
	return hs
}

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		response bool
		methods  []string
		cfg      Config
		in       string
		eof      bool
		want     []Message
		errs     int
	}{
		{
			name: "get keeps header order and case",
			in:   "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nx-Lower: v\r\nAccept:  */* \r\n\r\n",
			want: []Message{{Method: "GET", Target: "/a?b=1", Proto: "HTTP/1.1",
				Headers: hdrs("Host", "example.com", "x-Lower", "v", "Accept", "*/*")}},
		},
		{
			name: "post with content-length",
			in:   "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
			want: []Message{{Method: "POST", Target: "/p", Proto: "HTTP/1.1",
				Headers: hdrs("Content-Length", "5"), Body: []byte("hello"), BodySize: 5}},
		},
		{
			name: "chunked with extensions and trailers",
			in: "POST /c HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" +
				"4;name=val\r\nWiki\r\n5 ; x\r\npedia\r\n0\r\nChecksum: abc\r\nX-T: 1\r\n\r\n",
			want: []Message{{Method: "POST", Target: "/c", Proto: "HTTP/1.1",
				Headers: hdrs("Transfer-Encoding", "gzip, chunked"), Body: []byte("Wikipedia"), BodySize: 9,
				Trailers: hdrs("Checksum", "abc", "X-T", "1")}},
		},
		{
			name: "pipelined requests and empty lines between them",
			in: "GET /1 HTTP/1.1\r\n\r\n" + "POST /2 HTTP/1.1\r\nContent-Length: 2\r\n\r\nab" +
				"\r\n" + "PUT /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
			want: []Message{
				{Method: "GET", Target: "/1", Proto: "HTTP/1.1"},
				{Method: "POST", Target: "/2", Proto: "HTTP/1.1", Headers: hdrs("Content-Length", "2"), Body: []byte("ab"), BodySize: 2},
				{Method: "PUT", Target: "/3", Proto: "HTTP/1.1", Headers: hdrs("Transfer-Encoding", "chunked"), Body: []byte("z"), BodySize: 1},
			},
		},
		{
			name: "http/1.0 with bare LF and folded header",
			in:   "GET / HTTP/1.0\nX-Fold: a\n  b\n\n",
			want: []Message{{Method: "GET", Target: "/", Proto: "HTTP/1.0", Headers: hdrs("X-Fold", "a b")}},
		},
		{
			name: "body over the cap is counted, head kept",
			cfg:  Config{BodyCap: 4},
			in:   "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789GET / HTTP/1.1\r\n\r\n",
			want: []Message{
				{Method: "POST", Target: "/", Proto: "HTTP/1.1", Headers: hdrs("Content-Length", "10"),
					Body: []byte("0123"), BodySize: 10, BodyTruncated: true},
				{Method: "GET", Target: "/", Proto: "HTTP/1.1"},
			},
		},
		{
			name: "chunked over the cap",
			cfg:  Config{BodyCap: 3},
			in:   "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n",
			want: []Message{{Method: "POST", Target: "/", Proto: "HTTP/1.1", Headers: hdrs("Transfer-Encoding", "chunked"),
				Body: []byte("abc"), BodySize: 5, BodyTruncated: true}},
		},
		{
			name: "transfer-encoding wins over content-length",
			in:   "POST / HTTP/1.1\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
			want: []Message{{Method: "POST", Target: "/", Proto: "HTTP/1.1",
				Headers: hdrs("Content-Length", "99", "Transfer-Encoding", "chunked"), Body: []byte("x"), BodySize: 1}},
		},
		{
			name:     "response with content-length then chunked",
			response: true,
			methods:  []string{"GET", "GET"},
			in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" +
				"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nno!\r\n0\r\n\r\n",
			want: []Message{
				{StatusCode: 200, Reason: "OK", Proto: "HTTP/1.1", Headers: hdrs("Content-Length", "2"), Body: []byte("hi"), BodySize: 2},
				{StatusCode: 404, Reason: "Not Found", Proto: "HTTP/1.1", Headers: hdrs("Transfer-Encoding", "chunked"), Body: []byte("no!"), BodySize: 3},
			},
		},
		{
			name:     "no body for HEAD, 204 and 304",
			response: true,
			methods:  []string{"HEAD", "GET", "GET", "GET"},
			in: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" +
				"HTTP/1.1 204 No Content\r\n\r\n" +
				"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n" +
				"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
			want: []Message{
				{StatusCode: 200, Reason: "OK", Proto: "HTTP/1.1", Headers: hdrs("Content-Length", "100")},
				{StatusCode: 204, Reason: "No Content", Proto: "HTTP/1.1"},
				{StatusCode: 304, Reason: "Not Modified", Proto: "HTTP/1.1", Headers: hdrs("Content-Length", "100")},
				{StatusCode: 200, Reason: "OK", Proto: "HTTP/1.1", Headers: hdrs("Content-Length", "1"), Body: []byte("x"), BodySize: 1},
			},
		},
		{
			name:     "1xx is a message of its own",
			response: true,
			methods:  []string{"POST"},
			in:       "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201\r\nContent-Length: 0\r\n\r\n",
			want: []Message{
				{StatusCode: 100, Reason: "Continue", Proto: "HTTP/1.1"},
				{StatusCode: 201, Proto: "HTTP/1.1", Headers: hdrs("Content-Length", "0")},
			},
		},
		{
			name:     "close-delimited body ends at eof",
			response: true,
			methods:  []string{"GET"},
			in:       "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nall of\r\nthis",
			eof:      true,
			want: []Message{{StatusCode: 200, Reason: "OK", Proto: "HTTP/1.0", Headers: hdrs("Server", "x"),
				Body: []byte("all of\r\nthis"), BodySize: 12}},
		},
		{
			name:     "eof inside a body reports the message incomplete",
			response: true,
			methods:  []string{"GET"},
			in:       "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
			eof:      true,
			want: []Message{{StatusCode: 200, Reason: "OK", Proto: "HTTP/1.1", Headers: hdrs("Content-Length", "10"),
				Body: []byte("abc"), BodySize: 3, Incomplete: true}},
		},
		{
			name: "eof inside a head reports nothing",
			in:   "GET / HTTP/1.1\r\nHost: a\r\n",
			eof:  true,
		},
		{
			name: "garbage is an error, then resync finds the next request",
			in:   "\x00\x01garbage\r\n\r\nxyz}GET /next HTTP/1.1\r\nHost: h\r\n\r\n",
			errs: 1,
			want: []Message{{Method: "GET", Target: "/next", Proto: "HTTP/1.1", Headers: hdrs("Host", "h")}},
		},
		{
			name:     "bad status line, then resync",
			response: true,
			methods:  []string{"GET", "GET"},
			in:       "HTTP/1.1 2x0 OK\r\n\r\nbody bytes HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
			errs:     1,
			want:     []Message{{StatusCode: 200, Reason: "OK", Proto: "HTTP/1.1", Headers: hdrs("Content-Length", "0")}},
		},
	}
	for _, tt := range tests {
		for split, pieces := range splits([]byte(tt.in)) {
			h := parse(tt.cfg, tt.response, tt.methods, pieces, tt.eof)
			if got := normal(h.msgs); !reflect.DeepEqual(got, tt.want) && (len(got) != 0 || len(tt.want) != 0) {
				t.Fatalf("%s, %s:\n got %+v\nwant %+v", tt.name, split, got, tt.want)
			}
			if len(h.errs) != tt.errs {
				t.Fatalf("%s, %s: errors %v, want %d", tt.name, split, h.errs, tt.errs)
			}
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name     string
		response bool
		cfg      Config
		in       string
		want     error
	}{
		{name: "no version", in: "GET /\r\n\r\n", want: ErrMalformed},
		{name: "space in target", in: "GET /a b HTTP/1.1\r\n\r\n", want: ErrMalformed},
		{name: "http/2 preface", in: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", want: ErrMalformed},
		{name: "space before colon", in: "GET / HTTP/1.1\r\nHost : a\r\n\r\n", want: ErrMalformed},
		{name: "NUL in value", in: "GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n", want: ErrMalformed},
		{name: "fold first", in: "GET / HTTP/1.1\r\n x\r\n\r\n", want: ErrMalformed},
		{name: "bad content-length", in: "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", want: ErrMalformed},
		{name: "conflicting content-length", in: "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", want: ErrMalformed},
		{name: "request te without chunked", in: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", want: ErrMalformed},
		{name: "bad chunk size", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", want: ErrMalformed},
		{name: "chunk without CRLF", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab", want: ErrMalformed},
		{name: "status 099", response: true, in: "HTTP/1.1 099 X\r\n\r\n", want: ErrMalformed},
		{name: "head too large", cfg: Config{MaxHeaderBytes: 64}, in: "GET / HTTP/1.1\r\nA: " + strings.Repeat("a", 64) + "\r\n\r\n", want: ErrHeaderTooLarge},
		{name: "endless head", cfg: Config{MaxHeaderBytes: 64}, in: "GET / HTTP/1.1\r\n" + strings.Repeat("A: b\r\n", 100), want: ErrHeaderTooLarge},
		{name: "too many fields", cfg: Config{MaxHeaders: 2}, in: "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", want: ErrTooManyHeaders},
	}
	for _, tt := range tests {
		for split, pieces := range splits([]byte(tt.in)) {
			h := parse(tt.cfg, tt.response, nil, pieces, true)
			if len(h.msgs) != 0 || len(h.errs) == 0 || !errors.Is(h.errs[0], tt.want) {
				t.Fatalf("%s, %s: messages %v, errors %v, want %v", tt.name, split, normal(h.msgs), h.errs, tt.want)
			}
		}
	}
}

func TestFailedParserStaysFailed(t *testing.T) {
	p := NewRequestParser(Config{})
	if _, _, err := p.Feed([]byte("BAD\r\n\r\n")); err == nil {
		t.Fatal("no error for a bad request line")
	}
	n, m, err := p.Feed([]byte("GET / HTTP/1.1\r\n\r\n"))
	if n != 0 || m != nil || err == nil {
		t.Fatalf("after an error: n=%d m=%v err=%v, want the error again", n, m, err)
	}
	p.Reset()
	if _, m, err := p.Feed([]byte("GET / HTTP/1.1\r\n\r\n")); m == nil || err != nil {
		t.Fatalf("after Reset: m=%v err=%v", m, err)
	}
}

func TestHead(t *testing.T) {
	p := NewRequestParser(Config{})
	in := []byte("POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
	if n, m, err := p.Feed(in); n != len(in) || m != nil || err != nil {
		t.Fatalf("Feed head: %d %v %v", n, m, err)
	}
	head := p.Head()
	if head == nil || head.Method != "POST" || head.Get("expect") != "100-continue" || !p.InMessage() {
		t.Fatalf("Head() = %+v, InMessage %v", head, p.InMessage())
	}
	if _, m, err := p.Feed([]byte("abc")); m != head || err != nil || string(m.Body) != "abc" {
		t.Fatalf("complete: %v %v, want the head's message", m, err)
	}
	if p.Head() != nil || p.InMessage() {
		t.Fatal("parser still in a message after it completed")
	}
}

func TestIndexStart(t *testing.T) {
	tests := []struct {
		in       string
		req, rsp int
	}{
		{"GET / HTTP/1.1\r\n", 0, -1},
		{"abc}GET /x HTTP/1.0\n", 4, -1},
		{"XYZPOST /x HTTP/1.1\r\n", 3, -1},
		{"PROPFIND /x HTTP/1.1\r\n", 0, -1},
		{"GET / HTTP/1.1", -1, -1},
		{"get / HTTP/1.1\r\n", -1, -1},
		{"GET  HTTP/1.1\r\n", -1, -1},
		{"tail HTTP/1.1 200 OK\r\n", -1, 5},
		{"HTTP/1.1 200\r\n", -1, 0},
		{"HTTP/1.1 20\r\n", -1, -1},
		{"HTTP/1.1 200", -1, -1},
		{"HTTP/1.1 099 x\nHTTP/1.0 500 x\n", -1, 15},
	}
	for _, tt := range tests {
		if got := IndexRequestStart([]byte(tt.in)); got != tt.req {
			t.Errorf("IndexRequestStart(%q) = %d, want %d", tt.in, got, tt.req)
		}
		if got := IndexResponseStart([]byte(tt.in)); got != tt.rsp {
			t.Errorf("IndexResponseStart(%q) = %d, want %d", tt.in, got, tt.rsp)
		}
	}
}

func TestResyncAcrossFeeds(t *testing.T) {
	// The start line begins in one Feed and ends in a later one, after a
	// long run of junk without line breaks.
	junk := bytes.Repeat([]byte("j"), 3*maxStartLine)
	in := append(junk, "DELETE /d HTTP/1.1\r\n\r\n"...)
	for _, cut := range []int{len(junk) + 2, len(junk) + 10, len(in) - 3} {
		h := newHarness(Config{}, false)
		h.p.Resync()
		h.feed(in[:cut])
		h.feed(in[cut:])
		if len(h.msgs) != 1 || h.msgs[0].Method != "DELETE" || h.msgs[0].Target != "/d" {
			t.Fatalf("cut %d: %+v, errors %v", cut, normal(h.msgs), h.errs)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	in := []byte("POST /api/v1/items?id=42 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\n" +
		"Accept: application/json\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n" +
		`{"name":"widget","qty":1234}`[:27])
	p := NewRequestParser(Config{})
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, m, err := p.Feed(in); m == nil || err != nil {
			b.Fatal(m, err)
		}
	}
}

func TestSkip(t *testing.T) {
	tests := []struct {
		name    string
		head    string
		skip    int64
		after   string
		used    int64  // of skip
		want    string // body kept
		size    int64
		done    bool
		chunked bool
	}{
		{name: "content-length body sent with sendfile", head: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", skip: 10, used: 10, size: 10, done: true},
		{name: "head bytes then sendfile", head: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", skip: 7, used: 7, want: "abc", size: 10, done: true},
		{name: "past the body: the body's part used", head: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", skip: 5, used: 4, size: 4, done: true},
		{name: "chunk data", head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n", skip: 5, after: "\r\n0\r\n\r\n", used: 5, size: 5, done: true},
		{name: "past a chunk is refused: the framing after it is unseen", head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n", skip: 6},
		{name: "close-delimited body", head: "HTTP/1.1 200 OK\r\n\r\n", skip: 100, used: 100, size: 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := NewResponseParser(Config{}, nil)
			if _, m, err := p.Feed([]byte(tc.head)); m != nil || err != nil {
				t.Fatalf("Feed head: %v %v", m, err)
			}
			head := p.Head()
			m, used := p.Skip(tc.skip)
			if used != tc.used {
				t.Fatalf("Skip used %d, want %d", used, tc.used)
			}
			if used == 0 {
				if m != nil || head.BodySize != 0 {
					t.Fatalf("refused Skip framed %d bytes, message %v", head.BodySize, m)
				}
				return
			}
			if tc.after != "" {
				_, m, _ = p.Feed([]byte(tc.after))
			}
			if tc.done != (m != nil) {
				t.Fatalf("message complete = %v, want %v", m != nil, tc.done)
			}
			if string(head.Body) != tc.want || head.BodySize != tc.size || !head.BodyTruncated || !head.BodyUnavailable {
				t.Fatalf("body %q size %d truncated %v unavailable %v, want %q %d", head.Body, head.BodySize, head.BodyTruncated, head.BodyUnavailable, tc.want, tc.size)
			}
		})
	}
	// Skip between messages is refused: there is no body to account for.
	if _, used := NewRequestParser(Config{}).Skip(1); used != 0 {
		t.Fatal("Skip on an idle parser succeeded")
	}
}

// Discarding says how many bytes a body past the cap will not keep, and
// Discard frames them: truncated, not unavailable.
func TestDiscard(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		keep, want int64
		after      string // completes the message after Discard(want)
	}{
		{"below the cap", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n012", 1, 6, ""},
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234", 0, 5, ""},
		{"chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n01234", 0, 5, "\r\n0\r\n\r\n"},
		{"close-delimited", "HTTP/1.1 200 OK\r\n\r\n01234", 0, math.MaxInt64, ""},
		{"between messages", "HTTP/1.1 204 No Content\r\n\r\n", 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewResponseParser(Config{BodyCap: 4}, nil)
			if _, _, err := p.Feed([]byte(tc.head)); err != nil {
				t.Fatal(err)
			}
			if keep, got := p.Discarding(); keep != tc.keep || got != tc.want {
				t.Fatalf("Discarding = %d, %d, want %d, %d", keep, got, tc.keep, tc.want)
			}
			if tc.keep != 0 || tc.want == 0 || tc.want == math.MaxInt64 {
				return
			}
			h := p.Head()
			m, used := p.Discard(tc.want)
			if used != tc.want {
				t.Fatalf("Discard used %d of %d", used, tc.want)
			}
			if tc.after != "" {
				_, m, _ = p.Feed([]byte(tc.after))
			}
			if m != h || string(h.Body) != "0123" || h.BodySize != 10 || !h.BodyTruncated || h.BodyUnavailable {
				t.Fatalf("message %+v", h)
			}
		})
	}
}
