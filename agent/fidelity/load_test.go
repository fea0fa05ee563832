package fidelity

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/agent/capture"
	"github.com/reprise-dev/reprise/agent/httpstream"
	"github.com/reprise-dev/reprise/agent/pipeline"
	"github.com/reprise-dev/reprise/internal/privileged"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// vegeta is the load generator, a tool of go.mod: `go tool vegeta`.
func vegeta(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", append([]string{"tool", "vegeta"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("vegeta %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// 2,000 requests a second for 5 s on keep-alive connections: every
// request the server handled is one whole exchange, present exactly once,
// and nothing was dropped on the way.
func TestVegetaEveryExchangeOnce(t *testing.T) {
	need(t, "go")
	const rate, seconds = 2000, 5
	const total = rate * seconds
	port := freePort(t, "tcp4", "127.0.0.1:0")
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	h := capturePorts(t, httpstream.Config{}, port)
	start(t, base+"/count", child("goserver 127.0.0.1:"+strconv.Itoa(port)))
	before := settledCount(t, base)

	// vegeta takes the targets in turn: one attack of total requests sends
	// each of them once.
	dir := t.TempDir()
	var targets strings.Builder
	for i := range total {
		fmt.Fprintf(&targets, "GET %s/small?n=%d\n", base, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "targets"), []byte(targets.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	results := filepath.Join(dir, "results")
	vegeta(t, "attack", "-rate", strconv.Itoa(rate), "-duration", strconv.Itoa(seconds)+"s", "-keepalive=true",
		"-targets", filepath.Join(dir, "targets"), "-output", results)
	var report struct {
		Requests    int            `json:"requests"`
		StatusCodes map[string]int `json:"status_codes"`
		Errors      []string       `json:"errors"`
	}
	if err := json.Unmarshal(vegeta(t, "report", "-type", "json", results), &report); err != nil {
		t.Fatal(err)
	}
	// vegeta's last tick is due exactly at the end of the duration, and it
	// stops once the duration has passed: whenever it is late, it sends
	// 9,999 requests, not 10,000 (its report says so), and a loaded machine
	// sends fewer still. What counts is that every request sent is captured
	// once, so the count to compare with is vegeta's own.
	sent := report.Requests
	t.Logf("vegeta sent %d requests in %d s (%.0f/s asked)", sent, seconds, float64(rate))
	if sent < total/10 || report.StatusCodes["200"] != sent {
		t.Fatalf("vegeta sent %d requests, %v answered, errors %v; want about %d answered 200", sent, report.StatusCodes, report.Errors, total)
	}
	// Stopped as soon as the load ends, as an operator may stop the agent:
	// what the kernel recorded is still emitted.
	h.stop()
	if handled := settledCount(t, base) - before; handled != sent {
		t.Fatalf("the server handled %d requests, vegeta saw %d answered", handled, sent)
	}

	got := h.inbound("/small?n=", sent)
	seen := make(map[string]int, sent)
	for _, x := range got {
		seen[x.Request.Target]++
		if seen[x.Request.Target] == 1 {
			want{method: "GET", target: x.Request.Target, status: 200, respBody: smallBody}.check(t, x)
		}
	}
	// vegeta takes the targets in order.
	for i := range sent {
		if n := seen["/small?n="+strconv.Itoa(i)]; n != 1 {
			t.Errorf("/small?n=%d captured %d times", i, n)
		}
	}
	if len(got) != sent {
		t.Errorf("%d exchanges for %d requests", len(got), sent)
	}
	h.checkNothingDropped()
}

// checkNothingDropped fails if the capture or the tracker lost, cut or
// could not pair anything; it stops the capture.
func (h *harness) checkNothingDropped() {
	h.t.Helper()
	h.stop()
	ks, err := h.kernel, h.kernelErr
	if err != nil {
		h.t.Fatal(err)
	}
	if ks.RingbufFull != 0 || ks.TruncatedBytes != 0 || ks.CopyFailed != 0 || ks.ConnMapFull != 0 || ks.Malformed != 0 {
		h.t.Errorf("kernel drops: %+v", ks)
	}
	s := h.pipe.Stats() // published by the pipeline's last flush
	if s.Exchanges != uint64(h.count()) || s.Incomplete != 0 || s.BytesLost != 0 || s.ParseErrors != 0 || s.Resyncs != 0 || s.DroppedConns != 0 ||
		s.UnmatchedResponses != 0 || s.UnansweredRequests != 0 || s.Overflows != 0 || s.Filtered != 0 {
		h.t.Errorf("tracker drops: %+v", s)
	}
}

// The agent stopped while the ring still holds events (its reader behind,
// as under load): closing the capture lets the reader take them first, so
// the exchanges they complete are emitted, not lost uncounted.
func TestStopEmitsWhatTheRingHolds(t *testing.T) {
	need(t, "curl")
	privileged.RequireRoot(t)
	port := freePort(t, "tcp4", "127.0.0.1:0")
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	start(t, base+"/count", child("goserver 127.0.0.1:"+strconv.Itoa(port)))
	capt, err := capture.Open(capture.Config{Ports: []uint16{uint16(port)}})
	privileged.CheckOpen(t, err)
	defer capt.Close()

	// Nothing reads the ring while curl runs.
	const n = 300
	args := []string{"-sS", "-o", "/dev/null"}
	for i := range n {
		args = append(args, base+"/small?stop="+strconv.Itoa(i))
	}
	run(t, "curl", args...)
	// Both sides, curl's and the server's, are captured.
	got := map[reprisev1.Direction]int{}
	pipe := pipeline.New(httpstream.New(httpstream.Config{}, func(x *reprisev1.Exchange) {
		if strings.HasPrefix(x.Request.Target, "/small?stop=") && x.Response != nil {
			got[x.Direction]++
		}
	}))
	done := make(chan error, 1)
	go func() { done <- pipe.Run(capt, 100*time.Millisecond) }()
	if err := capt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got[inbound] != n || got[outbound] != n {
		t.Errorf("%v of %d exchanges each way emitted after the capture was closed; tracker %+v", got, n, pipe.Stats())
	}
}
