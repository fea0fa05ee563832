// Package fidelity holds the privileged fidelity matrix: real servers (Go
// net/http, nginx, Python http.server, Node http) and real clients (curl,
// Go, Python urllib, wrk) on loopback, captured by the real eBPF programs,
// with every case asserting the exact exchange assembled.
package fidelity

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/agent/capture"
	"github.com/reprise-dev/reprise/agent/httpstream"
	"github.com/reprise-dev/reprise/agent/pipeline"
	"github.com/reprise-dev/reprise/internal/privileged"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		if err := runChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// harness captures the connections of one port through the real pipeline.
type harness struct {
	t    *testing.T
	mu   sync.Mutex
	got  []*reprisev1.Exchange
	pipe *pipeline.Pipeline
	// stop closes the capture, as the agent does at shutdown, and returns
	// once the pipeline has emitted everything.
	stop func()
	// kernel holds the kernel's counters as they were when stop closed the
	// capture.
	kernel    capture.Stats
	kernelErr error
}

// count returns how many exchanges arrived.
func (h *harness) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.got)
}

// A stream is emitted after a second, so that the event stream test need
// not wait for the agent's default.
func capturePort(t *testing.T, port int) *harness {
	t.Helper()
	return capturePorts(t, httpstream.Config{StreamTimeout: time.Second}, port)
}

// capturePorts captures the connections of the ports with the tracker
// configured by cfg.
func capturePorts(t *testing.T, cfg httpstream.Config, ports ...int) *harness {
	t.Helper()
	privileged.RequireRoot(t)
	var ccfg capture.Config
	for _, p := range ports {
		ccfg.Ports = append(ccfg.Ports, uint16(p))
	}
	capt, err := capture.Open(ccfg)
	privileged.CheckOpen(t, err)
	h := &harness{t: t}
	h.pipe = pipeline.New(httpstream.New(cfg, func(x *reprisev1.Exchange) {
		h.mu.Lock()
		h.got = append(h.got, x)
		h.mu.Unlock()
	}))
	done := make(chan error, 1)
	go func() { done <- h.pipe.Run(capt, 100*time.Millisecond) }()
	h.stop = sync.OnceFunc(func() {
		h.kernel, h.kernelErr = capt.Stats()
		capt.Close()
		if err := <-done; err != nil {
			t.Errorf("pipeline: %v", err)
		}
	})
	t.Cleanup(h.stop)
	return h
}

// inbound waits until n inbound exchanges with the target prefix arrived
// and returns them in order.
func (h *harness) inbound(prefix string, n int) []*reprisev1.Exchange {
	h.t.Helper()
	return h.wait(reprisev1.Direction_DIRECTION_INBOUND, prefix, n, func(target string) bool { return strings.HasPrefix(target, prefix) })
}

// one waits for the exchange in direction dir with exactly this target,
// and fails if there are two.
func (h *harness) one(dir reprisev1.Direction, target string) *reprisev1.Exchange {
	h.t.Helper()
	got := h.wait(dir, target, 1, func(t string) bool { return t == target })
	if len(got) > 1 {
		h.t.Errorf("%s %s captured %d times", dir, target, len(got))
	}
	return got[0]
}

// wait waits until n exchanges in direction dir whose target matches
// arrived and returns them in order; what names them in errors.
func (h *harness) wait(dir reprisev1.Direction, what string, n int, match func(target string) bool) []*reprisev1.Exchange {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var out []*reprisev1.Exchange
		h.mu.Lock()
		for _, x := range h.got {
			if x.Direction == dir && match(x.Request.Target) {
				out = append(out, x)
			}
		}
		h.mu.Unlock()
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%d %s exchanges for %s after 15s, want %d; stats %+v", len(out), dir, what, n, h.pipe.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// want is what one exchange must hold exactly.
type want struct {
	method, target string
	reqBody        string
	status         int32
	respBody       string
	// respSize, when set, is the real response body size and respBody its
	// kept head; the body is then truncated.
	respSize  int64
	truncated bool
}

func (w want) check(t *testing.T, x *reprisev1.Exchange) {
	t.Helper()
	r, s := x.Request, x.Response
	if r.Method != w.method || r.Target != w.target || string(r.Body) != w.reqBody {
		t.Errorf("request %s %s body %.40q, want %s %s %.40q", r.Method, r.Target, r.Body, w.method, w.target, w.reqBody)
	}
	if s == nil {
		t.Fatalf("%s %s: no response; capture %v", w.method, w.target, x.Capture)
	}
	size := w.respSize
	if size == 0 {
		size = int64(len(w.respBody))
	}
	if s.StatusCode != w.status || !bytes.Equal(s.Body, []byte(w.respBody)) || s.BodySize != size || s.BodyTruncated != w.truncated {
		t.Errorf("%s %s: response %d body %.60q size %d truncated %v, want %d %.60q size %d truncated %v", w.method, w.target,
			s.StatusCode, s.Body, s.BodySize, s.BodyTruncated, w.status, w.respBody, size, w.truncated)
	}
	if x.Capture.BytesLost != 0 || x.Capture.RequestIncomplete || !w.truncated && x.Capture.ResponseIncomplete {
		t.Errorf("%s %s: capture %v", w.method, w.target, x.Capture)
	}
}

func freePort(t *testing.T, network, addr string) int {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs a command until the test ends, and waits for url to answer.
func start(t *testing.T, url string, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := 0; ; i++ {
		resp, err := (&http.Client{Timeout: time.Second}).Get(url)
		if err == nil {
			resp.Body.Close()
			return cmd
		}
		if i == 100 {
			t.Fatalf("%s did not answer %s: %v; stderr: %s", cmd.Path, url, err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func child(spec string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+spec)
	return cmd
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

func need(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		privileged.SkipOrFail(t, tool+" is not installed")
	}
}

func TestGoServerCurl(t *testing.T) {
	need(t, "curl")
	port := freePort(t, "tcp4", "127.0.0.1:0")
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	h := capturePort(t, port)
	start(t, base+"/count", child("goserver 127.0.0.1:"+strconv.Itoa(port)))

	upload := strings.Repeat("u", 2<<20)
	file := filepath.Join(t.TempDir(), "upload")
	if err := os.WriteFile(file, []byte(upload), 0o644); err != nil {
		t.Fatal(err)
	}
	small := smallBody
	// One curl, one keep-alive connection, many kinds of message; then
	// separate connections for HTTP/1.0, Expect: 100-continue and the
	// 304 that needs a header.
	run(t, "curl", "-sS", "-o", "/dev/null", base+"/small?a=1", base+"/chunked", base+"/writes", base+"/empty", base+"/gzip", base+"/big")
	run(t, "curl", "-sS", "-o", "/dev/null", "-I", base+"/small?head=1")
	run(t, "curl", "-sS", "-o", "/dev/null", "--http1.0", base+"/small?v=1.0")
	run(t, "curl", "-sS", "-o", "/dev/null", "-H", `If-None-Match: "v1"`, base+"/etag")
	run(t, "curl", "-sS", "-o", "/dev/null", "-H", "Expect: 100-continue", "--data-binary", "@"+file, base+"/upload")

	got := h.inbound("/", 11) // with the readiness probe
	byTarget := map[string]*reprisev1.Exchange{}
	for _, x := range got {
		byTarget[x.Request.Method+" "+x.Request.Target] = x
	}
	pat := make([]byte, httpstream.DefaultBodyCap)
	(&pattern{}).Read(pat)
	for _, w := range []want{
		{method: "GET", target: "/small?a=1", status: 200, respBody: small},
		{method: "GET", target: "/chunked", status: 200, respBody: "alpha,beta,gamma"},
		{method: "GET", target: "/writes", status: 200, respBody: "one-two-three-4"},
		{method: "GET", target: "/empty", status: 204},
		{method: "GET", target: "/big", status: 200, respBody: string(pat), respSize: bigSize, truncated: true},
		{method: "HEAD", target: "/small?head=1", status: 200},
		{method: "GET", target: "/small?v=1.0", status: 200, respBody: small},
		{method: "GET", target: "/etag", status: 304},
	} {
		x := byTarget[w.method+" "+w.target]
		if x == nil {
			t.Errorf("%s %s not captured", w.method, w.target)
			continue
		}
		w.check(t, x)
	}
	if x := byTarget["GET /gzip"]; x == nil || len(x.Response.Body) < 2 || x.Response.Body[0] != 0x1f || x.Response.Body[1] != 0x8b {
		t.Errorf("gzip body not kept as sent: %v", x)
	}
	if x := byTarget["GET /small?v=1.0"]; x != nil && x.Request.Proto != "HTTP/1.0" {
		t.Errorf("HTTP/1.0 request recorded as %s", x.Request.Proto)
	}
	if x := byTarget["POST /upload"]; x == nil {
		t.Error("upload not captured")
	} else {
		r := x.Request
		if len(r.Body) != httpstream.DefaultBodyCap || string(r.Body) != upload[:len(r.Body)] || r.BodySize != int64(len(upload)) || !r.BodyTruncated {
			t.Errorf("upload kept %d of %d bytes, truncated %v", len(r.Body), r.BodySize, r.BodyTruncated)
		}
		if x.Response == nil || string(x.Response.Body) != fmt.Sprintf("got %d", len(upload)) {
			t.Errorf("upload response %v", x.Response)
		}
	}
	if x := byTarget["GET /chunked"]; x != nil && x.Response.BodySize != 16 {
		t.Errorf("chunked body size %d", x.Response.BodySize)
	}
}

func TestGoServerIPv6(t *testing.T) {
	need(t, "curl")
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		privileged.SkipOrFail(t, "no IPv6 loopback: "+err.Error())
	} else {
		ln.Close()
	}
	port := freePort(t, "tcp6", "[::1]:0")
	base := "http://[::1]:" + strconv.Itoa(port)
	h := capturePort(t, port)
	start(t, base+"/count", child("goserver [::1]:"+strconv.Itoa(port)))
	run(t, "curl", "-sS", "-g", "-o", "/dev/null", base+"/small?v6=1")
	x := h.inbound("/small", 1)[0]
	want{method: "GET", target: "/small?v6=1", status: 200, respBody: smallBody}.check(t, x)
	if x.Local.GetIp() != "::1" || x.Remote.GetIp() != "::1" || x.Local.GetPort() != uint32(port) {
		t.Errorf("endpoints %v %v", x.Local, x.Remote)
	}
}

func TestSlowReaderAndEarlyConnection(t *testing.T) {
	port := freePort(t, "tcp4", "127.0.0.1:0")
	addr := "127.0.0.1:" + strconv.Itoa(port)
	start(t, "http://"+addr+"/count", child("goserver "+addr))

	// A connection opened, and used, before the capture starts.
	early := child("earlyclient " + addr)
	stdin, err := early.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := early.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := early.Start(); err != nil {
		t.Fatal(err)
	}
	defer early.Wait()
	if line, err := io.ReadAll(io.LimitReader(stdout, 6)); err != nil || string(line) != "ready\n" {
		t.Fatalf("early client: %q %v", line, err)
	}

	h := capturePort(t, port)
	io.WriteString(stdin, "go\n")
	if err := early.Wait(); err != nil {
		t.Fatalf("early client: %v", err)
	}
	want{method: "GET", target: "/small?after=1", status: 200, respBody: smallBody}.check(t, h.inbound("/small?after", 1)[0])

	// A client that reads the response one byte per syscall.
	if out, err := child("slowreader " + addr).CombinedOutput(); err != nil {
		t.Fatalf("slow reader: %v: %s", err, out)
	}
	want{method: "GET", target: "/small", status: 200, respBody: smallBody}.check(t, h.inbound("/small", 2)[1])
	// Its side of the connection is captured too, byte by byte.
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, x := range h.got {
		if x.Direction == reprisev1.Direction_DIRECTION_OUTBOUND && x.Request.Target == "/small" {
			want{method: "GET", target: "/small", status: 200, respBody: smallBody}.check(t, x)
			return
		}
	}
	t.Error("the slow reader's outbound exchange was not captured")
}

func TestServerSentEvents(t *testing.T) {
	need(t, "curl")
	port := freePort(t, "tcp4", "127.0.0.1:0")
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	h := capturePort(t, port)
	start(t, base+"/count", child("goserver 127.0.0.1:"+strconv.Itoa(port)))
	// The stream does not end while curl reads it; the stream timeout (1 s
	// here) emits what was read, and other connections go on meanwhile.
	sse := exec.Command("curl", "-sS", "-N", "-o", "/dev/null", "--max-time", "4", base+"/events")
	if err := sse.Start(); err != nil {
		t.Fatal(err)
	}
	defer sse.Wait()
	time.Sleep(200 * time.Millisecond)
	run(t, "curl", "-sS", "-o", "/dev/null", base+"/small?during=sse")
	want{method: "GET", target: "/small?during=sse", status: 200, respBody: smallBody}.check(t, h.inbound("/small", 1)[0])
	x := h.inbound("/events", 1)[0]
	if !x.Capture.ResponseStreaming || x.Response == nil || !strings.HasPrefix(string(x.Response.Body), "data: 0\n\ndata: 1\n\n") {
		t.Fatalf("stream: capture %v response %v", x.Capture, x.Response)
	}
}

// settledCount returns the server's count of handled requests once it has
// stopped moving: wrk can stop with requests sent whose handlers have not
// run yet, and a busy machine runs them after wrk has exited.
func settledCount(t *testing.T, base string) int {
	t.Helper()
	get := func() int {
		resp, err := http.Get(base + "/count")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		n, err := strconv.Atoi(string(b))
		if err != nil {
			t.Fatalf("count %q: %v", b, err)
		}
		return n
	}
	n := get()
	for range 25 {
		time.Sleep(200 * time.Millisecond)
		m := get()
		if m == n {
			return n
		}
		n = m
	}
	t.Fatalf("the server's count still moves after 5 s: %d", n)
	return 0
}

func TestWrkCompleteness(t *testing.T) {
	need(t, "wrk")
	port := freePort(t, "tcp4", "127.0.0.1:0")
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	start(t, base+"/count", child("goserver 127.0.0.1:"+strconv.Itoa(port)))
	h := capturePort(t, port)
	run(t, "wrk", "-t1", "-c4", "-d1s", base+"/small")
	handled := settledCount(t, base)
	if handled == 0 {
		t.Fatal("wrk sent nothing")
	}
	// Every request the server handled is a whole exchange.
	got := h.inbound("/small", handled)
	for _, x := range got {
		want{method: "GET", target: "/small", status: 200, respBody: smallBody}.check(t, x)
	}
	if len(got) != handled {
		t.Errorf("%d exchanges, server handled %d", len(got), handled)
	}
}
