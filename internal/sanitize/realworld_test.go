package sanitize

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reprise-dev/reprise/internal/header"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// realExchange is one response built from the real-world benign corpus
// (testdata/realworld, see its README) and how many values it holds.
type realExchange struct {
	name   string
	ex     *reprisev1.Exchange
	values int
}

// realWorldCorpus serves each file as the response a server would send:
// JSON and text with their types, compressed files as they are (no
// Content-Encoding: the bytes say gzip), and the header sets captured from
// nginx, Go net/http, Node and Python as responses of their own.
func realWorldCorpus(t *testing.T) []realExchange {
	t.Helper()
	var out []realExchange
	files, err := filepath.Glob("testdata/realworld/*/*")
	if err != nil || len(files) < 20 {
		t.Fatalf("real-world corpus: %d files, %v", len(files), err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ct := "text/plain"
		switch {
		case strings.HasSuffix(f, ".json"):
			ct = "application/json"
		case strings.HasSuffix(f, ".html"):
			ct = "text/html"
		case strings.HasSuffix(f, ".gz"):
			ct = "application/gzip"
		case strings.HasSuffix(f, "servers.txt"):
			out = append(out, headerSets(t, f, b)...)
			continue
		}
		plain, err := decode("gzip", b, 1<<26)
		if !strings.HasSuffix(f, ".gz") {
			plain, err = b, nil
		}
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, realExchange{f, resp(hdrs("Content-Type", ct, "Content-Length", fmt.Sprint(len(b))), b), countValues(plain)})
	}
	return out
}

// countValues counts the values a reader sees: JSON leaves (strings and
// numbers), else words.
func countValues(b []byte) int {
	var v any
	if json.Unmarshal(b, &v) == nil {
		return leaves(v)
	}
	return len(bytes.Fields(b))
}

func leaves(v any) int {
	switch v := v.(type) {
	case map[string]any:
		n := 0
		for _, c := range v {
			n += leaves(c)
		}
		return n
	case []any:
		n := 0
		for _, c := range v {
			n += leaves(c)
		}
		return n
	case string, float64:
		return 1
	}
	return 0
}

// headerSets reads "# name url" blocks of curl -D output.
func headerSets(t *testing.T, f string, b []byte) []realExchange {
	var out []realExchange
	var cur *realExchange
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.HasPrefix(line, "# "):
			out = append(out, realExchange{name: f + ": " + line[2:], ex: resp(nil, nil)})
			cur = &out[len(out)-1]
		case cur == nil || line == "" || strings.HasPrefix(line, "HTTP/"):
		default:
			name, value, ok := strings.Cut(line, ": ")
			if !ok {
				t.Fatalf("%s: header line %q", f, line)
			}
			cur.ex.Response.Headers = append(cur.ex.Response.Headers, &reprisev1.Header{Name: name, Value: value})
			cur.values++
		}
	}
	if gz, err := os.ReadFile(filepath.Join(filepath.Dir(f), "nginx-data.json.gz")); err == nil {
		// nginx's gzip body, with the headers it came with.
		ex := resp(hdrs("Content-Type", "application/json", "Content-Encoding", "gzip"), gz)
		out = append(out, realExchange{f + ": nginx gzip body", ex, 1})
	}
	return out
}

// TestRealWorldBenign measures the share of values of real, benign traffic
// the built-in rules change. E-mail addresses of package maintainers and
// authors are personal data the email detector exists for; they are
// counted apart. Everything else changed is a false positive.
func TestRealWorldBenign(t *testing.T) {
	s := Default()
	values, changed, emails := 0, 0, 0
	var headerNames []string
	for _, re := range realWorldCorpus(t) {
		if strings.Contains(re.name, "nginx-data.json.gz") {
			continue // served by headerSets with its headers
		}
		orig := bytes.Clone(re.ex.Response.Body)
		if !s.Sanitize(re.ex) {
			t.Fatalf("%s: dropped", re.name)
		}
		values += re.values
		for _, r := range re.ex.Redactions {
			if r.Rule == "email" {
				emails++
				continue
			}
			changed++
			t.Logf("changed: %s at %s by %s", filepath.Base(re.name), r.Location, r.Rule)
			if name, ok := strings.CutPrefix(r.Location, "response.headers."); ok && registeredField(name) {
				headerNames = append(headerNames, name)
			}
		}
		// A body nothing was redacted in is stored as received, compressed or not.
		if len(re.ex.Redactions) == 0 && !bytes.Equal(re.ex.Response.Body, orig) {
			t.Errorf("%s: body changed without a redaction", re.name)
		}
		if len(re.ex.Redactions) == 0 && header.Combined(re.ex.Response.Headers, "Content-Encoding") == "" && strings.Contains(re.name, "nginx gzip") {
			t.Errorf("%s: Content-Encoding removed from a body kept as received", re.name)
		}
	}
	rate := float64(changed) / float64(values)
	fmt.Printf("real-world benign corpus: %d values, %d changed (%.3f%%), %d e-mail addresses redacted as personal data, %d standard header names redacted\n",
		values, changed, 100*rate, emails, len(headerNames))
	if len(headerNames) > 0 {
		t.Errorf("standard header names redacted: %v", headerNames)
	}
	if rate > 0.001 {
		t.Errorf("%.3f%% of benign values changed, want at most 0.1%%", 100*rate)
	}
}
