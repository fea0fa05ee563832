package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/server"
	"github.com/reprise-dev/reprise/collector/store"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// startCollector serves a store holding three exchanges (one POST) on a real
// port and returns its address.
func startCollector(t *testing.T) string {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "reprise.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now()
	var exs []*reprisev1.Exchange
	for i, method := range []string{"GET", "POST", "GET"} {
		exs = append(exs, &reprisev1.Exchange{
			Id:        fmt.Sprintf("ex-%d", i),
			StartTime: timestamppb.New(now.Add(time.Duration(i-3) * time.Second)),
			Request:   &reprisev1.HttpRequest{Method: method, Target: "/items", Body: []byte("line1\nline2")},
			Response:  &reprisev1.HttpResponse{StatusCode: 201},
		})
	}
	if err := st.Put(context.Background(), exs); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.NewGRPC(st, metrics.Nop{}, server.Config{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestQueryOutput(t *testing.T) {
	addr := startCollector(t)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"all", nil, []string{"ex-0", "ex-1", "ex-2"}},
		{"filter", []string{"--method", "post", "--since", "1h"}, []string{"ex-1"}},
		{"limit", []string{"--limit", "2"}, []string{"ex-0", "ex-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"query", "--addr", addr}, tt.args...)
			if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d, stderr: %s", code, stderr.String())
			}
			var got []string
			sc := bufio.NewScanner(&stdout)
			for sc.Scan() {
				line := sc.Text()
				if !strings.Contains(line, `"statusCode"`) {
					t.Errorf("line without statusCode: %s", line)
				}
				ex := &reprisev1.Exchange{}
				if err := protojson.Unmarshal([]byte(line), ex); err != nil {
					t.Fatalf("line does not parse as an Exchange: %v\n%s", err, line)
				}
				if ex.GetResponse().GetStatusCode() != 201 || string(ex.GetRequest().GetBody()) != "line1\nline2" {
					t.Errorf("exchange did not round-trip: %v", ex)
				}
				got = append(got, ex.GetId())
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("ids %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		wantStderr string
	}{
		{"no args", nil, 2, "Usage: collector"},
		{"help", []string{"help"}, 0, ""},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown flag", []string{"query", "--bogus"}, 2, "Usage: collector query"},
		{"positional argument", []string{"query", "extra"}, 2, `unexpected argument "extra"`},
		{"flag help", []string{"serve", "-h"}, 0, "-grpc-listen"},
		{"negative limit", []string{"query", "--limit", "-1"}, 2, "--limit must not be negative"},
		{"bad filter", []string{"query", "--direction", "sideways"}, 2, "--direction"},
		{"unreachable", []string{"query", "--addr", "127.0.0.1:1"}, 2, "stream exchanges from 127.0.0.1:1"},
		{"unreachable postgres", []string{"serve", "--store", "postgres://127.0.0.1:1/reprise?connect_timeout=5"}, 2, "open store"},
		{"tls cert without key", []string{"serve", "--tls-cert", "c.pem"}, 2, "a certificate and its key go together"},
		{"client CA without TLS", []string{"serve", "--tls-client-ca", "ca.pem"}, 2, "mutual TLS is TLS first"},
		{"agents file and shared token", []string{"serve", "--agents-file", "agents.yaml", "--ingest-token-file", "main_test.go"}, 2, "--agents-file replaces the shared ingest token"},
		{"agents file missing", []string{"serve", "--agents-file", "/nonexistent/agents.yaml"}, 2, "--agents-file"},
		{"bad retention size", []string{"serve", "--retention-size", "lots"}, 2, "--retention-size"},
		{"negative retention age", []string{"serve", "--retention-age", "-1h"}, 2, "--retention-age"},
		{"missing token file", []string{"serve", "--query-token-file", "/nonexistent/token"}, 2, "--query-token-file"},
		{"missing sanitize config", []string{"serve", "--sanitize-config", "/nonexistent/rules.yaml"}, 2, "--sanitize-config"},
		{"import without file", []string{"import"}, 2, "exactly one FILE"},
		{"bad export format", []string{"export", "--format", "xml"}, 2, "--format"},
		{"bad status class", []string{"query", "--status", "7xx"}, 2, "--status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tt.args, &stdout, &stderr); code != tt.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q, want it to contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}
