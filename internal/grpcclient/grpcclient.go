// Package grpcclient gives the command-line tools the same flags and dialing
// code for talking to the collector: a bearer token, an optional TLS CA and
// an optional client certificate for mutual TLS.
package grpcclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// MaxMessageBytes is the largest gRPC message the collector and its clients
// send or receive: an ingest batch, one exchange of a query stream, one page
// of ListExchanges. Servers and clients use this one value, so anything the
// collector accepts its own tools can read back. gRPC's 4 MiB default is too
// small for exchanges with large bodies or headers.
const MaxMessageBytes = 32 << 20

// TokenEnv names the environment variable that holds the token when
// --token-file is not given.
const TokenEnv = "REPRISE_TOKEN"

// Flags holds the connection flags registered on one flag set.
type Flags struct {
	tokenFile string
	tlsCA     string
	tlsCert   string
	tlsKey    string
	tlsName   string
}

// Register adds --token-file, --tls-ca, --tls-cert and --tls-key to fs.
func Register(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the collector's bearer token (default: $"+TokenEnv+")")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM file of the CA that signed the collector's certificate; enables TLS")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM client certificate for mutual TLS (with --tls-key and --tls-ca)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.tlsName, "tls-server-name", "", "name to verify the collector's certificate against, when the address does not carry it (a port-forward to 127.0.0.1)")
	return f
}

// Token returns the bearer token from --token-file, else from $REPRISE_TOKEN;
// "" when neither is set.
func (f *Flags) Token() (string, error) {
	if f.tokenFile == "" {
		return strings.TrimSpace(os.Getenv(TokenEnv)), nil
	}
	b, err := os.ReadFile(f.tokenFile)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("--token-file %s is empty", f.tokenFile)
	}
	return tok, nil
}

// Dial returns a client connection to addr: TLS verified against --tls-ca
// when given, plaintext otherwise, and the token sent on every call.
func (f *Flags) Dial(addr string) (*grpc.ClientConn, error) {
	opts, err := f.DialOptions()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	return conn, nil
}

// DialOptions returns the options Dial uses, for callers that dial themselves.
func (f *Flags) DialOptions() ([]grpc.DialOption, error) {
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if (f.tlsCert != "" || f.tlsName != "") && f.tlsCA == "" {
		return nil, fmt.Errorf("--tls-cert and --tls-server-name need --tls-ca: they only apply over TLS")
	}
	creds := insecure.NewCredentials()
	secure := false
	if f.tlsCA != "" {
		pool, err := CertPool(f.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		cfg := &tls.Config{RootCAs: pool, ServerName: f.tlsName, MinVersion: tls.VersionTLS12}
		if f.tlsCert != "" {
			cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
			if err != nil {
				return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		creds = credentials.NewTLS(cfg)
		secure = true
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
	}
	tok, err := f.Token()
	if err != nil {
		return nil, err
	}
	if tok != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: tok, secure: secure}))
	}
	return opts, nil
}

// CertPool reads a PEM file of CA certificates.
func CertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

// bearer sends "authorization: Bearer <token>" on every call.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is false so a token also works over plaintext on
// loopback; with --tls-ca the connection is encrypted anyway.
func (b bearer) RequireTransportSecurity() bool { return b.secure }
