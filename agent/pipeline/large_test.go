//go:build amd64

package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/reprise-dev/reprise/agent/capture"
	"github.com/reprise-dev/reprise/agent/httpstream"
	"github.com/reprise-dev/reprise/internal/privileged"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// largeEnv runs the child of the large payload tests: "exchanges" or
// "download", and the listener's address.
const largeEnv = "REPRISE_PIPELINE_LARGE"

// bodyCap is the agent's default: 1 MiB.
const bodyCap = httpstream.DefaultBodyCap

// largeSizes are the bodies sent and answered in one syscall each.
var largeSizes = []int{70_000, bodyCap, 3 << 20}

// downloadSize is the body of the download test: many times the cap.
const downloadSize = 512 << 20

// payload is n pseudo-random bytes, the same for the same seed.
func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

func reqHead(n int) string {
	return fmt.Sprintf("POST /up/%d HTTP/1.1\r\nHost: large\r\nContent-Length: %d\r\n\r\n", n, n)
}

func respHead(n int) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
}

// blocking returns the fd of c in blocking mode, so that one write or one
// recv with MSG_WAITALL moves a whole body in one syscall.
func blocking(c net.Conn) (int, func(), error) {
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		return -1, nil, err
	}
	fd := int(f.Fd())
	if err := unix.SetNonblock(fd, false); err != nil {
		f.Close()
		return -1, nil, err
	}
	return fd, func() { f.Close(); c.Close() }, nil
}

// writeOnce writes b in one write syscall.
func writeOnce(fd int, b []byte) error {
	n, err := unix.Write(fd, b)
	if err == nil && n != len(b) {
		err = fmt.Errorf("write moved %d of %d bytes", n, len(b))
	}
	return err
}

// readOnce reads exactly n bytes in one recvfrom syscall.
func readOnce(fd, n int) ([]byte, error) {
	b := make([]byte, n)
	got, _, err := unix.Recvfrom(fd, b, unix.MSG_WAITALL)
	if err == nil && got != n {
		err = fmt.Errorf("recv moved %d of %d bytes", got, n)
	}
	return b, err
}

// writevOnce writes bufs in one writev syscall.
func writevOnce(fd int, bufs ...[]byte) error {
	n, err := unix.Writev(fd, bufs)
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if err == nil && n != total {
		err = fmt.Errorf("writev moved %d of %d bytes", n, total)
	}
	return err
}

// runLargeChild serves on the inherited listener (fd 3) and is its own
// client, over one connection.
func runLargeChild(mode, addr string) error {
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return fmt.Errorf("inherit listener: %w", err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		return err
	}
	s, err := ln.Accept()
	if err != nil {
		return err
	}
	cfd, closeC, err := blocking(c)
	if err != nil {
		return err
	}
	defer closeC()
	sfd, closeS, err := blocking(s)
	if err != nil {
		return err
	}
	defer closeS()
	switch mode {
	case "download":
		return download(cfd, sfd)
	case "serve":
		return serve(cfd, sfd)
	}
	for i, n := range largeSizes {
		// Head and body in one write, the body read in one recv.
		req := append([]byte(reqHead(n)), payload(uint64(i), n)...)
		done := make(chan error, 1)
		go func() { done <- writeOnce(cfd, req) }()
		if _, err := readOnce(sfd, len(reqHead(n))); err != nil {
			return err
		}
		body, err := readOnce(sfd, n)
		if err != nil {
			return err
		}
		if err := <-done; err != nil {
			return err
		}
		if !bytes.Equal(body, req[len(reqHead(n)):]) {
			return fmt.Errorf("server read another body of %d bytes", n)
		}
		resp := append([]byte(respHead(n)), payload(uint64(100+i), n)...)
		go func() { done <- writeOnce(sfd, resp) }()
		if _, err := readOnce(cfd, len(resp)); err != nil {
			return err
		}
		if err := <-done; err != nil {
			return err
		}
	}
	// A response of 3 MB in one writev of large iovecs, then a small
	// exchange that must parse normally.
	n := 3 << 20
	body := payload(200, n)
	get := []byte("GET /vec HTTP/1.1\r\nHost: large\r\n\r\n")
	if err := writeOnce(cfd, get); err != nil {
		return err
	}
	if _, err := readOnce(sfd, len(get)); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- writevOnce(sfd, []byte(respHead(n)), body[:n/3], body[n/3:]) }()
	if _, err := readOnce(cfd, len(respHead(n))+n); err != nil {
		return err
	}
	if err := <-done; err != nil {
		return err
	}
	return smallExchange(cfd, sfd)
}

// download sends a body of downloadSize in 64 KiB writes, read in 64 KiB
// reads, then a small exchange.
func download(cfd, sfd int) error {
	get := []byte("GET /download HTTP/1.1\r\nHost: large\r\n\r\n")
	if err := writeOnce(cfd, get); err != nil {
		return err
	}
	if _, err := readOnce(sfd, len(get)); err != nil {
		return err
	}
	chunk := payload(300, 64<<10)
	done := make(chan error, 1)
	go func() {
		if err := writeOnce(sfd, []byte(respHead(downloadSize))); err != nil {
			done <- err
			return
		}
		for sent := 0; sent < downloadSize; sent += len(chunk) {
			if err := writeOnce(sfd, chunk); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	if _, err := readOnce(cfd, len(respHead(downloadSize))); err != nil {
		return err
	}
	for got := 0; got < downloadSize; got += len(chunk) {
		if _, err := readOnce(cfd, len(chunk)); err != nil {
			return err
		}
	}
	if err := <-done; err != nil {
		return err
	}
	return smallExchange(cfd, sfd)
}

// runLarge captures the child in mode through a tracker, as the agent
// does, and returns the exchanges by direction and the kernel's counters.
func runLarge(t *testing.T, mode string, want int) (map[reprisev1.Direction][]*reprisev1.Exchange, capture.Stats, httpstream.Stats) {
	t.Helper()
	privileged.RequireRoot(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lnFile.Close()
	capt, err := capture.Open(capture.Config{Ports: []uint16{uint16(ln.Addr().(*net.TCPAddr).Port)}})
	privileged.CheckOpen(t, err)
	defer capt.Close()

	exchanges := make(chan *reprisev1.Exchange, 64)
	p := New(httpstream.New(httpstream.Config{Skipper: capt}, func(ex *reprisev1.Exchange) { exchanges <- ex }))
	done := make(chan error, 1)
	go func() { done <- p.Run(capt, 100*time.Millisecond) }()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// A signal ends a recv with MSG_WAITALL early: no async preemption
	// (SIGURG) in the child, whose reads must each be one syscall.
	cmd.Env = append(os.Environ(), largeEnv+"="+mode+" "+ln.Addr().String(), "GODEBUG=asyncpreemptoff=1")
	cmd.ExtraFiles = []*os.File{lnFile}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v: %s", err, stderr.String())
	}
	got := map[reprisev1.Direction][]*reprisev1.Exchange{}
	timeout := time.After(30 * time.Second)
	for n := 0; n < 2*want; n++ {
		select {
		case ex := <-exchanges:
			got[ex.Direction] = append(got[ex.Direction], ex)
		case <-timeout:
			t.Fatalf("got %d exchanges after 30s, want %d; tracker stats %+v", n, 2*want, p.Stats())
		}
	}
	kstats, err := capt.Stats()
	if err != nil {
		t.Fatal(err)
	}
	capt.Close()
	if err := <-done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	return got, kstats, p.Stats()
}

// checkBody checks a body of size bytes whose content is want: kept whole
// up to the cap, its head past it, and its size exact.
func checkBody(t *testing.T, what string, body []byte, size int64, truncated bool, want []byte) {
	t.Helper()
	keep := want[:min(len(want), bodyCap)]
	if size != int64(len(want)) || truncated != (len(want) > bodyCap) || digest(body) != digest(keep) || len(body) != len(keep) {
		t.Errorf("%s: body of %d bytes (digest %s), size %d, truncated %v; want %d bytes (digest %s), size %d, truncated %v",
			what, len(body), digest(body), size, truncated, len(keep), digest(keep), len(want), len(want) > bodyCap)
	}
}

func checkWhole(t *testing.T, ex *reprisev1.Exchange) {
	t.Helper()
	if c := ex.GetCapture(); c.GetBytesLost() != 0 || c.GetRequestIncomplete() || c.GetResponseIncomplete() {
		t.Errorf("%s %s %s: capture %v, want nothing lost or incomplete", ex.Direction, ex.Request.GetMethod(), ex.Request.GetTarget(), c)
	}
}

// Bodies of 70 KB, 1 MiB and 3 MB written and read in one syscall each,
// and 3 MB in one writev, are recorded exactly up to the cap, with their
// real size; the exchange after them on the connection parses normally.
// Both sides of the connection are captured: the client's (outbound) and
// the server's (inbound).
func TestPrivilegedLargeBodiesInOneSyscall(t *testing.T) {
	got, kstats, tstats := runLarge(t, "exchanges", len(largeSizes)+2)
	for _, dir := range []reprisev1.Direction{reprisev1.Direction_DIRECTION_INBOUND, reprisev1.Direction_DIRECTION_OUTBOUND} {
		xs := got[dir]
		if len(xs) != len(largeSizes)+2 {
			t.Fatalf("%s: %d exchanges, want %d", dir, len(xs), len(largeSizes)+2)
		}
		for i, n := range largeSizes {
			ex := xs[i]
			if ex.Request.GetTarget() != "/up/"+strconv.Itoa(n) || ex.Response.GetStatusCode() != 200 || ex.Sequence != uint32(i) {
				t.Errorf("%s #%d: %s %s -> %d, want POST /up/%d -> 200", dir, i, ex.Request.GetMethod(), ex.Request.GetTarget(), ex.Response.GetStatusCode(), n)
				continue
			}
			checkWhole(t, ex)
			r, w := ex.Request, ex.Response
			checkBody(t, fmt.Sprintf("%s request %d", dir, n), r.Body, r.BodySize, r.BodyTruncated, payload(uint64(i), n))
			checkBody(t, fmt.Sprintf("%s response %d", dir, n), w.Body, w.BodySize, w.BodyTruncated, payload(uint64(100+i), n))
		}
		vec, after := xs[len(largeSizes)], xs[len(largeSizes)+1]
		checkWhole(t, vec)
		checkWhole(t, after)
		if vec.Request.GetTarget() != "/vec" {
			t.Errorf("%s: exchange %s, want GET /vec", dir, vec.Request.GetTarget())
		} else {
			checkBody(t, string(dir.String())+" writev response", vec.Response.Body, vec.Response.BodySize, vec.Response.BodyTruncated, payload(200, 3<<20))
		}
		if after.Request.GetTarget() != "/after" || string(after.Response.GetBody()) != "ok" {
			t.Errorf("%s: last exchange %s -> %q, want GET /after -> ok", dir, after.Request.GetTarget(), after.Response.GetBody())
		}
	}
	if kstats.RingbufFull != 0 || kstats.TruncatedBytes != 0 || kstats.CopyFailed != 0 {
		t.Errorf("kernel counted drops: %+v", kstats)
	}
	if tstats.BytesLost != 0 || tstats.Resyncs != 0 || tstats.Incomplete != 0 {
		t.Errorf("tracker counted losses: %+v", tstats)
	}
	t.Logf("kernel: copied %d bytes, skipped %d", kstats.CopiedBytes, kstats.SkippedBytes)
}

// A download of downloadSize in many small writes: past the cap the agent
// tells the kernel where the body ends, so the kernel copies about the cap
// of it (per side) and counts the rest; the exchange is not incomplete and
// the next one parses normally.
func TestPrivilegedDownloadPastCapIsNotCopied(t *testing.T) {
	got, kstats, tstats := runLarge(t, "download", 2)
	for _, dir := range []reprisev1.Direction{reprisev1.Direction_DIRECTION_INBOUND, reprisev1.Direction_DIRECTION_OUTBOUND} {
		xs := got[dir]
		if len(xs) != 2 || xs[0].Request.GetTarget() != "/download" || xs[1].Request.GetTarget() != "/after" {
			t.Fatalf("%s: exchanges %v, want GET /download then GET /after", dir, xs)
		}
		checkWhole(t, xs[0])
		checkWhole(t, xs[1])
		w := xs[0].Response
		if w.BodySize != downloadSize || !w.BodyTruncated || len(w.Body) != bodyCap {
			t.Errorf("%s: body size %d, truncated %v, kept %d; want %d, true, %d", dir, w.BodySize, w.BodyTruncated, len(w.Body), downloadSize, bodyCap)
		}
		if string(xs[1].Response.GetBody()) != "ok" {
			t.Errorf("%s: the exchange after the download has body %q", dir, xs[1].Response.GetBody())
		}
	}
	// Two sides (the server's writes, the client's reads): each copies the
	// cap plus what moves while the agent catches up with the stream, which
	// the race detector and a loaded machine make slower. What the ring had
	// no room for is past the cap too: no loss for the exchange.
	const maxCopied = 2 * downloadSize / 16
	if kstats.CopiedBytes > maxCopied || kstats.CopiedBytes+kstats.SkippedBytes+kstats.RingbufFullBytes < 2*downloadSize {
		t.Errorf("kernel copied %d bytes, skipped %d and lost %d of 2 x %d; want at most %d copied", kstats.CopiedBytes, kstats.SkippedBytes, kstats.RingbufFullBytes, downloadSize, maxCopied)
	}
	if tstats.BytesLost != 0 || tstats.Incomplete != 0 {
		t.Errorf("losses: kernel %+v tracker %+v", kstats, tstats)
	}
	t.Logf("kernel: copied %d bytes, skipped %d, ring full %d; tracker skipped %d", kstats.CopiedBytes, kstats.SkippedBytes, kstats.RingbufFullBytes, tstats.BytesSkipped)
}

// serveEnv sets what serve does: the body size, how many responses, and
// the size of the server's writes.
const serveEnv = "REPRISE_PIPELINE_SERVE"

// serve answers GETs with a body of the size serveEnv says, written in
// writes of the size it says.
func serve(cfd, sfd int) error {
	var size, count, write int
	if _, err := fmt.Sscan(os.Getenv(serveEnv), &size, &count, &write); err != nil {
		return fmt.Errorf("%s: %w", serveEnv, err)
	}
	get := []byte("GET /doc HTTP/1.1\r\nHost: large\r\n\r\n")
	resp := append([]byte(respHead(size)), payload(400, size)...)
	for range count {
		if err := writeOnce(cfd, get); err != nil {
			return err
		}
		if _, err := readOnce(sfd, len(get)); err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() {
			for off := 0; off < len(resp); off += write {
				if err := writeOnce(sfd, resp[off:min(off+write, len(resp))]); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		if _, err := readOnce(cfd, len(resp)); err != nil {
			return err
		}
		if err := <-done; err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkAgentCPUPerResponse measures the CPU the agent's side (this
// process: ring reader and tracker) spends per response of 1 MiB and of
// 3 MB, written at once or in 64 KiB writes, both ends captured. Past the
// cap the kernel copies nothing more, so a 3 MB response costs about what
// a 1 MiB one does. agent-cpu-µs/op is this process's user+system time.
//
//	sudo go test -run '^$' -bench AgentCPU -benchtime 40x ./agent/pipeline/
func BenchmarkAgentCPUPerResponse(b *testing.B) {
	for _, write := range []struct {
		name string
		size int // 0: the whole response at once
	}{{"one-write", 0}, {"64KiB-writes", 64 << 10}} {
		for _, size := range []int{64 << 10, bodyCap, 3 << 20} {
			b.Run(fmt.Sprintf("%s/%dKiB", write.name, size>>10), func(b *testing.B) {
				w := write.size
				if w == 0 {
					w = size + 1024
				}
				benchServe(b, size, w)
			})
		}
	}
}

func benchServe(b *testing.B, size, write int) {
	privileged.RequireRoot(b)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		b.Fatal(err)
	}
	defer lnFile.Close()
	capt, err := capture.Open(capture.Config{Ports: []uint16{uint16(ln.Addr().(*net.TCPAddr).Port)}})
	privileged.CheckOpen(b, err)
	defer capt.Close()
	exchanges := make(chan *reprisev1.Exchange, 2*b.N)
	p := New(httpstream.New(httpstream.Config{Skipper: capt}, func(ex *reprisev1.Exchange) { exchanges <- ex }))
	done := make(chan error, 1)
	go func() { done <- p.Run(capt, 100*time.Millisecond) }()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), largeEnv+"=serve "+ln.Addr().String(), fmt.Sprintf("%s=%d %d %d", serveEnv, size, b.N, write),
		"GODEBUG=asyncpreemptoff=1")
	cmd.ExtraFiles = []*os.File{lnFile}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	before := cpuTime()
	b.ResetTimer()
	if err := cmd.Run(); err != nil {
		b.Fatalf("child: %v: %s", err, stderr.String())
	}
	// The ring overflows when this process is not scheduled in time (a
	// loaded machine): exchanges then come incomplete, or not at all with
	// their request. Counted, not a failure of a benchmark.
	incomplete, got := 0, 0
	for got < 2*b.N {
		select {
		case ex := <-exchanges:
			got++
			if ex.Capture.GetResponseIncomplete() {
				incomplete++
			} else if ex.Response.GetBodySize() != int64(size) {
				b.Fatalf("response of %d bytes, capture %v", ex.Response.GetBodySize(), ex.Capture)
			}
		case <-time.After(3 * time.Second):
			incomplete += 2*b.N - got
			got = 2 * b.N
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N), "agent-cpu-µs/op")
	b.ReportMetric(float64(incomplete)/float64(2*b.N), "incomplete-or-missing/exchange")
	if st, err := capt.Stats(); err == nil {
		b.ReportMetric(float64(st.CopiedBytes)/float64(b.N)/(1<<20), "copied-MiB/op")
		b.ReportMetric(float64(st.RingbufFullBytes)/float64(b.N)/(1<<20), "ring-full-MiB/op")
	}
	capt.Close()
	if err := <-done; err != nil {
		b.Fatalf("pipeline: %v", err)
	}
}

// cpuTime is the user and system CPU time of this process.
func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru) // cannot fail for RUSAGE_SELF
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// smallExchange is the GET /after that follows a large body on the same
// connection: it must parse as its own exchange.
func smallExchange(cfd, sfd int) error {
	after := []byte("GET /after HTTP/1.1\r\nHost: large\r\n\r\n")
	resp := []byte(respHead(2) + "ok")
	if err := writeOnce(cfd, after); err != nil {
		return err
	}
	if _, err := readOnce(sfd, len(after)); err != nil {
		return err
	}
	if err := writeOnce(sfd, resp); err != nil {
		return err
	}
	_, err := readOnce(cfd, len(resp))
	return err
}
