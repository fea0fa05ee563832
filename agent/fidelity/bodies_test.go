package fidelity

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/reprise-dev/reprise/agent/httpstream"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// The matrix of bodies that move in few large syscalls: Go's net/http
// writes a body given to one Write in one write(2) (after the 4 KiB of its
// buffer), and reads a body into a large buffer in one read(2).

const (
	inbound  = reprisev1.Direction_DIRECTION_INBOUND
	outbound = reprisev1.Direction_DIRECTION_OUTBOUND
)

// exact is what one exchange must hold, bodies compared by digest: all of
// the body the peer sent, of which the capture keeps the first bodyCap
// bytes, body_size the real size and body_truncated set past the cap.
type exact struct {
	method, target string
	status         int32
	req, resp      []byte
	bodyCap        int // 0: the agent's default
}

func (w exact) check(t *testing.T, x *reprisev1.Exchange) {
	t.Helper()
	bodyCap := w.bodyCap
	if bodyCap == 0 {
		bodyCap = httpstream.DefaultBodyCap
	}
	what := x.Direction.String() + " " + w.method + " " + w.target
	r, s := x.Request, x.Response
	if r.Method != w.method || r.Target != w.target {
		t.Errorf("%s: request %s %s", what, r.Method, r.Target)
	}
	checkBody(t, what+" request", r.Body, r.BodySize, r.BodyTruncated, w.req, bodyCap)
	if s == nil {
		t.Errorf("%s: no response; capture %v", what, x.Capture)
		return
	}
	if s.StatusCode != w.status {
		t.Errorf("%s: status %d, want %d", what, s.StatusCode, w.status)
	}
	checkBody(t, what+" response", s.Body, s.BodySize, s.BodyTruncated, w.resp, bodyCap)
	c := x.Capture
	if c.BytesLost != 0 || c.RequestBodyUnavailable || c.ResponseBodyUnavailable || c.ResponseStreaming ||
		c.RequestIncomplete && len(w.req) <= bodyCap || c.ResponseIncomplete && len(w.resp) <= bodyCap {
		t.Errorf("%s: capture %v", what, c)
	}
}

// checkBody compares a captured body with the first bodyCap bytes of full.
func checkBody(t *testing.T, what string, got []byte, size int64, truncated bool, full []byte, bodyCap int) {
	t.Helper()
	keep := full[:min(len(full), bodyCap)]
	if len(got) != len(keep) || sha256.Sum256(got) != sha256.Sum256(keep) || size != int64(len(full)) || truncated != (len(full) > bodyCap) {
		t.Errorf("%s: body %d bytes sha256 %s, body_size %d, truncated %v; want %d bytes sha256 %s, body_size %d, truncated %v",
			what, len(got), digest(got), size, truncated, len(keep), digest(keep), len(full), len(full) > bodyCap)
	}
}

func digest(b []byte) string {
	d := sha256.Sum256(b)
	return hex.EncodeToString(d[:8])
}

// checkFile fails unless the file a client wrote holds want.
func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("the client received %d bytes (sha256 %s), want %d (sha256 %s)", len(got), digest(got), len(want), digest(want))
	}
}

// goServerCaptured starts the Go server child on a fresh port and captures
// it, keeping bodyCap bytes of a body (0: the agent's default); it returns
// the base URL.
func goServerCaptured(t *testing.T, bodyCap int) (*harness, string) {
	t.Helper()
	port := freePort(t, "tcp4", "127.0.0.1:0")
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	h := capturePorts(t, httpstream.Config{BodyCap: bodyCap}, port)
	start(t, base+"/count", child("goserver 127.0.0.1:"+strconv.Itoa(port)))
	return h, base
}

// bodyFile writes randomBody(n) to a file and returns both.
func bodyFile(t *testing.T, n int) (string, []byte) {
	t.Helper()
	b := randomBody(n)
	return tempFile(t, b), b
}

// tempFile writes b to a file of the test's and returns its path.
func tempFile(t *testing.T, b []byte) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "body")
	if err == nil {
		_, err = f.Write(b)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// A Go handler writes 70 KB, 1 MiB and 3 MB in one Write with a
// Content-Length, and 70 KB and 2 MB chunked, to curl on one keep-alive
// connection; the 2 and 3 MB bodies are past the cap, and the exchanges
// after them parse. Both the server's side and curl's are captured.
func TestOneWriteResponses(t *testing.T) {
	need(t, "curl")
	h, base := goServerCaptured(t, 0)
	dir := t.TempDir()
	cases := []struct {
		target string
		resp   []byte
	}{
		{"/one?size=70000", randomBody(70000)},
		{"/one?size=1048576", randomBody(1 << 20)},
		{"/one?size=3000000", randomBody(3000000)},
		{"/one?size=70000&framing=none", randomBody(70000)},
		{"/one?size=2000000&framing=none", randomBody(2000000)},
		{"/small?after=big", []byte(smallBody)},
	}
	args := []string{"-sS"}
	for i, c := range cases {
		args = append(args, "-o", filepath.Join(dir, strconv.Itoa(i)), base+c.target)
	}
	run(t, "curl", args...)
	first := h.one(inbound, cases[0].target)
	for i, c := range cases {
		checkFile(t, filepath.Join(dir, strconv.Itoa(i)), c.resp)
		for _, d := range []reprisev1.Direction{inbound, outbound} {
			exact{method: "GET", target: c.target, status: 200, resp: c.resp}.check(t, h.one(d, c.target))
		}
		// One connection, every exchange in order.
		if x := h.one(inbound, c.target); x.ConnectionId != first.ConnectionId || x.Sequence != first.Sequence+uint32(i) {
			t.Errorf("%s: connection %s sequence %d, want %s %d", c.target, x.ConnectionId, x.Sequence, first.ConnectionId, first.Sequence+uint32(i))
		}
	}
}

// curl uploads 400 KB in one request, without and with Expect:
// 100-continue, and the server echoes it in one Write; an HTTP/1.0 client
// gets a 1 MiB body delimited by the close.
func TestUploadsAndHTTP10(t *testing.T) {
	need(t, "curl")
	h, base := goServerCaptured(t, 0)
	path, upload := bodyFile(t, 400000)
	out := filepath.Join(t.TempDir(), "out")
	for _, c := range []struct{ target, expect string }{
		{"/echo?expect=none", ""},
		{"/echo?expect=100", "100-continue"},
	} {
		run(t, "curl", "-sS", "-o", out, "-H", "Expect: "+c.expect, "--data-binary", "@"+path, base+c.target)
		checkFile(t, out, upload)
		for _, d := range []reprisev1.Direction{inbound, outbound} {
			x := h.one(d, c.target)
			exact{method: "POST", target: c.target, status: 200, req: upload, resp: upload}.check(t, x)
			if got := header(x.Request.Headers, "Expect"); got != c.expect {
				t.Errorf("%s: Expect %q", c.target, got)
			}
		}
	}

	target := "/one?size=1048576&framing=none&v=1.0"
	run(t, "curl", "-sS", "-o", out, "--http1.0", base+target)
	checkFile(t, out, randomBody(1<<20))
	for _, d := range []reprisev1.Direction{inbound, outbound} {
		x := h.one(d, target)
		exact{method: "GET", target: target, status: 200, resp: randomBody(1 << 20)}.check(t, x)
		if x.Request.Proto != "HTTP/1.0" || x.Response.GetProto() != "HTTP/1.0" || header(x.Response.GetHeaders(), "Content-Length") != "" {
			t.Errorf("%s %s: request %s, response %s with Content-Length %q; want HTTP/1.0 delimited by the close", d, target,
				x.Request.Proto, x.Response.GetProto(), header(x.Response.GetHeaders(), "Content-Length"))
		}
	}
}

func header(hs []*reprisev1.Header, name string) string {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// Past --body-cap the head is kept, body_size is exact and the next
// exchange on the connection parses, for responses and requests moved in
// one syscall.
func TestBodyCapOneSyscall(t *testing.T) {
	need(t, "curl")
	const bodyCap = 64 << 10
	h, base := goServerCaptured(t, bodyCap)
	path, upload := bodyFile(t, 300000)
	run(t, "curl", "-sS", "-o", "/dev/null", base+"/one?size=500000", base+"/small?cap=1",
		"--next", "-sS", "-o", "/dev/null", "-H", "Expect:", "--data-binary", "@"+path, base+"/echo?cap=1",
		"--next", "-sS", "-o", "/dev/null", base+"/small?cap=2")
	big := h.one(inbound, "/one?size=500000")
	exact{method: "GET", target: "/one?size=500000", status: 200, resp: randomBody(500000), bodyCap: bodyCap}.check(t, big)
	exact{method: "GET", target: "/small?cap=1", status: 200, resp: []byte(smallBody), bodyCap: bodyCap}.check(t, h.one(inbound, "/small?cap=1"))
	exact{method: "POST", target: "/echo?cap=1", status: 200, req: upload, resp: upload, bodyCap: bodyCap}.check(t, h.one(inbound, "/echo?cap=1"))
	x := h.one(inbound, "/small?cap=2")
	exact{method: "GET", target: "/small?cap=2", status: 200, resp: []byte(smallBody), bodyCap: bodyCap}.check(t, x)
	if x.ConnectionId != big.ConnectionId || x.Sequence != big.Sequence+3 {
		t.Errorf("the exchanges did not share one connection: %s/%d then %s/%d", big.ConnectionId, big.Sequence, x.ConnectionId, x.Sequence)
	}
}

// Python's requests (Debian's python3-requests) and Node's built-in fetch
// as clients: each downloads and uploads large bodies on one keep-alive
// connection and prints the digests of what it received.
func TestRequestsAndFetchClients(t *testing.T) {
	need(t, debianPython)
	need(t, "node")
	h, base := goServerCaptured(t, 0)
	path, upload := bodyFile(t, 400000)
	for _, c := range []struct {
		name, download string
		size           int
		cmd            []string
	}{
		{"requests", "/one?size=1048576&client=requests", 1 << 20, []string{debianPython, "-c", `
import hashlib, sys, requests
base, path = sys.argv[1], sys.argv[2]
s = requests.Session()
for r in (s.get(base + "/one?size=1048576&client=requests"),
          s.post(base + "/echo?client=requests", data=open(path, "rb").read()),
          s.get(base + "/small?client=requests")):
    r.raise_for_status()
    print(hashlib.sha256(r.content).hexdigest())
`, base, path}},
		{"fetch", "/one?size=3000000&client=fetch", 3000000, []string{"node", "-e", `
const crypto = require('crypto'), fs = require('fs');
const [base, path] = process.argv.slice(1);
(async () => {
  for (const [target, init] of [['/one?size=3000000&client=fetch'],
      ['/echo?client=fetch', {method: 'POST', body: fs.readFileSync(path)}],
      ['/small?client=fetch']]) {
    const r = await fetch(base + target, init);
    if (!r.ok) throw new Error(target + ': ' + r.status);
    console.log(crypto.createHash('sha256').update(Buffer.from(await r.arrayBuffer())).digest('hex'));
  }
})().catch(e => { console.error(e); process.exit(1); });
`, base, path}},
	} {
		t.Run(c.name, func(t *testing.T) {
			download := randomBody(c.size)
			want := []exact{
				{method: "GET", target: c.download, status: 200, resp: download},
				{method: "POST", target: "/echo?client=" + c.name, status: 200, req: upload, resp: upload},
				{method: "GET", target: "/small?client=" + c.name, status: 200, resp: []byte(smallBody)},
			}
			got := strings.Fields(run(t, c.cmd[0], c.cmd[1:]...))
			for i, w := range want {
				if d := sha256.Sum256(w.resp); i >= len(got) || got[i] != hex.EncodeToString(d[:]) {
					t.Fatalf("%s received %v, want sha256 %x for %s", c.name, got, d, w.target)
				}
				for _, d := range []reprisev1.Direction{inbound, outbound} {
					w.check(t, h.one(d, w.target))
				}
			}
		})
	}
}

// debianPython is the interpreter python3-requests installs for.
const debianPython = "/usr/bin/python3"
