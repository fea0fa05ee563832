package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/internal/grpcclient"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// collectorMemLimit is the peak RSS the collector must stay under while
// hostile clients send bombs, many streams and big pages.
const collectorMemLimit = 600 << 20

// procStatus reads a "kB" field of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in /proc/%d/status", field, pid)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n << 10
}

// goroutines reads go_goroutines from the collector's /metrics.
func goroutines(t *testing.T, httpAddr string) int {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^go_goroutines (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no go_goroutines in /metrics")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// sendBatches sends the batches on one ingest stream and returns their acks.
func sendBatches(ctx context.Context, ic reprisev1.IngestServiceClient, batches ...*reprisev1.IngestRequest) ([]*reprisev1.IngestResponse, error) {
	s, err := ic.Ingest(ctx)
	if err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	go func() {
		for _, b := range batches {
			if err := s.Send(b); err != nil {
				errc <- err
				return
			}
		}
		errc <- s.CloseSend()
	}()
	var acks []*reprisev1.IngestResponse
	for range batches {
		ack, err := s.Recv()
		if err != nil {
			return acks, err
		}
		acks = append(acks, ack)
	}
	if err := <-errc; err != nil && !errors.Is(err, io.EOF) {
		return acks, err
	}
	return acks, nil
}

func bigExchange(id string, i int, body []byte, headers ...*reprisev1.Header) *reprisev1.Exchange {
	return &reprisev1.Exchange{
		Id:        id,
		StartTime: timestamppb.New(time.Now().Add(time.Duration(i) * time.Microsecond)),
		Service:   "orders",
		Request:   &reprisev1.HttpRequest{Method: "GET", Target: "/big", Host: "orders"},
		Response:  &reprisev1.HttpResponse{StatusCode: 200, Headers: headers, Body: body, BodySize: int64(len(body))},
	}
}

// TestHostileClientsBoundedMemory runs a real "collector serve" and sends
// what an attacker would: a batch of compression bombs (40 bodies of 526
// bytes that decode to 16 MiB each, once 1.6 GB), 8 concurrent streams of
// 28 × 1 MiB (once 2.7 GB), a 1000-row page over those rows (once an 805 MB
// reply) and 20,000 idle streams on one connection (once 40,000
// goroutines). The collector's peak RSS, from /proc, must stay under
// collectorMemLimit, and everything acked must be readable back.
func TestHostileClientsBoundedMemory(t *testing.T) {
	bin := buildCollector(t)
	cmd, addr, httpAddr := startServe(t, bin, filepath.Join(t.TempDir(), "reprise.db"))
	pid := cmd.Process.Pid
	conn, err := (&grpcclient.Flags{}).Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ic, qc := reprisev1.NewIngestServiceClient(conn), reprisev1.NewQueryServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	t.Logf("collector VmRSS at start: %d MiB", procStatus(t, pid, "VmRSS")>>20)

	t.Run("bombs", func(t *testing.T) {
		var bomb bytes.Buffer
		zw, _ := zstd.NewWriter(&bomb, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
		zw.Write(bytes.Repeat([]byte("A"), 16<<20-1<<10))
		zw.Close()
		enc := &reprisev1.Header{Name: "Content-Encoding", Value: "zstd"}
		req := &reprisev1.IngestRequest{BatchId: "bombs", AgentId: "attacker"}
		for i := range 40 {
			req.Exchanges = append(req.Exchanges, bigExchange(fmt.Sprintf("bomb-%02d", i), i, bomb.Bytes(), enc))
		}
		t.Logf("bomb batch: %d exchanges, %d bytes of %d-byte bodies", len(req.Exchanges), req.SizeVT(), bomb.Len())
		acks, err := sendBatches(ctx, ic, req)
		if err != nil || len(acks) != 1 || acks[0].GetStored() != 40 {
			t.Fatalf("bomb batch: acks %v, %v; want all 40 stored", acks, err)
		}
		// Every exchange is stored: as received (nothing in a bomb is
		// redacted, so its decoded 16 MiB are never kept), or, past the
		// batch's decode room, without its body and with a redaction.
		for i := range 40 {
			resp, err := qc.GetExchange(ctx, &reprisev1.GetExchangeRequest{Id: fmt.Sprintf("bomb-%02d", i)})
			if err != nil {
				t.Fatal(err)
			}
			ex := resp.GetExchange()
			removed := false
			for _, r := range ex.GetRedactions() {
				removed = removed || r.GetRule() == "ingest-batch-memory" && r.GetLocation() == "response.body"
			}
			if got := len(ex.GetResponse().GetBody()); !(removed && got == 0 || !removed && got == bomb.Len()) {
				t.Errorf("bomb %d stored with a %d-byte body (removed: %v); want the %d bytes received or none", i, got, removed, bomb.Len())
			}
		}
	})

	body := make([]byte, 1<<20)
	for i := range body {
		body[i] = byte(rand.Uint32())
	}
	t.Logf("collector VmHWM after the bombs: %d MiB", procStatus(t, pid, "VmHWM")>>20)
	t.Run("concurrent big streams", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for s := range 8 {
			wg.Go(func() {
				var batches []*reprisev1.IngestRequest
				for b := range 1 {
					req := &reprisev1.IngestRequest{BatchId: fmt.Sprintf("big-%d", b), AgentId: fmt.Sprintf("node-%d", s)}
					for i := range 28 {
						req.Exchanges = append(req.Exchanges, bigExchange(fmt.Sprintf("big-%d-%d-%02d", s, b, i), i, body))
					}
					batches = append(batches, req)
				}
				acks, err := sendBatches(ctx, ic, batches...)
				if err == nil && (len(acks) != 1 || acks[0].GetStored() != 28) {
					err = fmt.Errorf("acks %v", acks)
				}
				errs[s] = err
			})
		}
		wg.Wait()
		for s, err := range errs {
			if err != nil {
				t.Errorf("stream %d: %v", s, err)
			}
		}
	})

	t.Logf("collector VmHWM after the big streams: %d MiB", procStatus(t, pid, "VmHWM")>>20)
	t.Run("big page", func(t *testing.T) {
		resp, err := qc.ListExchanges(ctx, &reprisev1.ListExchangesRequest{PageSize: 1000, Filter: &reprisev1.ExchangeFilter{PathPrefix: "/big"}})
		if err != nil {
			t.Fatalf("ListExchanges of 1000 big rows: %v", err)
		}
		if n := len(resp.GetExchanges()); n == 0 || n >= 8*28 || resp.GetNextPageToken() == "" {
			t.Errorf("first page: %d exchanges, next %q; want a page cut short by bytes, with a token", n, resp.GetNextPageToken())
		}
		// The CLI streams every one of them within the message limit.
		var out, errOut bytes.Buffer
		if code := run(ctx, []string{"query", "--addr", addr, "--count"}, &out, &errOut); code != 0 {
			t.Fatalf("collector query --count: exit %d: %s", code, errOut.String())
		}
		if got := strings.TrimSpace(out.String()); got != strconv.Itoa(40+8*28) {
			t.Errorf("stored %s exchanges, want %d", got, 40+8*28)
		}
	})

	t.Run("idle streams on one connection", func(t *testing.T) {
		before := goroutines(t, httpAddr)
		sctx, stop := context.WithTimeout(ctx, 5*time.Second)
		defer stop()
		var wg sync.WaitGroup
		for range 20_000 {
			wg.Go(func() { ic.Ingest(sctx) })
		}
		time.Sleep(3 * time.Second)
		during := goroutines(t, httpAddr)
		stop()
		wg.Wait()
		if during-before > 1000 {
			t.Errorf("20,000 idle streams on one connection: goroutines %d → %d; want the connection's stream limit to hold them off", before, during)
		}
		t.Logf("goroutines with 20,000 idle streams asked for: %d → %d", before, during)
	})

	hwm := procStatus(t, pid, "VmHWM")
	t.Logf("collector peak RSS (VmHWM): %d MiB", hwm>>20)
	if hwm > collectorMemLimit {
		t.Errorf("collector peak RSS %d MiB, want under %d MiB", hwm>>20, collectorMemLimit>>20)
	}
}

// TestIdleIngestStreamClosed checks that a stream that sends nothing is
// closed after --ingest-idle with Unavailable, so an agent reconnects.
func TestIdleIngestStreamClosed(t *testing.T) {
	bin := buildCollector(t)
	_, addr := startBinary(t, bin, filepath.Join(t.TempDir(), "reprise.db"), "--ingest-idle", "1s")
	conn, err := (&grpcclient.Flags{}).Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := reprisev1.NewIngestServiceClient(conn).Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Recv()
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "idle") {
		t.Fatalf("idle stream ended with %v after %s; want Unavailable saying idle", err, time.Since(start))
	}
}

// TestServeOpenOffLoopback checks that serve refuses to accept calls from
// anyone on a non-loopback address unless told, and says it is open.
func TestServeOpenOffLoopback(t *testing.T) {
	bin := buildCollector(t)
	store := filepath.Join(t.TempDir(), "reprise.db")
	out, err := exec.Command(bin, "serve", "--grpc-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0", "--store", store).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "--allow-unauthenticated") {
		t.Fatalf("open serve on 0.0.0.0: %v\n%s\nwant exit 2 naming --allow-unauthenticated", err, out)
	}
	// With a query token, ingest is still open.
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("s3cret"), 0o600)
	out, _ = exec.Command(bin, "serve", "--grpc-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0", "--store", store, "--query-token-file", tok).CombinedOutput()
	if !strings.Contains(string(out), "IngestService would accept calls from anyone") {
		t.Errorf("serve with only a query token on 0.0.0.0: %s\nwant a refusal naming IngestService", out)
	}
	// Told explicitly, it serves.
	startBinary(t, bin, store, "--grpc-listen", "0.0.0.0:0", "--allow-unauthenticated")
}
