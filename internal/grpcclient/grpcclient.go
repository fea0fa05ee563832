// Package grpcclient gives the command-line tools the same flags and dialing
// code for talking to the collector: a bearer token and an optional TLS CA.
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

// TokenEnv names the environment variable that holds the token when
// --token-file is not given.
const TokenEnv = "REPRISE_TOKEN"

// Flags holds the connection flags registered on one flag set.
type Flags struct {
	tokenFile string
	tlsCA     string
}

// Register adds --token-file and --tls-ca to fs.
func Register(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the collector's bearer token (default: $"+TokenEnv+")")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM file of the CA that signed the collector's certificate; enables TLS")
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
	creds := insecure.NewCredentials()
	secure := false
	if f.tlsCA != "" {
		pem, err := os.ReadFile(f.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", f.tlsCA)
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
		secure = true
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	tok, err := f.Token()
	if err != nil {
		return nil, err
	}
	if tok != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: tok, secure: secure}))
	}
	return opts, nil
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
