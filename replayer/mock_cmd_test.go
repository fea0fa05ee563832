package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/internal/exchfile"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// mockFile writes a recording with one outbound call and one inbound
// request (which the mock must not serve).
func mockFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outbound.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := exchfile.NewWriter(f, exchfile.JSONL)
	for _, ex := range []*reprisev1.Exchange{
		{Id: "o1", Direction: reprisev1.Direction_DIRECTION_OUTBOUND,
			Request:  &reprisev1.HttpRequest{Method: "POST", Host: "payments.example", Target: "/v1/charges", Body: []byte(`{"amount":1,"nonce":"x"}`), Headers: []*reprisev1.Header{{Name: "Content-Type", Value: "application/json"}}},
			Response: &reprisev1.HttpResponse{StatusCode: 200, Body: []byte(`{"id":"ch_1"}`)}},
		{Id: "i1", Direction: reprisev1.Direction_DIRECTION_INBOUND,
			Request:  &reprisev1.HttpRequest{Method: "GET", Target: "/inbound"},
			Response: &reprisev1.HttpResponse{StatusCode: 200, Body: []byte(`inbound`)}},
	} {
		if err := w.Write(ex); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startMock runs "replayer mock" until the returned stop is called, which
// returns the exit code and stderr.
func startMock(t *testing.T, args ...string) (string, func() (int, string)) {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	var mu sync.Mutex
	done := make(chan int, 1)
	go func() {
		done <- mockCommand(ctx, append(args, "--listen", addr), io.Discard, lockedWriter{&mu, &stderr})
	}()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("mock exited with %d: %s", code, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if i == 250 {
			cancel()
			t.Fatal("mock did not start listening within 5s")
		}
	}
	return "http://" + addr, func() (int, string) {
		cancel()
		code := <-done
		mu.Lock()
		defer mu.Unlock()
		return code, stderr.String()
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func post(t *testing.T, u, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMockCommand(t *testing.T) {
	file := mockFile(t)
	config := filepath.Join(t.TempDir(), "replay.yaml")
	os.WriteFile(config, []byte("targets: {}\nmock:\n  strict: true\n  ignore: [$.nonce]\n"), 0o600)

	t.Run("all calls matched: exit 0", func(t *testing.T) {
		base, stop := startMock(t, "--file", file, "--config", config)
		if code, body := post(t, base+"/v1/charges", `{"nonce":"other","amount":1}`); code != 200 || body != `{"id":"ch_1"}` {
			t.Errorf("recorded call: %d %s", code, body)
		}
		if code, out := stop(); code != exitOK || !strings.Contains(out, "1 matched, 0 unmatched") {
			t.Errorf("exit %d, stderr:\n%s", code, out)
		}
	})
	t.Run("strict with an unmatched call: exit 1", func(t *testing.T) {
		base, stop := startMock(t, "--file", file, "--config", config)
		resp, err := http.Get(base + "/inbound")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("inbound exchange served by the mock: %d", resp.StatusCode)
		}
		code, out := stop()
		if code != exitFailed || !strings.Contains(out, "unmatched call") || !strings.Contains(out, "nearest=o1") {
			t.Errorf("exit %d, stderr:\n%s", code, out)
		}
		if strings.Contains(out, "ch_1") {
			t.Error("a recorded body was logged")
		}
	})
	t.Run("errors: exit 2", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		os.WriteFile(bad, []byte("mock:\n  strikt: true\n"), 0o600)
		for _, args := range [][]string{
			{"--file", file, "--collector", "127.0.0.1:1"},
			{"--file", file, "--config", bad},
			{"--file", file, "--direction", "inbound"},
			{"--file", file, "--path-prefix", "/nothing"},
			{"--file", filepath.Join(t.TempDir(), "missing.jsonl")},
		} {
			var stderr bytes.Buffer
			if code := mockCommand(context.Background(), append(args, "--listen", "127.0.0.1:0"), io.Discard, &stderr); code != exitError {
				t.Errorf("%v: exit %d, want %d; %s", args, code, exitError, stderr.String())
			}
		}
	})
}
