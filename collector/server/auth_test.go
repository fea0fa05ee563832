package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/reprise-dev/reprise/collector/auth"
	"github.com/reprise-dev/reprise/collector/ingest"
	"github.com/reprise-dev/reprise/internal/grpcclient"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// dial connects to addr with the command-line flags a user would pass; the
// connection closes when the test ends.
func dial(t *testing.T, addr string, args ...string) *grpc.ClientConn {
	t.Helper()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f := grpcclient.Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	conn, err := f.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// client is a query client dialled as dial does.
func client(t *testing.T, addr string, args ...string) reprisev1.QueryServiceClient {
	t.Helper()
	return reprisev1.NewQueryServiceClient(dial(t, addr, args...))
}

func TestAuthAndTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	certPath := ca.path
	serverCert, serverKey := ca.issue(t, "127.0.0.1", true)
	creds, err := credentials.NewServerTLSFromFile(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := startGRPC(t, Config{Tokens: auth.Tokens{Ingest: "ingest-secret", Query: "query-secret"}, TLS: creds})
	tokenFile := func(tok string) string {
		p := filepath.Join(dir, tok)
		if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	count := func(c reprisev1.QueryServiceClient) codes.Code {
		_, err := c.CountExchanges(ctx, &reprisev1.CountExchangesRequest{})
		return status.Code(err)
	}
	stream := func(c reprisev1.QueryServiceClient) codes.Code {
		s, err := c.StreamExchanges(ctx, &reprisev1.StreamExchangesRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		if err == io.EOF {
			return codes.OK
		}
		return status.Code(err)
	}
	tests := []struct {
		name string
		args []string
		want codes.Code
	}{
		{"no token", []string{"--tls-ca", certPath}, codes.Unauthenticated},
		{"ingest token on queries", []string{"--tls-ca", certPath, "--token-file", tokenFile("ingest-secret")}, codes.Unauthenticated},
		{"wrong token", []string{"--tls-ca", certPath, "--token-file", tokenFile("query-secreT")}, codes.Unauthenticated},
		{"query token", []string{"--tls-ca", certPath, "--token-file", tokenFile("query-secret")}, codes.OK},
		{"plaintext to a TLS server", []string{"--token-file", tokenFile("query-secret")}, codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := client(t, addr, tt.args...)
			if got := count(c); got != tt.want {
				t.Errorf("unary call: %v, want %v", got, tt.want)
			}
			if got := stream(c); got != tt.want {
				t.Errorf("streaming call: %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("env token", func(t *testing.T) {
		t.Setenv(grpcclient.TokenEnv, "query-secret")
		if got := count(client(t, addr, "--tls-ca", certPath)); got != codes.OK {
			t.Errorf("token from $%s: %v", grpcclient.TokenEnv, got)
		}
	})

	t.Run("ingest needs the ingest token", func(t *testing.T) {
		for tok, want := range map[string]codes.Code{"query-secret": codes.Unauthenticated, "ingest-secret": codes.OK} {
			conn := dial(t, addr, "--tls-ca", certPath, "--token-file", tokenFile(tok))
			s, err := reprisev1.NewIngestServiceClient(conn).Ingest(ctx)
			if err == nil {
				err = s.Send(&reprisev1.IngestRequest{BatchId: "b"})
			}
			// A Send to a stream the server already ended returns io.EOF;
			// the status comes from Recv.
			if err == nil || errors.Is(err, io.EOF) {
				_, err = s.Recv()
			}
			if got := status.Code(err); got != want {
				t.Errorf("ingest with %s: %v, want %v", tok, got, want)
			}
		}
	})

	t.Run("reflection stays open", func(t *testing.T) {
		conn := dial(t, addr, "--tls-ca", certPath)
		s, err := grpc_reflection_v1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&grpc_reflection_v1.ServerReflectionRequest{MessageRequest: &grpc_reflection_v1.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Errorf("reflection without a token: %v", err)
		}
	})
}

// TestAuthorizationMetadata checks how the authorization metadata is read:
// exactly one value (several are refused, even with the right token among
// them), and the Bearer scheme in any case.
func TestAuthorizationMetadata(t *testing.T) {
	digest := sha256.Sum256([]byte("node-a-secret"))
	agents, err := auth.ParseAgents([]byte("agents:\n  - id: node-a\n    token_sha256: " + hex.EncodeToString(digest[:]) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := startGRPC(t, Config{Tokens: auth.Tokens{Query: "query-secret", Agents: agents}})
	conn := dial(t, addr)
	qc, ic := reprisev1.NewQueryServiceClient(conn), reprisev1.NewIngestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tests := []struct {
		name      string
		values    []string
		wantQuery codes.Code
	}{
		{"one bearer", []string{"Bearer query-secret"}, codes.OK},
		{"lower-case scheme", []string{"bearer query-secret"}, codes.OK},
		{"upper-case scheme", []string{"BEARER query-secret"}, codes.OK},
		{"right token among several", []string{"Bearer wrong", "Bearer query-secret"}, codes.Unauthenticated},
		{"the same token twice", []string{"Bearer query-secret", "Bearer query-secret"}, codes.Unauthenticated},
		{"other scheme", []string{"Basic query-secret"}, codes.Unauthenticated},
		{"prefix of the token", []string{"Bearer query-secre"}, codes.Unauthenticated},
		{"empty token", []string{"Bearer "}, codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kv []string
			for _, v := range tt.values {
				kv = append(kv, "authorization", v)
			}
			_, err := qc.CountExchanges(metadata.AppendToOutgoingContext(ctx, kv...), &reprisev1.CountExchangesRequest{})
			if got := status.Code(err); got != tt.wantQuery {
				t.Errorf("query with %q: %v, want %v", tt.values, err, tt.wantQuery)
			}
			// The agents' tokens follow the same rules.
			var agentKV []string
			for _, v := range tt.values {
				agentKV = append(agentKV, "authorization", strings.Replace(v, "query-secret", "node-a-secret", 1))
			}
			s, err := ic.Ingest(metadata.AppendToOutgoingContext(ctx, agentKV...))
			if err == nil {
				err = s.Send(&reprisev1.IngestRequest{BatchId: "b", AgentId: "node-a"})
			}
			if err == nil || errors.Is(err, io.EOF) {
				_, err = s.Recv()
			}
			if got := status.Code(err); got != tt.wantQuery {
				t.Errorf("ingest with %q: %v, want %v", agentKV, err, tt.wantQuery)
			}
		})
	}
}

// TestStreamsPerAgent checks that one agent of the agents file cannot hold
// more than its share of ingest streams, while another agent still can.
func TestStreamsPerAgent(t *testing.T) {
	digest := func(tok string) string { s := sha256.Sum256([]byte(tok)); return hex.EncodeToString(s[:]) }
	agents, err := auth.ParseAgents([]byte("agents:\n  - id: node-a\n    token_sha256: " + digest("a-secret") +
		"\n  - id: node-b\n    token_sha256: " + digest("b-secret") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := startGRPC(t, Config{Tokens: auth.Tokens{Agents: agents}, Ingest: ingest.Limits{AgentStreams: 1}})
	ic := reprisev1.NewIngestServiceClient(dial(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// open starts a stream as agent and returns once a batch is acked on it
	// (so the server counts it), or the stream's error.
	open := func(agent, tok string) error {
		s, err := ic.Ingest(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok))
		if err == nil {
			err = s.Send(&reprisev1.IngestRequest{BatchId: agent + "-probe", AgentId: agent})
		}
		if err == nil || errors.Is(err, io.EOF) {
			_, err = s.Recv()
		}
		return err
	}
	if err := open("node-a", "a-secret"); err != nil {
		t.Fatalf("node-a's first stream: %v", err)
	}
	if err := open("node-a", "a-secret"); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "node-a") {
		t.Errorf("node-a's second stream: %v, want ResourceExhausted naming node-a", err)
	}
	if err := open("node-b", "b-secret"); err != nil {
		t.Errorf("node-b's stream beside node-a's: %v", err)
	}
}
