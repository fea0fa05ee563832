package server

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/reprise-dev/reprise/collector/auth"
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
