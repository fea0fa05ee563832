//go:build amd64

package pipeline

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/agent/capture"
	"github.com/reprise-dev/reprise/agent/httpstream"
	"github.com/reprise-dev/reprise/internal/privileged"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// The HTTP server and client run in a child process (this test binary,
// re-executed): the test process loads the programs and, like the agent,
// excludes itself from capture.
const childEnv = "REPRISE_PIPELINE_CHILD"

const (
	postBody = `{"name":"espresso","qty":2}`
	postResp = `{"id":7,"name":"espresso","qty":2}`
	getResp  = `{"id":7,"name":"espresso","qty":2,"status":"open"}`
)

func TestMain(m *testing.M) {
	if mode, addr, ok := strings.Cut(os.Getenv(largeEnv), " "); ok {
		if err := runLargeChild(mode, addr); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if addr := os.Getenv(childEnv); addr != "" {
		if err := runChild(addr); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild serves on the inherited listener (fd 3) and sends a POST and a
// GET to itself over one keep-alive connection.
func runChild(addr string) error {
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return fmt.Errorf("inherit listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/items", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if string(body) != postBody {
			http.Error(w, "unexpected body", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, postResp)
	})
	mux.HandleFunc("GET /api/items/7", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, getResp)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()

	client := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 5 * time.Second}
	send := func(method, target, body string, want int) error {
		req, err := http.NewRequest(method, "http://"+addr+target, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "reprise-test/1")
		req.Header.Set("X-Request-Id", "req-"+method)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != want {
			return fmt.Errorf("%s %s: status %d, want %d", method, target, resp.StatusCode, want)
		}
		return nil
	}
	if err := send("POST", "/api/items?src=test", postBody, http.StatusCreated); err != nil {
		return err
	}
	if err := send("GET", "/api/items/7", "", http.StatusOK); err != nil {
		return err
	}
	client.CloseIdleConnections()
	return nil
}

// TestPrivilegedEndToEnd loads the real programs, runs a real Go server and
// client on loopback, and checks the exchanges the pipeline assembles.
func TestPrivilegedEndToEnd(t *testing.T) {
	privileged.RequireRoot(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lnFile.Close()

	capt, err := capture.Open(capture.Config{Ports: []uint16{uint16(port)}})
	privileged.CheckOpen(t, err)
	defer capt.Close()

	exchanges := make(chan *reprisev1.Exchange, 16)
	p := New(httpstream.New(httpstream.Config{}, func(ex *reprisev1.Exchange) { exchanges <- ex }))
	done := make(chan error, 1)
	go func() { done <- p.Run(capt, 100*time.Millisecond) }()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+ln.Addr().String())
	cmd.ExtraFiles = []*os.File{lnFile}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v: %s", err, stderr.String())
	}

	// Two requests, each seen once by the server (inbound) and once by the
	// client (outbound), on the same host.
	got := map[string]*reprisev1.Exchange{}
	timeout := time.After(10 * time.Second)
	for len(got) < 4 {
		select {
		case ex := <-exchanges:
			got[ex.Direction.String()+" "+ex.Request.GetMethod()] = ex
		case <-timeout:
			t.Fatalf("got %d exchanges after 10s, want 4: %v; tracker stats %+v", len(got), keys(got), p.Stats())
		}
	}
	capt.Close()
	if err := <-done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}

	host := "127.0.0.1:" + strconv.Itoa(port)
	for _, dir := range []reprisev1.Direction{reprisev1.Direction_DIRECTION_INBOUND, reprisev1.Direction_DIRECTION_OUTBOUND} {
		post, get := got[dir.String()+" POST"], got[dir.String()+" GET"]
		if post == nil || get == nil {
			t.Fatalf("%s: missing exchanges, have %v", dir, keys(got))
		}
		checkRequest(t, post.Request, "POST", "/api/items?src=test", host, []string{
			"Host: " + host, "User-Agent: reprise-test/1", "Content-Length: " + strconv.Itoa(len(postBody)),
			"Content-Type: application/json", "X-Request-Id: req-POST",
		}, postBody)
		checkRequest(t, get.Request, "GET", "/api/items/7", host, []string{
			"Host: " + host, "User-Agent: reprise-test/1", "X-Request-Id: req-GET",
		}, "")
		checkResponse(t, post.Response, 201, postResp)
		checkResponse(t, get.Response, 200, getResp)

		// The captured process's end is local; the server's port is on the
		// local side when it served, on the remote side when it sent.
		wantLocal, wantRemote := uint32(port), post.Remote.GetPort()
		if dir == reprisev1.Direction_DIRECTION_OUTBOUND {
			wantLocal, wantRemote = post.Local.GetPort(), uint32(port)
		}
		for _, ex := range []*reprisev1.Exchange{post, get} {
			if ex.Local.GetIp() != "127.0.0.1" || ex.Remote.GetIp() != "127.0.0.1" ||
				ex.Local.GetPort() != wantLocal || ex.Remote.GetPort() != wantRemote {
				t.Errorf("%s %s: local %v remote %v, want ports %d/%d", dir, ex.Request.Method, ex.Local, ex.Remote, wantLocal, wantRemote)
			}
			if ex.Process.GetPid() != uint32(cmd.Process.Pid) {
				t.Errorf("%s %s: pid %d, want the child's %d", dir, ex.Request.Method, ex.Process.GetPid(), cmd.Process.Pid)
			}
			if ex.Capture.GetBytesLost() != 0 || ex.Capture.GetRequestIncomplete() || ex.Capture.GetResponseIncomplete() {
				t.Errorf("%s %s: capture %v, want complete", dir, ex.Request.Method, ex.Capture)
			}
			if ex.StartTime.AsTime().Before(time.Now().Add(-time.Minute)) || ex.Duration.AsDuration() <= 0 {
				t.Errorf("%s %s: start %v duration %v", dir, ex.Request.Method, ex.StartTime.AsTime(), ex.Duration.AsDuration())
			}
		}
		if post.ConnectionId != get.ConnectionId || post.Sequence != 0 || get.Sequence != 1 {
			t.Errorf("%s: keep-alive not tracked: conn %s/%s seq %d/%d", dir, post.ConnectionId, get.ConnectionId, post.Sequence, get.Sequence)
		}
	}
}

func checkRequest(t *testing.T, r *reprisev1.HttpRequest, method, target, host string, headers []string, body string) {
	t.Helper()
	if r.Method != method || r.Target != target || r.Host != host || r.Proto != "HTTP/1.1" {
		t.Errorf("request line: %s %s %s host %s, want %s %s HTTP/1.1 host %s", r.Method, r.Target, r.Proto, r.Host, method, target, host)
	}
	if got := headerLines(r.Headers); strings.Join(got, "\n") != strings.Join(headers, "\n") {
		t.Errorf("%s headers:\n%s\nwant:\n%s", method, strings.Join(got, "\n"), strings.Join(headers, "\n"))
	}
	if string(r.Body) != body || r.BodySize != int64(len(body)) || r.BodyTruncated {
		t.Errorf("%s body %q (size %d, truncated %v), want %q", method, r.Body, r.BodySize, r.BodyTruncated, body)
	}
}

func checkResponse(t *testing.T, r *reprisev1.HttpResponse, status int32, body string) {
	t.Helper()
	if r == nil {
		t.Fatal("no response")
	}
	if r.StatusCode != status || r.Proto != "HTTP/1.1" || string(r.Body) != body || r.BodySize != int64(len(body)) {
		t.Errorf("response %s %d body %q (size %d), want %d %q", r.Proto, r.StatusCode, r.Body, r.BodySize, status, body)
	}
	want := map[string]string{"Content-Type": "application/json", "Content-Length": strconv.Itoa(len(body))}
	for _, h := range r.Headers {
		if v, ok := want[h.Name]; ok && v == h.Value {
			delete(want, h.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("response headers %v lack %v", headerLines(r.Headers), want)
	}
}

func headerLines(hs []*reprisev1.Header) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Name + ": " + h.Value
	}
	return out
}

func keys(m map[string]*reprisev1.Exchange) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
