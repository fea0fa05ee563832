package deploy

import (
	"context"
	"flag"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/reprise-dev/reprise/agent/export"
	"github.com/reprise-dev/reprise/internal/grpcclient"
	"github.com/reprise-dev/reprise/internal/sample"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// TestCollectorImage runs the collector image as a user would with docker:
// as its non-root user, its store on a named volume, a read-only root, the
// gRPC port published on the host's loopback. An exchange sent from the
// host with the ingest token is answered to the query token, and is still
// there after the container is replaced by a new one on the same volume.
func TestCollectorImage(t *testing.T) {
	tag := images(t)
	dir := t.TempDir()
	ingestToken, queryToken := filepath.Join(dir, "ingest-token"), filepath.Join(dir, "query-token")
	writeFile(t, ingestToken, []byte(randomHex(32)))
	writeFile(t, queryToken, []byte(randomHex(32)))
	volume := "reprise-test-" + randomHex(4)
	docker(t, "volume", "create", volume)
	t.Cleanup(func() { _ = exec.Command("docker", "volume", "rm", "-f", volume).Run() })
	port := freePort(t)

	run := func() string {
		name := "reprise-collector-" + randomHex(4)
		docker(t, "run", "-d", "--name", name, "--read-only", "-v", volume+":/data", "-v", dir+":/etc/reprise/auth:ro",
			"-p", "127.0.0.1:"+strconv.Itoa(port)+":7070", "reprise/collector:"+tag,
			"serve", "--grpc-listen=0.0.0.0:7070", "--http-listen=0.0.0.0:7071",
			"--ingest-token-file=/etc/reprise/auth/ingest-token", "--query-token-file=/etc/reprise/auth/query-token")
		t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
		pid, _ := strconv.Atoi(docker(t, "inspect", "--format", "{{.State.Pid}}", name))
		if uid := procUID(t, pid); uid != 65532 {
			t.Errorf("the collector runs as uid %d, want the image's nonroot 65532", uid)
		}
		return name
	}
	first := run()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	x := sample.Checkout()
	send(t, addr, ingestToken, x)
	if n := count(t, addr, queryToken); n != 1 {
		t.Fatalf("count = %d after one exchange", n)
	}
	docker(t, "rm", "-f", first)
	run()
	if n := count(t, addr, queryToken); n != 1 {
		t.Fatalf("count = %d after a new container on the same volume", n)
	}
	if n := count(t, addr, ingestToken); n != -1 {
		t.Errorf("the ingest token was accepted for queries")
	}
}

// docker runs a docker command and returns its trimmed output.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// dial connects as the CLI does with --token-file.
func dial(t *testing.T, addr, tokenFile string) *grpc.ClientConn {
	t.Helper()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f := grpcclient.Register(fs)
	if err := fs.Parse([]string{"--token-file", tokenFile}); err != nil {
		t.Fatal(err)
	}
	conn, err := f.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// send delivers x as an agent does and waits for the collector's ack.
func send(t *testing.T, addr, tokenFile string, x *reprisev1.Exchange) {
	t.Helper()
	e := export.New(dial(t, addr, tokenFile), export.Config{AgentID: "image-test"})
	e.Add(x)
	e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := e.Run(ctx); err != nil {
		t.Fatalf("send to the collector: %v", err)
	}
}

// count asks for the number of stored exchanges, retrying while the
// collector starts; -1 when the token is refused.
func count(t *testing.T, addr, tokenFile string) int64 {
	t.Helper()
	qc := reprisev1.NewQueryServiceClient(dial(t, addr, tokenFile))
	var err error
	for range 100 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var resp *reprisev1.CountExchangesResponse
		resp, err = qc.CountExchanges(ctx, &reprisev1.CountExchangesRequest{})
		cancel()
		if err == nil {
			return resp.GetCount()
		}
		if c := status.Code(err); c == codes.Unauthenticated || c == codes.PermissionDenied {
			return -1
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("count exchanges at %s: %v", addr, err)
	return 0
}
