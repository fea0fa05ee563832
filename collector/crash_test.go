package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/internal/grpcclient"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// buildCollector builds this command into a temporary directory.
func buildCollector(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "collector")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

var servingRE = regexp.MustCompile(`msg=serving .*grpc=(\S+) http=(\S+)`)

// startBinary runs "collector serve" on ephemeral ports, with the extra
// flags, and returns the process and its gRPC address once it serves.
func startBinary(t *testing.T, bin, storePath string, extra ...string) (*exec.Cmd, string) {
	cmd, addr, _ := startServe(t, bin, storePath, extra...)
	return cmd, addr
}

// startServe is startBinary that also returns the HTTP address.
func startServe(t *testing.T, bin, storePath string, extra ...string) (*exec.Cmd, string, string) {
	t.Helper()
	args := append([]string{"serve", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--store", storePath}, extra...)
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addrc := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m
				break
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case m := <-addrc:
		return cmd, m[1], m[2]
	case <-time.After(30 * time.Second):
		t.Fatal("collector did not start serving within 30s")
	}
	return nil, "", ""
}

// TestKill9LosesNoAckedExchange kills the collector with SIGKILL while an
// agent-like client streams batches, then checks that the store opens
// cleanly and holds every exchange of every acknowledged batch.
func TestKill9LosesNoAckedExchange(t *testing.T) {
	bin := buildCollector(t)
	storePath := filepath.Join(t.TempDir(), "reprise.db")
	cmd, addr := startBinary(t, bin, storePath)

	conn, err := (&grpcclient.Flags{}).Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := reprisev1.NewIngestServiceClient(conn).Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}

	const batchSize = 50
	var mu sync.Mutex
	acked := map[string]bool{} // exchange ids of acknowledged batches
	killAfter := 20
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for n := 0; ; n++ {
			ack, err := stream.Recv()
			if err != nil {
				return
			}
			mu.Lock()
			for i := range batchSize {
				acked[fmt.Sprintf("%s-%d", ack.GetBatchId(), i)] = true
			}
			mu.Unlock()
			if n+1 == killAfter {
				// SIGKILL: no graceful stop, no final checkpoint.
				cmd.Process.Kill()
			}
		}
	}()
	start := time.Now()
	for b := 0; b < 100000; b++ {
		req := &reprisev1.IngestRequest{BatchId: fmt.Sprintf("b%05d", b), AgentId: "crash-test"}
		for i := range batchSize {
			req.Exchanges = append(req.Exchanges, &reprisev1.Exchange{
				Id:        fmt.Sprintf("b%05d-%d", b, i),
				StartTime: timestamppb.New(start.Add(time.Duration(b*batchSize+i) * time.Microsecond)),
				Service:   "orders",
				Request:   &reprisev1.HttpRequest{Method: "POST", Target: fmt.Sprintf("/orders/%d", b), Body: []byte(`{"sku":"A-1","qty":2}`)},
				Response:  &reprisev1.HttpResponse{StatusCode: 201, Body: []byte(`{"id":42}`)},
			})
		}
		if err := stream.Send(req); err != nil {
			break // the collector is gone
		}
	}
	<-recvDone
	cmd.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < killAfter*batchSize {
		t.Fatalf("only %d exchanges acked before the kill, want at least %d", len(acked), killAfter*batchSize)
	}

	// The file left behind must pass SQLite's own consistency check.
	db, err := sql.Open("sqlite", storePath)
	if err != nil {
		t.Fatal(err)
	}
	var check string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check after kill -9: %q, %v", check, err)
	}
	db.Close()

	_, addr = startBinary(t, bin, storePath)
	conn2, err := (&grpcclient.Flags{}).Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	qs, err := reprisev1.NewQueryServiceClient(conn2).StreamExchanges(ctx, &reprisev1.StreamExchangesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for {
		resp, err := qs.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		stored[resp.GetExchange().GetId()] = true
	}
	missing := 0
	for id := range acked {
		if !stored[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged exchanges missing after kill -9 and restart", missing, len(acked))
	}
	t.Logf("%d exchanges acked before the kill, %d stored after restart", len(acked), len(stored))
}
