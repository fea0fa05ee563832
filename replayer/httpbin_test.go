package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mccutchen/go-httpbin/v2/httpbin"
)

// service is the service under test: go-httpbin, an HTTP inspection
// service nobody here wrote, that reflects what it is sent, plus one
// endpoint that stamps a creation time in Unix seconds. v2 has exactly
// four real regressions: three texts changed and the creation time an
// hour late.
func service(v2 bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /widgets", func(w http.ResponseWriter, r *http.Request) {
		created := time.Now().Unix()
		if v2 {
			created += 3600
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"name":"gear","created":%d}`, rand.Text(), created)
	})
	// /env answers with this variable, in which the sanitizer finds an
	// AWS key: the recorded answer holds a redacted span.
	mux.Handle("/", httpbin.New(httpbin.WithEnv(map[string]string{"HTTPBIN_UPLOAD": awsText})))
	if !v2 {
		return mux
	}
	changes := map[string][2]string{
		"/json": {"Sample Slide Show", "Sample Slideshow"},
		"/xml":  {"Sample Slide Show", "Sample Slideshow"},
		"/deny": {"YOU SHOULDN'T BE HERE", "GO AWAY"},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := changes[r.URL.Path]
		if !ok {
			mux.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		w.Write(bytes.ReplaceAll(rec.Body.Bytes(), []byte(c[0]), []byte(c[1])))
	})
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// client is one real HTTP client run against the recorder.
type client struct {
	name string
	args func(base string) []string
}

// The text the sanitizer finds an AWS key in, returned by /env.
const awsText = "upload to s3 AKIAZ7QW3RT5YVX2LPMN~report.txt"

// clients drive the service with curl, wget, Python requests (one
// keep-alive session) and Node's fetch.
var clients = []client{
	{"curl", func(b string) []string {
		return []string{"bash", "-c", `set -e
for p in /get?a=1 /headers /absolute-redirect/2 /json /status/418 /dump/request /widgets /env '/bytes/200000?seed=7'; do
  curl -sS -o /dev/null "$0$p"
done
curl -sS -o /dev/null -H 'Accept-Encoding: gzip' "$0/gzip"
curl -sS -o /dev/null -u user:passwd "$0/basic-auth/user/passwd"`, b}
	}},
	{"wget", func(b string) []string {
		return []string{"bash", "-c", `set -e
for p in /html /xml /anything/wget?x=1 /user-agent; do wget -q -O /dev/null "$0$p"; done
wget -q -O /dev/null --header 'Cookie: session=abc123' "$0/cookies"`, b}
	}},
	{"python-requests", func(b string) []string {
		return []string{"/usr/bin/python3", "-c", `import sys, requests
s = requests.Session()
b = sys.argv[1]
for p in ["/uuid", "/ip", "/response-headers?X-Custom=a", "/stream/3", "/links/5/2", "/etag/abc"]:
    s.get(b + p).raise_for_status()
s.post(b + "/post", json={"item": "book", "qty": 2}).raise_for_status()
`, b}
	}},
	{"node-fetch", func(b string) []string {
		return []string{"node", "-e", `const b = process.argv[1];
(async () => {
  for (const p of ["/deflate", "/encoding/utf8", "/range/2048", "/cache", "/image/png", "/robots.txt", "/deny"]) {
    const r = await fetch(b + p); await r.arrayBuffer();
    if (r.status !== 200 && p !== "/deny") throw new Error(p + " " + r.status);
  }
  const r = await fetch(b + "/put", {method: "PUT", body: "plain text", headers: {"content-type": "text/plain"}});
  await r.text();
})().catch(e => { console.error(e); process.exit(1); });`, b}
	}},
}

// recordService drives v1 of the service with every client through the
// recorder (body cap 64 KiB, so /bytes/200000 is recorded cut) and returns
// the recording file and how many exchanges it holds.
func recordService(t *testing.T) (string, int) {
	t.Helper()
	w := newWire(t, strings.TrimPrefix(serve(t, service(false)), "http://"), 64<<10)
	for _, c := range clients {
		args := c.args(w.URL())
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, out)
		}
	}
	path := w.save(t)
	return path, len(w.exchanges)
}

// reportOf runs the replayer and returns its exit code and JSON report.
func reportOf(t *testing.T, args ...string) (int, jsonReport, string) {
	t.Helper()
	reportPath := filepath.Join(t.TempDir(), "report.json")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append([]string{"run", "--report-json", reportPath, "--progress", "0"}, args...), &stdout, &stderr)
	var rep jsonReport
	raw, err := os.ReadFile(reportPath)
	if err != nil {
		t.Fatalf("exit %d, no report: %v\nstdout:\n%s\nstderr:\n%s", code, err, stdout.String(), stderr.String())
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	return code, rep, stdout.String() + stderr.String()
}

type jsonReport struct {
	Total, Passed, Failed, Errors, Skipped, Partial int
	NeedsCredentials                                int `json:"needs_credentials"`
	Exchanges                                       []struct {
		Method, Target, Endpoint, Error, Skipped, Hint, Partial string
		NeedsCredentials                                        string `json:"needs_credentials"`
		Passed                                                  bool
		Differences                                             []struct{ Path, Kind, Recorded, Replayed string }
	}
}

func (r jsonReport) failing() []string {
	var out []string
	for _, e := range r.Exchanges {
		if !e.Passed {
			out = append(out, e.Method+" "+e.Target)
		}
	}
	return out
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "replay.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The basic-auth credential the sanitizer removed from the recording.
const authConfig = `safety: {allow_writes: true}
transforms:
  auth: {prefix: "Basic ", token: dXNlcjpwYXNzd2Q=}
`

// A recording of go-httpbin driven by curl, wget, Python requests and
// Node's fetch, replayed with --learn-noise against a fresh instance of
// the same build, is clean; so is the next run with the learned noise
// file. Then v2, with exactly four real regressions, is flagged exactly
// four times, and its `created` in Unix seconds, five seconds after the
// recording's, is not one of them.
func TestReplayRealService(t *testing.T) {
	recording, n := recordService(t)
	if n < 30 {
		t.Fatalf("recorded %d exchanges, want every client's", n)
	}
	recordedAt := time.Now()
	cfg := writeConfig(t, authConfig)
	noise := filepath.Join(t.TempDir(), "noise.yaml")

	code, rep, out := reportOf(t, "--file", recording, "--config", cfg, "--target", serve(t, service(false)),
		"--learn-noise", "--reference", serve(t, service(false)), "--noise-file", noise)
	if code != 0 || rep.Passed != n || rep.Total != n {
		t.Fatalf("same build with --learn-noise: exit %d, %d of %d passed, failing %q\n%s", code, rep.Passed, n, rep.failing(), out)
	}
	if rep.Partial != 1 {
		t.Errorf("%d exchanges compared in part, want the cut /bytes/200000", rep.Partial)
	}
	learned, err := os.ReadFile(noise)
	if err != nil || !strings.Contains(string(learned), "GET /uuid:\n    - $.uuid") || !strings.Contains(string(learned), "GET /widgets:\n    - $.id") {
		t.Errorf("learned noise %s (%v), want $.uuid and the widget's $.id, found with one reference", learned, err)
	}
	if strings.Contains(string(learned), "created") || strings.Contains(string(learned), "X-Reprise-Replay") || strings.Contains(string(learned), "Host") {
		t.Errorf("learned noise holds what the replayer accounts for:\n%s", learned)
	}

	code, rep, out = reportOf(t, "--file", recording, "--config", cfg, "--target", serve(t, service(false)), "--noise-file", noise)
	if code != 0 || rep.Passed != n {
		t.Fatalf("same build with the noise file: exit %d, %d of %d passed, failing %q\n%s", code, rep.Passed, n, rep.failing(), out)
	}

	// The widget was created at least five seconds before v2 answers.
	time.Sleep(time.Until(recordedAt.Add(5 * time.Second)))
	code, rep, out = reportOf(t, "--file", recording, "--config", cfg, "--target", serve(t, service(true)),
		"--learn-noise", "--reference", serve(t, service(false)), "--noise-file", filepath.Join(t.TempDir(), "noise.yaml"))
	want := []string{"GET /json", "GET /widgets", "GET /deny", "GET /xml"}
	got := rep.failing()
	slices.Sort(want)
	slices.Sort(got)
	if code != 1 || !slices.Equal(got, want) || rep.Failed != 4 {
		t.Errorf("v1 → v2: exit %d, failing %q, want exactly %q\n%s", code, got, want, out)
	}
	for _, e := range rep.Exchanges {
		if e.Target == "/widgets" && (len(e.Differences) != 1 || e.Differences[0].Path != "$.created") {
			t.Errorf("widget differences %+v, want only $.created (an hour late)", e.Differences)
		}
	}
}

// Each cause of a false verdict found on go-httpbin (issue 13), recorded
// from a real client and replayed against a fresh instance of the same
// build: the replayer accounts for it.
func TestReplayAccountsForCauses(t *testing.T) {
	curl := func(args string) []string { return []string{"bash", "-c", "curl -sS -o /dev/null " + args, "base"} }
	tests := []struct {
		name    string
		client  []string // $0 is the recorder's URL
		bodyCap int
		config  string
		args    []string
		check   func(t *testing.T, code int, rep jsonReport, out, recording string)
	}{
		{
			name:   "1 the replayer's own header reflected",
			client: curl(`"$0/headers" "$0/anything"`),
			check:  passed(2),
		},
		{
			name:   "2 host, URL and Location reflected",
			client: curl(`"$0/anything/a?b=1" "$0/absolute-redirect/1" "$0/dump/request"`),
			config: "compare: {headers: [Content-Type, Location]}\n",
			check:  passed(3),
		},
		{
			name:   "3 Connection: keep-alive sent as recorded",
			client: []string{"/usr/bin/python3", "-c", "import sys, requests\ns = requests.Session()\nfor p in ['/headers', '/dump/request']: s.get(sys.argv[1] + p).raise_for_status()"},
			check:  passed(2),
		},
		{
			name:   "4 a redacted span matches any text",
			client: curl(`"$0/env"`),
			check: func(t *testing.T, code int, rep jsonReport, out, recording string) {
				passed(1)(t, code, rep, out, recording)
				raw, _ := os.ReadFile(recording)
				// protojson spaces its output at random.
				if !strings.Contains(strings.ReplaceAll(string(raw), " ", ""), `{"location":"response.body.env.HTTPBIN_UPLOAD","rule":"aws","action":"redact"}`) {
					t.Errorf("the recording holds no redacted span: %s", raw)
				}
			},
		},
		{
			name:   "4 a value redacted in the URL, sent as recorded and reflected",
			client: curl(`"$0/anything/AKIAZ7QW3RT5YVX2LPMN~report.txt"`),
			check: func(t *testing.T, code int, rep jsonReport, out, recording string) {
				passed(1)(t, code, rep, out, recording)
				if !strings.Contains(rep.Exchanges[0].Target, "%5BREDACTED%5D~report.txt") {
					t.Errorf("target %q: the sanitizer did not redact the key in the URL", rep.Exchanges[0].Target)
				}
			},
		},
		{
			name:    "5 a truncated recording compares its recorded head",
			client:  curl(`"$0/bytes/200000?seed=7"`),
			bodyCap: 64 << 10,
			check: func(t *testing.T, code int, rep jsonReport, out, recording string) {
				passed(1)(t, code, rep, out, recording)
				want := "recorded response incomplete: compared status, headers and the first 65536 of 200000 body bytes"
				if rep.Partial != 1 || rep.Exchanges[0].Partial != want || !strings.Contains(out, want) {
					t.Errorf("partial %d %q, want %q in the report and the summary", rep.Partial, rep.Exchanges[0].Partial, want)
				}
			},
		},
		{
			name:   "6 a credential redacted at record time needs credentials",
			client: curl(`-u user:passwd "$0/basic-auth/user/passwd" "$0/get"`),
			check: func(t *testing.T, code int, rep jsonReport, out, _ string) {
				e := rep.Exchanges[0]
				if code != 1 || rep.NeedsCredentials != 1 || rep.Failed != 0 || rep.Passed != 1 ||
					e.NeedsCredentials != "request.headers.Authorization" || !strings.Contains(e.Hint, "transforms.auth {header: Authorization") {
					t.Errorf("exit %d, report %+v; want exit 1 and one needing credentials with a hint\n%s", code, rep, out)
				}
				if !strings.Contains(out, "CREDS GET /basic-auth/user/passwd") || !strings.Contains(out, "1 need credentials") {
					t.Errorf("summary lacks the verdict:\n%s", out)
				}
			},
		},
		{
			name:   "6 the auth transform gives it one",
			client: curl(`-u user:passwd "$0/basic-auth/user/passwd" "$0/headers"`),
			config: authConfig,
			check:  passed(2),
		},
		{
			name:   "7 noise learned with one reference, written to the default file",
			client: curl(`"$0/uuid"`),
			args:   []string{"--learn-noise", "--reference", "REFERENCE"},
			check: func(t *testing.T, code int, rep jsonReport, out, _ string) {
				passed(1)(t, code, rep, out, "")
				abs, _ := filepath.Abs(defaultNoiseFile)
				learned, err := os.ReadFile(abs)
				if err != nil || !strings.Contains(string(learned), "$.uuid") || !strings.Contains(out, "learned noise written to "+abs) {
					t.Errorf("noise file %s: %q (%v); output:\n%s", abs, learned, err, out)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir()) // the default noise file goes here
			w := newWire(t, strings.TrimPrefix(serve(t, service(false)), "http://"), tt.bodyCap)
			args := slices.Clone(tt.client)
			if args[0] == "/usr/bin/python3" {
				args = append(args, w.URL())
			} else {
				args[len(args)-1] = w.URL()
			}
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", args, err, out)
			}
			recording := w.save(t)
			runArgs := []string{"--file", recording, "--target", serve(t, service(false)), "--config", writeConfig(t, tt.config)}
			for _, a := range tt.args {
				if a == "REFERENCE" {
					a = serve(t, service(false))
				}
				runArgs = append(runArgs, a)
			}
			code, rep, out := reportOf(t, runArgs...)
			tt.check(t, code, rep, out, recording)
		})
	}
}

func passed(n int) func(t *testing.T, code int, rep jsonReport, out, recording string) {
	return func(t *testing.T, code int, rep jsonReport, out, _ string) {
		t.Helper()
		if code != 0 || rep.Passed != n || rep.Total != n {
			t.Errorf("exit %d, %d of %d passed (want %d), failing %q\n%s", code, rep.Passed, rep.Total, n, rep.failing(), out)
		}
	}
}
