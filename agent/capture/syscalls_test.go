//go:build amd64

package capture

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/reprise-dev/reprise/agent/event"
	"github.com/reprise-dev/reprise/internal/privileged"
)

// Raw scenarios call the syscalls directly on blocking sockets: the client
// connects to the inherited listener (fd 3), the server end is accepted in
// the same child. Addresses come from REPRISE_CAPTURE_DIAL.
const dialEnv = "REPRISE_CAPTURE_DIAL"

// rawReport is the ground truth of a raw scenario: the bytes each end wrote.
type rawReport struct {
	ClientSent, ServerSent []byte
	Sendfile               int // bytes the server sent with sendfile, after ServerSent
	Conns                  int
}

type rawConn struct{ client, server int }

var rawScenarios = map[string]func(dial func() (rawConn, error), r *rawReport) error{
	"iovec":  iovecScenario,
	"many":   manyScenario,
	"simple": simpleScenario,
	"splice": spliceScenario,
}

func runRawChild(f func(func() (rawConn, error), *rawReport) error) error {
	if err := unix.SetNonblock(childCapturedFD, false); err != nil {
		return err
	}
	to, err := netip.ParseAddrPort(os.Getenv(dialEnv))
	if err != nil {
		return err
	}
	dial := func() (rawConn, error) {
		family, sa := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Port: int(to.Port()), Addr: to.Addr().As16()})
		if to.Addr().Is4() {
			family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()}
		}
		c, err := unix.Socket(family, unix.SOCK_STREAM, 0)
		if err != nil {
			return rawConn{}, err
		}
		if err := unix.Connect(c, sa); err != nil {
			return rawConn{}, fmt.Errorf("connect: %w", err)
		}
		s, _, err := unix.Accept(childCapturedFD)
		if err != nil {
			return rawConn{}, fmt.Errorf("accept: %w", err)
		}
		return rawConn{client: c, server: s}, nil
	}
	fmt.Println("ready")
	if err := waitExit(); err != nil {
		return err
	}
	var r rawReport
	if err := f(dial, &r); err != nil {
		return err
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return err
	}
	return waitExit()
}

// readAll reads n bytes from fd with read(2), for the ends whose syscall
// is not under test.
func readAll(fd, n int) error {
	buf := make([]byte, n)
	for got := 0; got < n; {
		m, err := unix.Read(fd, buf[got:])
		if err != nil || m == 0 {
			return fmt.Errorf("read %d of %d: %v", got, n, err)
		}
		got += m
	}
	return nil
}

func pattern(tag string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = tag[i%len(tag)]
	}
	return b
}

// iovecScenario: writev → readv, sendmsg → recvmsg, sendmmsg → recvmmsg,
// then sendfile from the server, on one connection.
func iovecScenario(dial func() (rawConn, error), r *rawReport) error {
	c, err := dial()
	if err != nil {
		return err
	}
	r.Conns = 1
	// writev with three entries, one bigger than a chunk; readv into two.
	parts := [][]byte{[]byte("GET /v HTTP/1.1\r\n"), pattern("abc", 20000), []byte("\r\n\r\n")}
	n, err := unix.Writev(c.client, parts)
	if err != nil {
		return fmt.Errorf("writev: %w", err)
	}
	r.ClientSent = append(r.ClientSent, bytes.Join(parts, nil)[:n]...)
	for got := 0; got < n; {
		m, err := unix.Readv(c.server, [][]byte{make([]byte, 100), make([]byte, 30000)})
		if err != nil || m == 0 {
			return fmt.Errorf("readv: %d, %v", m, err)
		}
		got += m
	}
	// sendmsg with two entries; recvmsg with MSG_WAITALL.
	msg := [][]byte{[]byte("HTTP/1.1 200 OK\r\n"), []byte("Content-Length: 0\r\n\r\n")}
	n, err = unix.SendmsgBuffers(c.server, msg, nil, nil, 0)
	if err != nil {
		return fmt.Errorf("sendmsg: %w", err)
	}
	r.ServerSent = append(r.ServerSent, bytes.Join(msg, nil)[:n]...)
	buf := make([]byte, n)
	if m, _, _, _, err := unix.Recvmsg(c.client, buf, nil, unix.MSG_WAITALL); err != nil || m != n {
		return fmt.Errorf("recvmsg: %d of %d, %v", m, n, err)
	}
	// sendmmsg with two messages of two entries and an empty one between
	// (the call goes on past it); recvmmsg of all.
	m1 := [][]byte{[]byte("POST /m HTTP/1.1\r\n"), []byte("Content-Length: 3\r\n\r\n")}
	m2 := [][]byte{[]byte("one"), []byte("")}
	sent, err := mmsg(unix.SYS_SENDMMSG, c.client, [][][]byte{m1, {nil}, m2}, 0)
	if err != nil {
		return fmt.Errorf("sendmmsg: %w", err)
	}
	r.ClientSent = append(r.ClientSent, bytes.Join(append(m1, m2...), nil)[:sent]...)
	if got, err := mmsg(unix.SYS_RECVMMSG, c.server, [][][]byte{{make([]byte, sent)}}, unix.MSG_WAITALL); err != nil || got != sent {
		return fmt.Errorf("recvmmsg: %d of %d, %v", got, sent, err)
	}
	// sendfile: a response body from a file.
	f, err := os.CreateTemp("", "reprise-sendfile")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	body := pattern("file", 50000)
	if _, err := f.Write(body); err != nil {
		return err
	}
	var off int64
	for off < int64(len(body)) {
		m, err := unix.Sendfile(c.server, int(f.Fd()), &off, len(body)-int(off))
		if err != nil || m == 0 {
			return fmt.Errorf("sendfile: %d, %v", m, err)
		}
		r.Sendfile += m
	}
	if err := readAll(c.client, r.Sendfile); err != nil {
		return err
	}
	return errorsJoin(unix.Close(c.client), unix.Close(c.server))
}

// mmsg sends or receives msgs (each a list of iovec entries) in one
// sendmmsg/recvmmsg and returns the bytes moved.
func mmsg(trap uintptr, fd int, msgs [][][]byte, flags int) (int, error) {
	hdrs := make([]unix.Mmsghdr, len(msgs))
	var iovs [][]unix.Iovec
	for i, m := range msgs {
		iov := make([]unix.Iovec, len(m))
		for j, b := range m {
			if len(b) > 0 {
				iov[j].Base = &b[0]
			}
			iov[j].SetLen(len(b))
		}
		iovs = append(iovs, iov)
		hdrs[i].Hdr.Iov = &iov[0]
		hdrs[i].Hdr.SetIovlen(len(iov))
	}
	n, _, errno := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	total := 0
	for _, h := range hdrs[:n] {
		total += int(h.Len)
	}
	_ = iovs // kept alive until the syscall returned
	return total, nil
}

func errorsJoin(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// simpleScenario: a request with write and a response with read.
func simpleScenario(dial func() (rawConn, error), r *rawReport) error {
	c, err := dial()
	if err != nil {
		return err
	}
	r.Conns = 1
	return exchange(c, r)
}

func exchange(c rawConn, r *rawReport) error {
	req, resp := []byte("GET / HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 204 No Content\r\n\r\n")
	if _, err := unix.Write(c.client, req); err != nil {
		return err
	}
	if err := readAll(c.server, len(req)); err != nil {
		return err
	}
	if _, err := unix.Write(c.server, resp); err != nil {
		return err
	}
	if err := readAll(c.client, len(resp)); err != nil {
		return err
	}
	r.ClientSent, r.ServerSent = append(r.ClientSent, req...), append(r.ServerSent, resp...)
	return errorsJoin(unix.Close(c.client), unix.Close(c.server))
}

// spliceLen is how many bytes spliceScenario's server takes out of the
// socket with splice(2), between two reads of spliceLen bytes.
const spliceLen = 100

// spliceScenario: the client writes three parts of spliceLen bytes; the
// server reads the first, splices the second into a pipe (no tracepoint
// sees that) and reads the third.
func spliceScenario(dial func() (rawConn, error), r *rawReport) error {
	c, err := dial()
	if err != nil {
		return err
	}
	r.Conns = 1
	r.ClientSent = bytes.Join([][]byte{pattern("a", spliceLen), pattern("b", spliceLen), pattern("c", spliceLen)}, nil)
	if _, err := unix.Write(c.client, r.ClientSent); err != nil {
		return err
	}
	if err := readAll(c.server, spliceLen); err != nil {
		return err
	}
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		return err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	for got := 0; got < spliceLen; {
		n, err := unix.Splice(c.server, nil, p[1], nil, spliceLen-got, 0)
		if err != nil || n == 0 {
			return fmt.Errorf("splice: %d, %v", n, err)
		}
		got += int(n)
	}
	if err := readAll(c.server, spliceLen); err != nil {
		return err
	}
	return errorsJoin(unix.Close(c.client), unix.Close(c.server))
}

// manyScenario: 200 connections with one exchange each, for sampling.
func manyScenario(dial func() (rawConn, error), r *rawReport) error {
	for range 200 {
		c, err := dial()
		if err != nil {
			return err
		}
		if err := exchange(c, r); err != nil {
			return err
		}
		r.Conns++
	}
	return nil
}

// rawRun is a raw scenario's outcome: the child's report and its events by
// connection, collected until the child has closed them all (or, when the
// capture filters the child out, for a fixed quiet period).
type rawRun struct {
	report rawReport
	pid    uint32
	events map[event.ConnID][]event.Event
}

// runRaw runs scenario in a child; listen is the listener's network and
// address, dial the address the child connects to (port 0: the listener's).
// prepare may adjust the child command (cgroup); cfg gets the port filter.
func runRaw(t *testing.T, scenario, network, listenAddr, dialHost string, cfg func(pid uint32, srv uint16) Config, prepare func(*exec.Cmd), wantCloses int) rawRun {
	t.Helper()
	ln := listen(t, network, listenAddr)
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+scenario,
		dialEnv+"="+net.JoinHostPort(dialHost, strconv.Itoa(int(port(ln)))))
	cmd.ExtraFiles = []*os.File{f, f} // fd 4 unused by raw scenarios
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if prepare != nil {
		prepare(cmd)
	}
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
	run := rawRun{pid: uint32(cmd.Process.Pid), events: map[event.ConnID][]event.Event{}}
	c := open(t, cfg(run.pid, port(ln)))
	events := collect(c)
	stdout := bufio.NewReader(pipe)
	if line, err := stdout.ReadString('\n'); line != "ready\n" {
		t.Fatalf("child handshake: %q, %v\n%s", line, err, stderr.String())
	}
	io.WriteString(stdin, "go\n")
	if err := json.NewDecoder(stdout).Decode(&run.report); err != nil {
		t.Fatalf("child report: %v\n%s", err, stderr.String())
	}
	// wantCloses 0: the child is filtered out; listen for a quiet period.
	closes := 0
	quiet := time.After(20 * pollInterval)
	timeout := time.After(20 * time.Second)
	for done := false; !done && (wantCloses == 0 || closes < wantCloses); {
		select {
		case ev := <-events:
			if ev.Conn.TGID != run.pid {
				continue
			}
			run.events[ev.Conn] = append(run.events[ev.Conn], ev)
			if ev.Kind == event.KindClose {
				closes++
			}
		case <-quiet:
			done = wantCloses == 0
		case <-timeout:
			t.Fatalf("timed out waiting for %d close events, got %d", wantCloses, closes)
		}
	}
	io.WriteString(stdin, "exit\n")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}
	return run
}

func portFilter(_ uint32, srv uint16) Config { return Config{Ports: []uint16{srv}} }

// sides splits the events of one connection pair into server and client.
func sides(t *testing.T, run rawRun) (server, client []event.Event) {
	t.Helper()
	if len(run.events) != 2 {
		t.Fatalf("captured %d connections, want 2", len(run.events))
	}
	for id, evs := range run.events {
		if evs[0].Kind != event.KindOpen || evs[len(evs)-1].Kind != event.KindClose {
			t.Errorf("conn %v: first event %d, last %d", id, evs[0].Kind, evs[len(evs)-1].Kind)
		}
		switch evs[0].Role {
		case event.RoleServer:
			server = evs
		case event.RoleClient:
			client = evs
		}
	}
	if server == nil || client == nil {
		t.Fatalf("want a server and a client connection, got %v", run.events)
	}
	return server, client
}

// Every iovec syscall and sendfile, on IPv4, IPv6 and an IPv6 socket that
// talks to an IPv4 peer (v4-mapped addresses).
func TestCaptureIovecAndSendfile(t *testing.T) {
	cases := []struct{ name, network, listen, dial string }{
		{"ipv4", "tcp4", "127.0.0.1:0", "127.0.0.1"},
		{"ipv6", "tcp6", "[::1]:0", "::1"},
		{"v4-mapped", "tcp", "[::]:0", "127.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.network != "tcp4" {
				if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					ln.Close()
				}
			}
			run := runRaw(t, "iovec", tc.network, tc.listen, tc.dial, portFilter, nil, 2)
			server, client := sides(t, run)
			want := netip.MustParseAddr(tc.dial)
			if server[0].Local.Addr() != want || client[0].Remote.Addr() != want || server[0].Remote != client[0].Local {
				t.Errorf("addresses: server %v -> %v, client %v -> %v; want %v", server[0].Local, server[0].Remote, client[0].Local, client[0].Remote, want)
			}
			r := run.report
			for _, c := range []struct {
				name string
				evs  []event.Event
				dir  event.Direction
				want []byte
			}{
				{"server ingress", server, event.Ingress, r.ClientSent},
				{"client egress", client, event.Egress, r.ClientSent},
				{"client ingress", client, event.Ingress, append(append([]byte(nil), r.ServerSent...), pattern("file", r.Sendfile)...)},
			} {
				got := reassemble(c.evs, c.dir)
				if !bytes.Equal(got.data, c.want) || !got.contiguous {
					t.Errorf("%s: %d bytes (contiguous %v), want %d:\n got %q\nwant %q", c.name, len(got.data), got.contiguous, len(c.want), head(got.data), head(c.want))
				}
			}
			// Server egress: sendmsg bytes, then sendfile's counted but unavailable.
			var copied []byte
			var unavailable int
			for _, ev := range server {
				if ev.Kind != event.KindData || ev.Dir != event.Egress {
					continue
				}
				if ev.Unavailable {
					if len(ev.Data) != 0 || ev.Pos != uint64(len(r.ServerSent)+unavailable) {
						t.Errorf("sendfile event at %d with %d bytes of data", ev.Pos, len(ev.Data))
					}
					unavailable += int(ev.Size)
					continue
				}
				copied = append(copied, ev.Data...)
			}
			if !bytes.Equal(copied, r.ServerSent) || unavailable != r.Sendfile {
				t.Errorf("server egress: copied %q, %d unavailable; want %q, %d", copied, unavailable, r.ServerSent, r.Sendfile)
			}
		})
	}
}

func head(b []byte) []byte { return b[:min(len(b), 80)] }

// Bytes spliced out of a socket pass no tracepoint: they must show as a gap
// in the stream, with what follows in its place, never as bytes left out.
func TestCaptureSplicedBytesAreAGap(t *testing.T) {
	run := runRaw(t, "splice", "tcp4", "127.0.0.1:0", "127.0.0.1", portFilter, nil, 2)
	server, _ := sides(t, run)
	type span struct {
		pos  uint64
		data string
	}
	var got []span
	for _, ev := range server {
		if ev.Kind == event.KindData && ev.Dir == event.Ingress {
			got = append(got, span{ev.Pos, string(ev.Data)})
		}
	}
	want := []span{{0, string(pattern("a", spliceLen))}, {2 * spliceLen, string(pattern("c", spliceLen))}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("server ingress: %v\nwant %v", got, want)
	}
}

// Sampling keeps or drops whole connections, about half of them at 0.5.
func TestCaptureSampling(t *testing.T) {
	run := runRaw(t, "many", "tcp4", "127.0.0.1:0", "127.0.0.1", func(_ uint32, srv uint16) Config {
		return Config{Ports: []uint16{srv}, SampleRate: 0.5}
	}, nil, 0)
	if run.report.Conns != 200 {
		t.Fatalf("child made %d connections, want 200", run.report.Conns)
	}
	for id, evs := range run.events {
		in, out := reassemble(evs, event.Ingress), reassemble(evs, event.Egress)
		if evs[0].Kind != event.KindOpen || evs[len(evs)-1].Kind != event.KindClose || in.size == 0 || out.size == 0 {
			t.Errorf("conn %v captured partly: %d events, %d in, %d out", id, len(evs), in.size, out.size)
		}
	}
	// 400 connection ends (client and server); binomial(400, 0.5) is
	// outside 40..360 with negligible probability.
	if n := len(run.events); n < 40 || n > 360 {
		t.Errorf("captured %d of 400 connection ends at rate 0.5", n)
	}
}

// The pid and cgroup filters capture the named process only.
func TestCapturePidAndCgroupFilters(t *testing.T) {
	t.Run("pid other", func(t *testing.T) {
		run := runRaw(t, "simple", "tcp4", "127.0.0.1:0", "127.0.0.1", func(_ uint32, srv uint16) Config {
			return Config{Ports: []uint16{srv}, Pids: []uint32{uint32(os.Getpid())}}
		}, nil, 0)
		if len(run.events) != 0 {
			t.Errorf("captured %d connections of a process outside the pid filter", len(run.events))
		}
	})
	t.Run("pid", func(t *testing.T) {
		run := runRaw(t, "simple", "tcp4", "127.0.0.1:0", "127.0.0.1", func(pid uint32, srv uint16) Config {
			return Config{Ports: []uint16{srv}, Pids: []uint32{pid}}
		}, nil, 2)
		sides(t, run)
	})
	cgroupRoot, err := CgroupV2Root()
	if err != nil {
		privileged.SkipMissingFeature(t, "no cgroup v2 hierarchy: "+err.Error())
	}
	dir, err := os.MkdirTemp(cgroupRoot, "reprise-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) }) // after the child is gone (cleanups run last first)
	var ino uint64
	if fi, err := os.Stat(dir); err == nil {
		ino = fi.Sys().(*syscall.Stat_t).Ino
	}
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	inCgroup := func(cmd *exec.Cmd) {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	}
	for _, name := range []string{dir, strings.TrimPrefix(dir, cgroupRoot+"/")} {
		t.Run("cgroup "+name, func(t *testing.T) {
			run := runRaw(t, "simple", "tcp4", "127.0.0.1:0", "127.0.0.1", func(_ uint32, srv uint16) Config {
				return Config{Ports: []uint16{srv}, Cgroups: []string{name}}
			}, inCgroup, 2)
			server, client := sides(t, run)
			if server[0].CgroupID != ino || client[1].CgroupID != ino {
				t.Errorf("cgroup ids %d, %d; want %d", server[0].CgroupID, client[1].CgroupID, ino)
			}
		})
	}
	t.Run("cgroup other", func(t *testing.T) {
		run := runRaw(t, "simple", "tcp4", "127.0.0.1:0", "127.0.0.1", func(_ uint32, srv uint16) Config {
			return Config{Ports: []uint16{srv}, Cgroups: []string{dir}}
		}, nil, 0)
		if len(run.events) != 0 {
			t.Errorf("captured %d connections of a process outside the cgroup", len(run.events))
		}
	})
}

func TestConfigErrorsNameField(t *testing.T) {
	for _, c := range []struct {
		cfg   Config
		field string
	}{
		{Config{SampleRate: 1.5}, "SampleRate"},
		{Config{SampleRate: -0.1}, "SampleRate"},
		{Config{Pids: []uint32{0}}, "Pids"},
		{Config{RingSize: 1000}, "RingSize"},
		{Config{Cgroups: []string{"no/such/cgroup"}}, "Cgroups"},
	} {
		_, err := Open(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("Open(%+v): %v, want an error naming %s", c.cfg, err, c.field)
		}
	}
}
