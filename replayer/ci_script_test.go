package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/server"
	"github.com/reprise-dev/reprise/collector/store"
	"github.com/reprise-dev/reprise/examples/orders/api"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// TestCIReplayScriptThroughPortForward runs scripts/ci-replay.sh as a CI job
// would against a cluster's collector: the recording sits in a real
// collector, reached through the port-forward the script starts. kubectl is
// played by testdata/kubectl-port-forward.py, which forwards a loopback port
// as kubectl would; everything else is the real thing.
func TestCIReplayScriptThroughPortForward(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 plays kubectl here:", err)
	}
	dir := t.TempDir()
	replayer := filepath.Join(dir, "replayer")
	if out, err := exec.Command("go", "build", "-o", replayer, ".").CombinedOutput(); err != nil {
		t.Fatalf("build replayer: %v\n%s", err, out)
	}
	addr := collectorWith(t, filepath.Join(dir, "reprise.db"), record(t))
	script, err := filepath.Abs("../scripts/ci-replay.sh")
	if err != nil {
		t.Fatal(err)
	}
	kubectl, err := filepath.Abs("testdata/kubectl-port-forward.py")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, version, service string
		wantCode               int
		wantStderr             string
	}{
		{"v1 passes", api.V1, "reprise-collector", 0, ""},
		{"v2 differs", api.V2, "reprise-collector", 1, "found differences"},
		{"no such service", api.V1, "missing", 2, `services "missing" not found`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target, runIDs := orders(t, tt.version)
			reports := filepath.Join(dir, strconv.Itoa(i))
			kubectlLog := filepath.Join(dir, "kubectl-"+strconv.Itoa(i))
			cmd := exec.Command("bash", script, "--allow-writes", "--progress", "0")
			cmd.Env = append(os.Environ(),
				"REPLAYER="+replayer, "KUBECTL="+kubectl,
				"REPRISE_KUBE_SERVICE="+tt.service, "REPRISE_KUBE_NAMESPACE=shop",
				"REPRISE_TARGET="+target, "REPRISE_REPORT_DIR="+reports, "REPRISE_RUN_ID=41",
				"REPRISE_TEST_FORWARD_TO="+addr, "REPRISE_TEST_KUBECTL_LOG="+kubectlLog)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := cmd.ProcessState.ExitCode()
			if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Fatalf("exit %d (%v), stderr %q; want exit %d with %q", code, err, stderr.String(), tt.wantCode, tt.wantStderr)
			}

			logged, err := os.ReadFile(kubectlLog)
			if err != nil {
				t.Fatal(err)
			}
			pid, args, _ := strings.Cut(strings.TrimSpace(string(logged)), " ")
			if want := "-n shop port-forward svc/" + tt.service + " :7070"; args != want {
				t.Errorf("kubectl %q, want %q", args, want)
			}
			if n, _ := strconv.Atoi(pid); !exited(n) {
				t.Errorf("the port-forward (pid %s) outlived the script", pid)
			}
			if tt.wantCode == 2 {
				return
			}
			for _, f := range []string{"report.json", "junit.xml", "report.html"} {
				if _, err := os.Stat(filepath.Join(reports, f)); err != nil {
					t.Errorf("report: %v", err)
				}
			}
			ids := runIDs()
			if len(ids) != 7 || slices.ContainsFunc(ids, func(id string) bool { return id != "ci-41" }) {
				t.Errorf("target saw run ids %q, want 7 times ci-41", ids)
			}
		})
	}
}

// collectorWith serves a real collector on a SQLite store at path holding
// the exchanges, ingested as an agent sends them.
func collectorWith(t *testing.T, path string, exchanges []*reprisev1.Exchange) string {
	t.Helper()
	st, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := server.NewGRPC(st, metrics.Nop{}, server.Config{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := reprisev1.NewIngestServiceClient(conn).Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reprisev1.IngestRequest{BatchId: "recording", AgentId: "test", Exchanges: exchanges}); err != nil {
		t.Fatal(err)
	}
	if ack, err := stream.Recv(); err != nil || int(ack.GetStored()) != len(exchanges) {
		t.Fatalf("ingest the recording: ack %v, %v", ack, err)
	}
	return lis.Addr().String()
}

// exited reports whether the process is gone, waiting up to two seconds.
func exited(pid int) bool {
	for range 20 {
		if pid <= 0 || syscall.Kill(pid, 0) != nil {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}
