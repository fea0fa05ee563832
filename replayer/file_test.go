package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/internal/exchfile"
	"github.com/reprise-dev/reprise/replayer/replay"
)

// shop is a service whose answers are never the same twice: a login sets a
// random session cookie, orders get random ids and the time of creation.
// Orders need the session and the shop's bearer token. v2 changes the
// item's spelling.
type shop struct {
	token    string
	v2       bool
	mu       sync.Mutex
	sessions map[string]bool
	orders   map[string]string
	seen     []http.Header
}

func newShop(token string, v2 bool) *shop {
	return &shop{token: token, v2: v2, sessions: map[string]bool{}, orders: map[string]string{}}
}

func (s *shop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, r.Header.Clone())
	w.Header().Set("Content-Type", "application/json")
	if r.Method == "POST" && r.URL.Path == "/login" {
		sess := rand.Text()
		s.sessions[sess] = true
		http.SetCookie(w, &http.Cookie{Name: "session", Value: sess, Path: "/"})
		io.WriteString(w, `{"user":"ann"}`)
		return
	}
	if c, err := r.Cookie("session"); err != nil || !s.sessions[c.Value] || r.Header.Get("Authorization") != "Bearer "+s.token {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"not logged in"}`)
		return
	}
	switch {
	case r.Method == "POST" && r.URL.Path == "/orders":
		var in struct{ Item string }
		json.NewDecoder(r.Body).Decode(&in)
		id := "ord-" + rand.Text()[:8]
		s.orders[id] = in.Item
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"id": id, "item": in.Item, "created_at": time.Now().Format(time.RFC3339Nano)})
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/orders/"):
		id := strings.TrimPrefix(r.URL.Path, "/orders/")
		item, ok := s.orders[id]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"no such order"}`)
			return
		}
		if s.v2 {
			item = strings.ToUpper(item)
		}
		json.NewEncoder(w).Encode(map[string]string{"id": id, "item": item})
	default:
		http.NotFound(w, r)
	}
}

// recordShop drives a session at a shop and writes what was recorded to a
// JSONL file, as `collector export` would.
func recordShop(t *testing.T) string {
	t.Helper()
	rc := &recorder{next: newShop("prod-token", false)}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	do := func(method, path, body, cookie string) *http.Response {
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer prod-token")
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	login := do("POST", "/login", `{"user":"ann"}`, "")
	cookie := "session=" + login.Cookies()[0].Value
	var order struct{ ID string }
	created := do("POST", "/orders", `{"item":"beans"}`, cookie)
	json.NewDecoder(created.Body).Decode(&order)
	do("GET", "/orders/"+order.ID, "", cookie)

	path := filepath.Join(t.TempDir(), "recording.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := exchfile.NewWriter(f, exchfile.JSONL)
	for _, ex := range rc.exchanges {
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

// A recording kept as a file replays against a fresh shop that hands out
// other session cookies and order ids and wants another token: the auth
// transform and learned values make the session work, under every load
// model; without learning the order cannot be read back.
func TestReplayFileWithTransforms(t *testing.T) {
	recording := recordShop(t)
	config := func(t *testing.T, learn bool) string {
		t.Helper()
		yaml := `safety:
  routes:
    - {method: POST, path: /login}
    - {method: POST, path: /orders}
transforms:
  auth: {prefix: "Bearer ", token: test-token}
  set_headers: {X-Env: replay}
compare:
  ignore: [$.id, $.created_at]
`
		if learn {
			yaml = strings.Replace(yaml, "  set_headers: {X-Env: replay}\n", "  set_headers: {X-Env: replay}\n  learn: {}\n", 1)
		}
		path := filepath.Join(t.TempDir(), "replay.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	type exchange struct {
		Method         string `json:"method"`
		Target         string `json:"target"`
		ReplayedStatus int    `json:"replayed_status"`
		Passed         bool   `json:"passed"`
	}
	tests := []struct {
		name      string
		v2, learn bool
		load      []string
		wantCode  int
		wantRead  int // replayed status of GET /orders/{id}
	}{
		{name: "as fast as possible", learn: true, load: []string{"--workers", "4"}, wantRead: 200},
		{name: "as recorded", learn: true, load: []string{"--speed", "100", "--max-gap", "10ms"}, wantRead: 200},
		{name: "constant rate", learn: true, load: []string{"--rate", "200/s"}, wantRead: 200},
		{name: "ramp", learn: true, load: []string{"--rate-from", "10", "--rate-to", "500", "--ramp", "100ms"}, wantRead: 200},
		{name: "v2 differs", v2: true, learn: true, wantCode: 1, wantRead: 200},
		{name: "without learning", wantCode: 1, wantRead: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := newShop("test-token", tt.v2)
			srv := httptest.NewServer(target)
			t.Cleanup(srv.Close)
			reportPath := filepath.Join(t.TempDir(), "report.json")
			args := append([]string{"run", "--file", recording, "--target", srv.URL, "--config", config(t, tt.learn),
				"--run-id", "run-file", "--report-json", reportPath, "--progress", "0"}, tt.load...)
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), args, &stdout, &stderr); code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout.String(), stderr.String())
			}
			raw, err := os.ReadFile(reportPath)
			if err != nil {
				t.Fatal(err)
			}
			var rep struct{ Exchanges []exchange }
			if err := json.Unmarshal(raw, &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Exchanges) != 3 {
				t.Fatalf("report has %d exchanges, want 3: %s", len(rep.Exchanges), raw)
			}
			for _, e := range rep.Exchanges {
				if e.Method == "GET" && (e.ReplayedStatus != tt.wantRead || e.Passed != (tt.wantCode == 0)) {
					t.Errorf("GET %s replayed %d passed %v, want %d", e.Target, e.ReplayedStatus, e.Passed, tt.wantRead)
				}
			}
			target.mu.Lock()
			defer target.mu.Unlock()
			for _, h := range target.seen {
				if h.Get(replay.RunHeader) != "run-file" || h.Get("X-Env") != "replay" || h.Get("Authorization") != "Bearer test-token" {
					t.Errorf("target got headers %v", h)
				}
			}
		})
	}
}

// Writes are not replayed unless asked: the POSTs of the recording are
// skipped and counted, and the GET alone fails without its session.
func TestReplayFileSkipsWritesByDefault(t *testing.T) {
	recording := recordShop(t)
	target := newShop("prod-token", false)
	srv := httptest.NewServer(target)
	t.Cleanup(srv.Close)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"run", "--file", recording, "--target", srv.URL, "--progress", "0"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stdout.String(), "2 skipped") {
		t.Errorf("exit %d, stdout %q; want 1 and 2 skipped", code, stdout.String())
	}
	target.mu.Lock()
	defer target.mu.Unlock()
	if len(target.seen) != 1 {
		t.Errorf("target got %d requests, want only the GET", len(target.seen))
	}
}
