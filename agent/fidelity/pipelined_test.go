package fidelity

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/reprise-dev/reprise/agent/httpstream"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// A syscall past the kernel's per-syscall cap (--body-cap + 64 KiB) that
// also carries the next pipelined message: the kernel copies its head and
// its last 64 KiB, so the first body keeps its head and exact size and the
// next message parses whole.

// pipelineClient sends the file argv[3] to argv[1]:argv[2] in one send(2)
// and writes what it receives until the server closes to argv[4]. A send
// that moved less than the whole file fails: the case needs one syscall.
const pipelineClient = `
import socket, sys
host, port, path, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
data = open(path, "rb").read()
s = socket.create_connection((host, port))
n = s.send(data)
if n != len(data):
    sys.exit("send moved %d of %d bytes" % (n, len(data)))
got = bytearray()
while True:
    b = s.recv(1 << 20)
    if not b:
        break
    got += b
open(out, "wb").write(got)
`

// pipelineServer listens on a port of 127.0.0.1 it prints, and answers two
// requests with the responses in the file argv[1], moved in one syscall
// once both heads arrived: send(2), or with argv[3] the offsets that cut
// them into iovec entries, sendmsg(2). It logs "moved total" of that
// syscall to argv[2].
const pipelineServer = `
import socket, sys
path, log = sys.argv[1], sys.argv[2]
resp = open(path, "rb").read()
cuts = [0] + [int(c) for c in sys.argv[3:]] + [len(resp)]
parts = [resp[a:b] for a, b in zip(cuts, cuts[1:])]
ln = socket.create_server(("127.0.0.1", 0))
print(ln.getsockname()[1], flush=True)
while True:
    c, _ = ln.accept()
    buf = b""
    while buf.count(b"\r\n\r\n") < 2:
        b = c.recv(65536)
        if not b:
            break
        buf += b
    n = c.sendmsg(parts) if len(parts) > 1 else c.send(resp)
    with open(log, "a") as f:
        f.write("%d %d\n" % (n, len(resp)))
    c.close()
`

// readResponses parses the n responses a client received, in order.
func readResponses(t *testing.T, path string, n int) []*http.Response {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(bytes.NewReader(got))
	var out []*http.Response
	for i := range n {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("the client's response %d of %d (%d bytes received): %v", i+1, n, len(got), err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("the client's response %d: %v", i+1, err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		out = append(out, resp)
	}
	return out
}

func bodyOf(r *http.Response) []byte {
	b, _ := io.ReadAll(r.Body)
	return b
}

// checkWhole fails when the capture marked x incomplete in any way.
func checkWhole(t *testing.T, x *reprisev1.Exchange) {
	t.Helper()
	if c := x.Capture; c.RequestIncomplete || c.ResponseIncomplete || c.BytesLost != 0 || c.Loss != reprisev1.Loss_LOSS_UNSPECIFIED {
		t.Errorf("%s %s %s: capture %v", x.Direction, x.Request.Method, x.Request.Target, c)
	}
}

// checkKernelSkipped stops the capture and fails unless the kernel left
// bytes of a syscall uncopied: the case went through the tail copy.
func (h *harness) checkKernelSkipped() {
	h.t.Helper()
	h.stop()
	if h.kernelErr != nil || h.kernel.SkippedBytes == 0 {
		h.t.Errorf("kernel stats %+v (%v): no bytes were skipped", h.kernel, h.kernelErr)
	}
}

// A Python client sends a 2.5 MB upload and the next request in one
// send(2) to the Go net/http server; both are answered, and both exchanges
// are captured on the client's side (that send) and on the server's.
func TestPipelinedUploadInOneSend(t *testing.T) {
	need(t, "python3")
	h, base := goServerCaptured(t, 0)
	upload := randomBody(2500000)
	const small = "/small?pipelined=1"
	reqs := fmt.Appendf(nil, "POST /upload?pipelined=1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(upload))
	reqs = append(append(reqs, upload...), "GET "+small+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"...)
	out := filepath.Join(t.TempDir(), "out")
	host, port, _ := strings.Cut(strings.TrimPrefix(base, "http://"), ":")
	run(t, "python3", "-c", pipelineClient, host, port, tempFile(t, reqs), out)

	got := readResponses(t, out, 2)
	uploaded := "got " + strconv.Itoa(len(upload))
	if b := bodyOf(got[0]); got[0].StatusCode != 200 || string(b) != uploaded {
		t.Fatalf("the client got %d %q for the upload", got[0].StatusCode, b)
	}
	if b := bodyOf(got[1]); got[1].StatusCode != 200 || string(b) != smallBody {
		t.Fatalf("the client got %d %q for the next request", got[1].StatusCode, b)
	}
	for _, d := range []reprisev1.Direction{outbound, inbound} {
		x := h.one(d, "/upload?pipelined=1")
		exact{method: "POST", target: "/upload?pipelined=1", status: 200, req: upload, resp: []byte(uploaded)}.check(t, x)
		checkWhole(t, x)
		y := h.one(d, small)
		exact{method: "GET", target: small, status: 200, resp: []byte(smallBody)}.check(t, y)
		checkWhole(t, y)
		if y.ConnectionId != x.ConnectionId || y.Sequence != x.Sequence+1 {
			t.Errorf("%s: %s/%d then %s/%d, want one connection in order", d, x.ConnectionId, x.Sequence, y.ConnectionId, y.Sequence)
		}
	}
	h.checkKernelSkipped()
}

// A Python server answers two pipelined requests in one syscall: a 3 MB
// response and the next one, with send(2) from one buffer and with
// sendmsg(2) from three iovec entries (the first head, its body, the next
// response), so the tail the kernel copies spans two of them. The client
// receives both, and both exchanges are captured on the server's side
// (that syscall) and on the client's.
func TestPipelinedResponsesInOneSyscall(t *testing.T) {
	need(t, "python3")
	big := randomBody(3000000)
	head := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(big))
	resp := fmt.Appendf(append(head, big...), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		len(smallBody), smallBody)
	for _, c := range []struct {
		name string
		cuts []string
	}{
		{"send", nil},
		{"sendmsg", []string{strconv.Itoa(len(head)), strconv.Itoa(len(head) + len(big))}},
	} {
		t.Run(c.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "sends")
			// The server picks its port, so no other test can take it first.
			srv := exec.Command("python3", append([]string{"-c", pipelineServer, tempFile(t, resp), log}, c.cuts...)...)
			var stderr bytes.Buffer
			srv.Stderr = &stderr
			stdout, err := srv.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				srv.Process.Kill()
				srv.Wait()
			})
			line, err := bufio.NewReader(stdout).ReadString('\n')
			port, perr := strconv.Atoi(strings.TrimSpace(line))
			if err != nil || perr != nil {
				t.Fatalf("the server's port: %q %v %v; stderr: %s", line, err, perr, stderr.String())
			}
			h := capturePorts(t, httpstream.Config{}, port)
			out := filepath.Join(t.TempDir(), "out")
			reqs := []byte("GET /big?pipelined=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /small?pipelined=1 HTTP/1.1\r\nHost: x\r\n\r\n")
			run(t, "python3", "-c", pipelineClient, "127.0.0.1", strconv.Itoa(port), tempFile(t, reqs), out)

			if received, err := os.ReadFile(out); err != nil || !bytes.Equal(received, resp) {
				t.Fatalf("the client received %d bytes (%s), want %d (%s); %v", len(received), digest(received), len(resp), digest(resp), err)
			}
			// The server moved both responses in one syscall.
			if sends, err := os.ReadFile(log); err != nil || string(sends) != fmt.Sprintf("%d %d\n", len(resp), len(resp)) {
				t.Fatalf("the server's syscalls: %q (%v), want one of %d bytes", sends, err, len(resp))
			}
			for _, d := range []reprisev1.Direction{inbound, outbound} {
				x := h.one(d, "/big?pipelined=1")
				exact{method: "GET", target: "/big?pipelined=1", status: 200, resp: big}.check(t, x)
				checkWhole(t, x)
				y := h.one(d, "/small?pipelined=1")
				exact{method: "GET", target: "/small?pipelined=1", status: 200, resp: []byte(smallBody)}.check(t, y)
				checkWhole(t, y)
			}
			h.checkKernelSkipped()
		})
	}
}

// When the next request starts further back than the syscall's last 64 KiB
// (a 2.5 MB upload, then a 200 KB one, then a GET, in one send), the kernel
// skipped its start: on the client's side it is lost and counted (one
// resync, its response unmatched), never merged into another exchange, and
// the GET after it, in the tail, pairs with its own response. The server's
// side, which reads them apart, has all three.
func TestPipelinedRequestInSkippedMiddle(t *testing.T) {
	need(t, "python3")
	h, base := goServerCaptured(t, 0)
	first, second := randomBody(2500000), randomBody(200000)
	var reqs []byte
	for i, b := range [][]byte{first, second} {
		reqs = fmt.Appendf(reqs, "POST /upload?n=%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", i+1, len(b))
		reqs = append(reqs, b...)
	}
	const small = "/small?after=lost"
	reqs = append(reqs, "GET "+small+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"...)
	out := filepath.Join(t.TempDir(), "out")
	host, port, _ := strings.Cut(strings.TrimPrefix(base, "http://"), ":")
	run(t, "python3", "-c", pipelineClient, host, port, tempFile(t, reqs), out)

	got := readResponses(t, out, 3)
	uploads := []exact{
		{method: "POST", target: "/upload?n=1", status: 200, req: first, resp: []byte("got " + strconv.Itoa(len(first)))},
		{method: "POST", target: "/upload?n=2", status: 200, req: second, resp: []byte("got " + strconv.Itoa(len(second)))},
		{method: "GET", target: small, status: 200, resp: []byte(smallBody)},
	}
	for i, w := range uploads {
		if b := bodyOf(got[i]); got[i].StatusCode != 200 || !bytes.Equal(b, w.resp) {
			t.Fatalf("the client got %d %q for %s", got[i].StatusCode, b, w.target)
		}
		x := h.one(inbound, w.target)
		w.check(t, x)
		checkWhole(t, x)
	}
	x := h.one(outbound, "/upload?n=1")
	uploads[0].check(t, x)
	checkWhole(t, x)
	y := h.one(outbound, small)
	uploads[2].check(t, y)
	checkWhole(t, y)
	if y.ConnectionId != x.ConnectionId || y.Sequence != x.Sequence+1 {
		t.Errorf("client side: %s/%d then %s/%d, want one connection in order", x.ConnectionId, x.Sequence, y.ConnectionId, y.Sequence)
	}
	h.checkKernelSkipped()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, x := range h.got {
		if x.Direction == outbound && x.Request.Target == "/upload?n=2" {
			t.Errorf("client side: the request that started in the skipped middle was exported: %v", x.Capture)
		}
	}
	if s := h.pipe.Stats(); s.Resyncs != 1 || s.UnmatchedResponses != 1 || s.ParseErrors != 0 || s.Incomplete != 0 {
		t.Errorf("tracker stats %+v, want one resync and one unmatched response", s)
	}
}
