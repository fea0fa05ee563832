//go:build amd64

package capture

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/agent/event"
	"github.com/reprise-dev/reprise/internal/privileged"
)

// The traffic runs in a child process (this test binary, re-executed): the
// test process loads the programs and is excluded from capture like the
// agent, so it must not be the one talking.
const childEnv = "REPRISE_CAPTURE_CHILD"

// Listeners the child inherits: the captured one and one on a port outside
// the filter.
const (
	childCapturedFD = 3
	childOtherFD    = 4
)

const bigSize = 100 << 10

func TestMain(m *testing.M) {
	if scenario := os.Getenv(childEnv); scenario != "" {
		run := runChild
		if f, ok := rawScenarios[scenario]; ok {
			run = func(string) error { return runRawChild(f) }
		}
		if err := run(scenario); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childReport is what the child saw on its client connection to the
// captured port, the ground truth for the capture.
type childReport struct {
	Sent     []byte // every byte the client wrote
	Received []byte // every byte the client read
	Dials    int
}

// recordingConn keeps what crosses a client connection.
type recordingConn struct {
	net.Conn
	mu             *sync.Mutex
	sent, received *bytes.Buffer
}

func (c recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.received.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c recordingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.sent.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func bigBody() []byte {
	b := make([]byte, bigSize)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "echo:%s", body)
	})
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(bigSize))
		w.Write(bigBody())
	})
	return mux
}

// runChild serves both inherited listeners, runs the scenario's requests
// over one keep-alive connection to the captured one, makes a request to
// the other, closes everything and reports on stdout.
func runChild(scenario string) error {
	var servers []*http.Server
	var addrs []string
	for _, fd := range []uintptr{childCapturedFD, childOtherFD} {
		ln, err := net.FileListener(os.NewFile(fd, "listener"))
		if err != nil {
			return fmt.Errorf("inherit listener %d: %w", fd, err)
		}
		// Generous: a connection opened before the capture waits for the
		// programs to load (seconds on a loaded machine) before its first request.
		srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 30 * time.Second}
		go srv.Serve(ln)
		servers = append(servers, srv)
		addrs = append(addrs, ln.Addr().String())
	}

	var (
		mu             sync.Mutex
		sent, received bytes.Buffer
		dials          int
		early          net.Conn
	)
	if scenario == "preexisting" {
		// Connected before the parent starts capturing.
		c, err := net.Dial("tcp", addrs[0])
		if err != nil {
			return err
		}
		early = c
	}
	captured := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials++
		c := early
		if c == nil {
			var err error
			if c, err = (&net.Dialer{}).DialContext(ctx, network, addr); err != nil {
				return nil, err
			}
		}
		return recordingConn{Conn: c, mu: &mu, sent: &sent, received: &received}, nil
	}}
	// Handshake: the parent may open the capture only now.
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("wait for go: %w", err)
	}
	client := &http.Client{Transport: captured, Timeout: 10 * time.Second}
	base := "http://" + addrs[0]

	do := func(c *http.Client, method, url, body string) error {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			return err
		}
		if body == "" {
			req.Body = nil
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s %s: %s", method, url, resp.Status)
		}
		return nil
	}

	var steps []func() error
	switch scenario {
	case "keepalive", "preexisting":
		steps = []func() error{
			func() error { return do(client, "POST", base+"/echo", "hello reprise") },
			func() error { return do(client, "POST", base+"/echo", strings.Repeat("second body ", 10)) },
			func() error { return do(client, "POST", base+"/echo", "third") },
		}
	case "big":
		steps = []func() error{func() error { return do(client, "GET", base+"/big", "") }}
	default:
		return fmt.Errorf("unknown scenario %q", scenario)
	}
	other := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	steps = append(steps, func() error { return do(other, "POST", "http://"+addrs[1]+"/echo", "not captured") })
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}

	// Close explicitly: fds closed by exit do not go through close(2).
	captured.CloseIdleConnections()
	other.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if err := json.NewEncoder(os.Stdout).Encode(childReport{Sent: sent.Bytes(), Received: received.Bytes(), Dials: dials}); err != nil {
		return err
	}
	return waitExit()
}

// waitExit keeps the child alive until the parent has read its events:
// roles of connections opened before the capture are resolved from the
// process's sockets while it lives.
func waitExit() error {
	_, err := bufio.NewReader(os.Stdin).ReadString('\n')
	return err
}

func open(t *testing.T, cfg Config) *Capture {
	t.Helper()
	privileged.RequireRoot(t)
	c, err := Open(cfg)
	privileged.CheckOpen(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// collect reads events in the background until the capture is closed. It
// copies Data, which is only valid until the next Read.
func collect(c *Capture) <-chan event.Event {
	ch := make(chan event.Event, 1024)
	go func() {
		defer close(ch)
		for {
			ev, err := c.Read()
			if err != nil {
				return
			}
			ev.Data = bytes.Clone(ev.Data)
			ch <- ev
		}
	}()
	return ch
}

func listen(t *testing.T, network, addr string) *net.TCPListener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

func port(ln net.Listener) uint16 {
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// traffic is what the capture saw of the child's connections.
type traffic struct {
	report  childReport
	pid     uint32
	events  map[event.ConnID][]event.Event
	otherIn []event.Event // events on the port outside the filter
}

// runScenario captures a child running scenario against listeners on host.
// The capture starts before the child connects, or after for "preexisting".
func runScenario(t *testing.T, host, scenario string) (*Capture, *traffic, uint16) {
	privileged.RequireRoot(t)
	network := "tcp4"
	if strings.Contains(host, ":") {
		network = "tcp6"
	}
	ln := listen(t, network, net.JoinHostPort(host, "0"))
	other := listen(t, network, net.JoinHostPort(host, "0"))
	var c *Capture
	if scenario != "preexisting" {
		c = open(t, Config{Ports: []uint16{port(ln)}})
	}

	files := make([]*os.File, 0, 2)
	for _, l := range []*net.TCPListener{ln, other} {
		f, err := l.File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+scenario)
	cmd.ExtraFiles = files
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	stdout := bufio.NewReader(pipe)
	if line, err := stdout.ReadString('\n'); line != "ready\n" {
		t.Fatalf("child handshake: %q, %v\n%s", line, err, stderr.String())
	}
	if c == nil {
		c = open(t, Config{Ports: []uint16{port(ln)}})
	}
	events := collect(c)
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	tr := &traffic{pid: uint32(cmd.Process.Pid), events: map[event.ConnID][]event.Event{}}
	if err := json.NewDecoder(stdout).Decode(&tr.report); err != nil {
		t.Fatalf("child report: %v\n%s", err, stderr.String())
	}
	if tr.report.Dials != 1 {
		t.Fatalf("client dialed %d connections, want 1 kept alive", tr.report.Dials)
	}

	// Wait for the close events of the client and the server connection.
	closed := 0
	timeout := time.After(10 * time.Second)
	for closed < 2 {
		select {
		case ev := <-events:
			if ev.Local.Port() == port(other) || ev.Remote.Port() == port(other) {
				tr.otherIn = append(tr.otherIn, ev)
			}
			if ev.Conn.TGID != tr.pid {
				continue
			}
			tr.events[ev.Conn] = append(tr.events[ev.Conn], ev)
			if ev.Kind == event.KindClose {
				closed++
			}
		case <-timeout:
			t.Fatalf("timed out waiting for close events; got %d connections", len(tr.events))
		}
	}
	io.WriteString(stdin, "exit\n")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}
	return c, tr, port(ln)
}

// stream is one direction of a connection put back together by Pos.
type stream struct {
	data       []byte // lost bytes are zero
	size       uint64 // stream bytes covered
	lost       uint64 // bytes the kernel did not copy
	contiguous bool
}

func reassemble(evs []event.Event, dir event.Direction) stream {
	var data []event.Event
	for _, ev := range evs {
		if ev.Kind == event.KindData && ev.Dir == dir {
			data = append(data, ev)
		}
	}
	sort.Slice(data, func(i, j int) bool { return data[i].Pos < data[j].Pos })
	s := stream{contiguous: true}
	for _, ev := range data {
		if ev.Pos != s.size {
			s.contiguous = false
		}
		end := ev.Pos + uint64(ev.Size)
		if uint64(len(s.data)) < end {
			s.data = append(s.data, make([]byte, end-uint64(len(s.data)))...)
		}
		copy(s.data[ev.Pos:], ev.Data)
		s.size = end
		s.lost += uint64(ev.Size) - uint64(len(ev.Data))
	}
	return s
}

// conns finds the server and the client side of the captured connection and
// checks their lifecycle and addresses. Connections that predate the capture
// have no open event and no role from the kernel (the tracker asks
// sock_diag when it needs one): their side is told by the server's port.
func conns(t *testing.T, tr *traffic, host string, srvPort uint16, preexisting bool) (server, client []event.Event) {
	t.Helper()
	if len(tr.otherIn) > 0 {
		t.Errorf("captured %d events on a port outside the filter, first %+v", len(tr.otherIn), tr.otherIn[0])
	}
	if len(tr.events) != 2 {
		t.Fatalf("captured %d connections of the child, want 2 (server and client side)", len(tr.events))
	}
	first := event.KindOpen
	if preexisting {
		first = event.KindData
	}
	for id, evs := range tr.events {
		if evs[0].Kind != first || evs[len(evs)-1].Kind != event.KindClose {
			t.Errorf("conn %v: first event %d, last %d; want %d first and close last", id, evs[0].Kind, evs[len(evs)-1].Kind, first)
		}
		for _, ev := range evs {
			if ev.Role != evs[0].Role || ev.Local != evs[0].Local || ev.Remote != evs[0].Remote {
				t.Errorf("conn %v: event %+v disagrees with first %+v", id, ev, evs[0])
			}
		}
		role := evs[0].Role
		if preexisting {
			if role != event.RoleUnknown {
				t.Errorf("conn %v predates the capture but has role %d from the kernel", id, role)
			}
			role = event.RoleClient
			if evs[0].Local.Port() == srvPort {
				role = event.RoleServer
			}
		}
		switch {
		case role == event.RoleServer && evs[0].Local.Port() == srvPort:
			server = evs
		case role == event.RoleClient && evs[0].Remote.Port() == srvPort:
			client = evs
		default:
			t.Errorf("conn %v: role %d for %v -> %v", id, role, evs[0].Local, evs[0].Remote)
		}
	}
	if server == nil || client == nil {
		t.Fatalf("want a server and a client connection, got %v", tr.events)
	}
	want := netip.AddrPortFrom(netip.MustParseAddr(host), srvPort)
	if server[0].Local != want || client[0].Remote != want {
		t.Errorf("server local %v, client remote %v; want %v", server[0].Local, client[0].Remote, want)
	}
	if server[0].Remote != client[0].Local {
		t.Errorf("server remote %v != client local %v", server[0].Remote, client[0].Local)
	}
	if server[0].Comm == "" || server[0].Time.Before(time.Now().Add(-time.Minute)) || server[0].Time.After(time.Now()) {
		t.Errorf("implausible comm or time: %+v", server[0])
	}
	return server, client
}

func TestCaptureKeepAlive(t *testing.T) {
	hosts := []string{"127.0.0.1"}
	if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		ln.Close()
		hosts = append(hosts, "::1")
	} else {
		t.Logf("no IPv6 loopback, IPv4 only: %v", err)
	}
	type scenario struct{ host, name string }
	scenarios := []scenario{{"127.0.0.1", "preexisting"}}
	for _, host := range hosts {
		scenarios = append(scenarios, scenario{host, "keepalive"})
	}
	for _, sc := range scenarios {
		t.Run(sc.name+"/"+sc.host, func(t *testing.T) {
			_, tr, srvPort := runScenario(t, sc.host, sc.name)
			server, client := conns(t, tr, sc.host, srvPort, sc.name == "preexisting")

			for _, c := range []struct {
				name string
				got  stream
				want []byte
			}{
				{"server ingress", reassemble(server, event.Ingress), tr.report.Sent},
				{"server egress", reassemble(server, event.Egress), tr.report.Received},
				{"client egress", reassemble(client, event.Egress), tr.report.Sent},
				{"client ingress", reassemble(client, event.Ingress), tr.report.Received},
			} {
				if !c.got.contiguous || c.got.lost != 0 {
					t.Errorf("%s: gaps (contiguous %v, lost %d)", c.name, c.got.contiguous, c.got.lost)
				}
				if !bytes.Equal(c.got.data, c.want) {
					t.Errorf("%s:\n got %q\nwant %q", c.name, c.got.data, c.want)
				}
			}
			egress := reassemble(server, event.Egress).data
			if !bytes.HasPrefix(egress, []byte("HTTP/1.1 200")) || !bytes.Contains(egress, []byte("echo:hello reprise")) {
				t.Errorf("server egress is not the responses: %q", egress)
			}
			if n := bytes.Count(tr.report.Sent, []byte("POST /echo")); n != 3 {
				t.Errorf("client sent %d requests, want 3", n)
			}
		})
	}
}

// A response bigger than one chunk arrives whole, or with the bytes past
// the per-syscall cap counted as truncated and left as a gap of known size.
func TestCaptureBigResponse(t *testing.T) {
	c, tr, srvPort := runScenario(t, "127.0.0.1", "big")
	server, client := conns(t, tr, "127.0.0.1", srvPort, false)
	stats, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		name string
		got  stream
	}{
		{"server egress", reassemble(server, event.Egress)},
		{"client ingress", reassemble(client, event.Ingress)},
	} {
		want := tr.report.Received
		if !s.got.contiguous || s.got.size != uint64(len(want)) {
			t.Errorf("%s: covers %d bytes (contiguous %v), want %d", s.name, s.got.size, s.got.contiguous, len(want))
			continue
		}
		if s.got.lost > stats.TruncatedBytes {
			t.Errorf("%s: %d bytes lost, only %d counted as truncated", s.name, s.got.lost, stats.TruncatedBytes)
		}
		// Lost bytes are zero in the reassembly; every other byte must match.
		mismatch := 0
		for i := range want {
			if s.got.data[i] != want[i] && s.got.data[i] != 0 {
				mismatch++
			}
		}
		zeros := uint64(bytes.Count(s.got.data, []byte{0}))
		if mismatch != 0 || zeros != s.got.lost {
			t.Errorf("%s: %d bytes differ, %d zero bytes for %d lost", s.name, mismatch, zeros, s.got.lost)
		}
		t.Logf("%s: %d bytes, %d lost to truncation", s.name, s.got.size, s.got.lost)
	}
	if !bytes.HasSuffix(tr.report.Received, bigBody()) {
		t.Fatalf("client did not receive the big body")
	}
}

// The process that loads the programs is never captured.
func TestCaptureExcludesSelf(t *testing.T) {
	ln := listen(t, "tcp4", "127.0.0.1:0")
	c := open(t, Config{Ports: []uint16{port(ln)}})
	events := collect(c)
	// Generous: a connection opened before the capture waits for the
	// programs to load (seconds on a loaded machine) before its first request.
	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	tp := &http.Transport{}
	resp, err := (&http.Client{Transport: tp, Timeout: 5 * time.Second}).Post("http://"+ln.Addr().String()+"/echo", "text/plain", strings.NewReader("self"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	tp.CloseIdleConnections()

	// Twenty poll intervals: anything captured would have arrived.
	timeout := time.After(20 * pollInterval)
	for {
		select {
		case ev := <-events:
			if ev.Conn.TGID == uint32(os.Getpid()) {
				t.Fatalf("captured own traffic: %+v", ev)
			}
		case <-timeout:
			return
		}
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	// A port nobody uses: Read has nothing to return and blocks.
	c := open(t, Config{Ports: []uint16{1}})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read()
		errc <- err
	}()
	time.Sleep(3 * pollInterval)
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Read still blocked 2s after Close")
	}
}

// discard accepts one connection on ln and reads it to its end; the channel
// closes when it has.
func discard(ln net.Listener) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if s, err := ln.Accept(); err == nil {
			_, _ = io.Copy(io.Discard, s)
			s.Close()
		}
	}()
	return done
}

// An event's Data is the kernel's record in place: closing the capture
// while the event is being handled (the agent's shutdown) must leave it
// readable until the next Read.
func TestCloseKeepsTheLastEventReadable(t *testing.T) {
	ln := listen(t, "tcp4", "127.0.0.1:0")
	// SelfTGID 1: this process's own traffic is captured.
	c := open(t, Config{Ports: []uint16{port(ln)}, SelfTGID: 1})
	discard(ln)
	conn, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("hello ring")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ev, err := c.Read()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if ev.Kind != event.KindData || ev.Dir != event.Egress {
			continue
		}
		if err := c.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if string(ev.Data) != "hello ring" {
			t.Fatalf("Data after Close = %q, want %q", ev.Data, "hello ring")
		}
		if _, err := c.Read(); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close: %v, want os.ErrClosed", err)
		}
		return
	}
	t.Fatal("no egress data event in 5s")
}

// When the ring is full the kernel drops events, counts their bytes, and
// flags the next event of the same direction, so the agent gives up on the
// gap at once instead of waiting for it.
func TestRingFullIsFlaggedAndCounted(t *testing.T) {
	ln := listen(t, "tcp4", "127.0.0.1:0")
	c := open(t, Config{Ports: []uint16{port(ln)}, SelfTGID: 1, RingSize: 64 << 10})
	done := discard(ln)
	conn, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// Nothing reads the ring meanwhile: 1 MiB cannot fit in 64 KiB. Then,
	// with the ring drained, one more write that has room.
	const writes, size = 101, 10 << 10
	chunk := bytes.Repeat([]byte("x"), size)
	for range writes - 1 {
		if _, err := conn.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	events := collect(c)
	time.Sleep(5 * pollInterval)
	if _, err := conn.Write(chunk); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	<-done
	type key struct {
		conn event.ConnID
		dir  event.Direction
	}
	next := map[key]uint64{}
	var gaps, flagged, unflaggedGaps uint64
	timeout := time.After(10 * pollInterval)
read:
	for {
		select {
		case ev := <-events:
			if ev.Kind != event.KindData {
				continue
			}
			k := key{ev.Conn, ev.Dir}
			if ev.Pos > next[k] {
				gaps += ev.Pos - next[k]
				if !ev.AfterLoss {
					unflaggedGaps++
				}
			}
			if ev.AfterLoss {
				flagged++
			}
			next[k] = ev.Pos + uint64(ev.Size)
		case <-timeout:
			break read
		}
	}
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// Drops at the end of a stream leave no event after them to show a gap.
	var tail uint64
	for _, n := range next {
		tail += writes*size - n
	}
	if st.RingbufFull == 0 || flagged == 0 {
		t.Fatalf("ring full %d times, %d events flagged; want both > 0", st.RingbufFull, flagged)
	}
	if unflaggedGaps != 0 {
		t.Errorf("%d gaps without AfterLoss on the event after them", unflaggedGaps)
	}
	if gaps+tail != st.RingbufFullBytes {
		t.Errorf("gaps %d + lost tails %d = %d bytes, kernel counted %d", gaps, tail, gaps+tail, st.RingbufFullBytes)
	}
}

// curl moves its bytes with sendto and recvfrom (send/recv in libc), where
// Go uses write and read. The server runs in this process and is excluded.
func TestCaptureCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	ln := listen(t, "tcp4", "127.0.0.1:0")
	c := open(t, Config{Ports: []uint16{port(ln)}})
	events := collect(c)
	// Generous: a connection opened before the capture waits for the
	// programs to load (seconds on a loaded machine) before its first request.
	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	url := "http://" + ln.Addr().String() + "/echo"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "-sS", "--data", "one", url, "--next", "--data", "two", url)
	out, err := cmd.Output()
	if err != nil || string(out) != "echo:oneecho:two" {
		t.Fatalf("curl: %q, %v", out, err)
	}

	var evs []event.Event
	timeout := time.After(10 * time.Second)
	for len(evs) == 0 || evs[len(evs)-1].Kind != event.KindClose {
		select {
		case ev := <-events:
			if ev.Conn.TGID == uint32(os.Getpid()) {
				t.Fatalf("captured own traffic: %+v", ev)
			}
			if ev.Conn.TGID == uint32(cmd.Process.Pid) {
				evs = append(evs, ev)
			}
		case <-timeout:
			t.Fatalf("timed out waiting for curl's close event; got %d events", len(evs))
		}
	}
	want := netip.MustParseAddrPort(ln.Addr().String())
	if evs[0].Kind != event.KindOpen || evs[0].Role != event.RoleClient || evs[0].Remote != want || evs[0].Comm != "curl" {
		t.Errorf("first event %+v, want the open of a client connection to %v by curl", evs[0], want)
	}
	for _, ev := range evs {
		if ev.Conn != evs[0].Conn {
			t.Fatalf("curl used two connections: %v and %v", evs[0].Conn, ev.Conn)
		}
	}
	egress, ingress := reassemble(evs, event.Egress), reassemble(evs, event.Ingress)
	for _, s := range []stream{egress, ingress} {
		if !s.contiguous || s.lost != 0 {
			t.Errorf("gaps (contiguous %v, lost %d)", s.contiguous, s.lost)
		}
	}
	if n := bytes.Count(egress.data, []byte("POST /echo HTTP/1.1\r\n")); n != 2 || !bytes.HasSuffix(egress.data, []byte("\r\n\r\ntwo")) {
		t.Errorf("egress has %d requests: %q", n, egress.data)
	}
	if n := bytes.Count(ingress.data, []byte("HTTP/1.1 200 OK\r\n")); n != 2 || !bytes.HasSuffix(ingress.data, []byte("\r\n\r\necho:two")) {
		t.Errorf("ingress has %d responses: %q", n, ingress.data)
	}
}

// The ring's data is mapped once, so a record that runs past its end
// continues at its start and is put back together: streams much longer
// than a small ring, in writes of odd sizes so that records straddle the
// end in every lap, arrive byte for byte on both sides.
func TestRecordsAcrossTheRingEnd(t *testing.T) {
	ln := listen(t, "tcp4", "127.0.0.1:0")
	const ring = 64 << 10
	c := open(t, Config{Ports: []uint16{port(ln)}, SelfTGID: 1, RingSize: ring})
	done := discard(ln)
	conn, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	events := collect(c)
	type key struct {
		conn event.ConnID
		dir  event.Direction
	}
	got := map[key][]byte{}
	seen := func() int { // bytes of the stream least far along
		least := -1
		for _, b := range got {
			if least < 0 || len(b) < least {
				least = len(b)
			}
		}
		if len(got) < 2 {
			return 0
		}
		return least
	}
	var sent []byte
	timeout := time.After(30 * time.Second)
	for burst := 0; len(sent) < 8*ring; burst++ {
		// A burst stays well under the ring, so nothing is lost; then both
		// sides' events are read before the next.
		for i := range 3 {
			chunk := bytes.Repeat([]byte{byte('a' + (burst+i)%26)}, 500+(burst*3+i)*389%2500)
			if _, err := conn.Write(chunk); err != nil {
				t.Fatal(err)
			}
			sent = append(sent, chunk...)
		}
		for seen() < len(sent) {
			select {
			case ev := <-events:
				if ev.Kind != event.KindData {
					continue
				}
				k := key{ev.Conn, ev.Dir}
				if ev.AfterLoss || ev.Pos != uint64(len(got[k])) || len(ev.Data) != int(ev.Size) {
					t.Fatalf("event at %d of %d bytes (%d in data, after loss %v), stream has %d", ev.Pos, ev.Size, len(ev.Data), ev.AfterLoss, len(got[k]))
				}
				got[k] = append(got[k], ev.Data...)
			case <-timeout:
				t.Fatalf("after %d bytes sent, the streams reached %d", len(sent), seen())
			}
		}
	}
	conn.Close()
	<-done
	for k, b := range got {
		if !bytes.Equal(b, sent) {
			t.Fatalf("%v stream of %d bytes differs from the %d sent", k.dir, len(b), len(sent))
		}
	}
}
