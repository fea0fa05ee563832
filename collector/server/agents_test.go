package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/reprise-dev/reprise/collector/auth"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// TestKnownAgentsOverMutualTLS runs a collector that requires client
// certificates and lists its agents, and checks who gets in and what each
// side is told.
func TestKnownAgentsOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	serverCert, serverKey := ca.issue(t, "127.0.0.1", true)
	creds, err := LoadTLS(serverCert, serverKey, ca.path)
	if err != nil {
		t.Fatal(err)
	}
	digest := func(tok string) string { s := sha256.Sum256([]byte(tok)); return hex.EncodeToString(s[:]) }
	agents, err := auth.ParseAgents([]byte(fmt.Sprintf(`agents:
  - id: node-a
    token_sha256: %s
  - id: node-b
`, digest("node-a-secret"))))
	if err != nil {
		t.Fatal(err)
	}
	addr, st := startGRPC(t, Config{Tokens: auth.Tokens{Query: "query-secret", Agents: agents}, TLS: creds})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certA, keyA := ca.issue(t, "node-a", false)
	certB, keyB := ca.issue(t, "node-b", false)
	certX, keyX := ca.issue(t, "node-x", false)
	mtls := func(cert, key string) []string {
		return []string{"--tls-ca", ca.path, "--tls-cert", cert, "--tls-key", key}
	}
	withToken := func(args []string, tok string) []string {
		return append(args, "--token-file", file(tok, tok))
	}
	// ingest sends one batch as agentID and returns the outcome's code and
	// message, as the agent would see them.
	ingest := func(args []string, agentID string) (codes.Code, string) {
		s, err := reprisev1.NewIngestServiceClient(dial(t, addr, args...)).Ingest(ctx)
		if err == nil {
			err = s.Send(&reprisev1.IngestRequest{BatchId: "batch-" + agentID + "-" + strings.Join(args, ""), AgentId: agentID, Exchanges: []*reprisev1.Exchange{{Id: "ex-" + agentID + fmt.Sprint(time.Now().UnixNano())}}})
		}
		if err == nil || errors.Is(err, io.EOF) {
			var ack *reprisev1.IngestResponse
			ack, err = s.Recv()
			if err == nil && ack.GetStored() != 1 {
				t.Errorf("ack %v, want one stored exchange", ack)
			}
		}
		st, _ := status.FromError(err)
		return st.Code(), st.Message()
	}

	tests := []struct {
		name    string
		args    []string
		agentID string
		want    codes.Code
		msg     string // a part of the message the agent gets
	}{
		{"agent token and its own certificate", withToken(mtls(certA, keyA), "node-a-secret"), "node-a", codes.OK, ""},
		{"certificate of a listed agent", mtls(certB, keyB), "node-b", codes.OK, ""},
		{"token of a listed agent, another agent's certificate", withToken(mtls(certB, keyB), "node-a-secret"), "node-a", codes.PermissionDenied, `the token is agent "node-a"'s but the client certificate names node-b`},
		{"unknown certificate", mtls(certX, keyX), "node-x", codes.PermissionDenied, "node-x, none of them in this collector's agents file"},
		{"unknown token", withToken(mtls(certX, keyX), "guess"), "node-x", codes.Unauthenticated, "unknown agent token"},
		{"listed agent writing as another", mtls(certB, keyB), "node-a", codes.PermissionDenied, `authenticated as agent "node-b", but batch`},
		// With TLS 1.3 the client may see the server's alert or only the
		// connection it closed, so only the code is certain.
		{"no client certificate", []string{"--tls-ca", ca.path}, "node-a", codes.Unavailable, ""},
		{"query token is not an agent's", withToken(mtls(certX, keyX), "query-secret"), "node-x", codes.Unauthenticated, "unknown agent token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg := ingest(tt.args, tt.agentID)
			if code != tt.want || !strings.Contains(msg, tt.msg) {
				t.Errorf("got %v %q, want %v with %q", code, msg, tt.want, tt.msg)
			}
		})
	}
	if n, err := st.Count(ctx, nil); err != nil || n != 2 {
		t.Errorf("stored %d exchanges (%v), want the 2 of the accepted agents", n, err)
	}

	t.Run("queries with a client certificate and the query token", func(t *testing.T) {
		c := client(t, addr, withToken(mtls(certX, keyX), "query-secret")...)
		if n, err := c.CountExchanges(ctx, &reprisev1.CountExchangesRequest{}); err != nil || n.GetCount() != 2 {
			t.Errorf("count = %v, %v; want 2", n, err)
		}
	})
}

// TestTLSServerName reaches a collector whose certificate carries only its
// cluster DNS name through a loopback address, as a port-forward does.
func TestTLSServerName(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	cert, key := ca.issue(t, "reprise-collector.reprise.svc", true)
	creds, err := LoadTLS(cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := startGRPC(t, Config{TLS: creds})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tt := range []struct {
		args []string
		want codes.Code
	}{
		{[]string{"--tls-ca", ca.path}, codes.Unavailable},
		{[]string{"--tls-ca", ca.path, "--tls-server-name", "reprise-collector.reprise.svc"}, codes.OK},
	} {
		_, err := client(t, addr, tt.args...).CountExchanges(ctx, &reprisev1.CountExchangesRequest{})
		if got := status.Code(err); got != tt.want {
			t.Errorf("%v: %v (%v), want %v", tt.args, got, err, tt.want)
		}
	}
}

func TestParseAgentsRejectsMistakes(t *testing.T) {
	digest := strings.Repeat("ab", 32)
	for name, yaml := range map[string]string{
		"empty":          "agents: []\n",
		"no id":          "agents:\n  - token_sha256: " + digest + "\n",
		"duplicate id":   "agents:\n  - id: a\n  - id: a\n",
		"short digest":   "agents:\n  - id: a\n    token_sha256: abcd\n",
		"plain token":    "agents:\n  - id: a\n    token: hunter2\n",
		"shared digest":  "agents:\n  - id: a\n    token_sha256: " + digest + "\n  - id: b\n    token_sha256: " + digest + "\n",
		"not yaml lists": "agents: node-a\n",
	} {
		if _, err := auth.ParseAgents([]byte(yaml)); err == nil {
			t.Errorf("%s: parsed without an error", name)
		}
	}
}
