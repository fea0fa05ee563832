package main

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args      []string
		wantPorts []uint16
		wantErr   string
	}{
		{args: nil},
		{args: []string{"--ports", "8080, 9090,"}, wantPorts: []uint16{8080, 9090}},
		{args: []string{"--ports", "80,http"}, wantErr: `--ports: "http" is not a port`},
		{args: []string{"--ports", "0"}, wantErr: "--ports"},
		{args: []string{"--ports", "70000"}, wantErr: "--ports"},
		{args: []string{"--body-cap", "0"}, wantErr: "--body-cap"},
		{args: []string{"--max-conns", "-1"}, wantErr: "--max-conns must be positive"},
		{args: []string{"--max-buffered", "0"}, wantErr: "--max-buffered"},
		{args: []string{"--max-pending", "0"}, wantErr: "--max-pending"},
		{args: []string{"--max-pending-bytes", "-1"}, wantErr: "--max-pending-bytes must be positive"},
		{args: []string{"--idle-timeout", "0s"}, wantErr: "--idle-timeout"},
		{args: []string{"--sample-rate", "0"}, wantErr: "--sample-rate"},
		{args: []string{"--sample-rate", "1.5"}, wantErr: "--sample-rate"},
		{args: []string{"--ring-size", "3000"}, wantErr: "--ring-size"},
		{args: []string{"--pids", "12,x"}, wantErr: `--pids: "x" is not a process id`},
		{args: []string{"--paths", "api/"}, wantErr: "--paths"},
		{args: []string{"--paths", "/a/["}, wantErr: "--paths"},
		{args: []string{"--compression", "zstd"}, wantErr: "--compression must be one of s2, gzip, none"},
		{args: []string{"--spool-max-bytes", "0"}, wantErr: "--spool-max-bytes must be positive"},
		{args: []string{"extra"}, wantErr: `unexpected argument "extra"`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cfg, err := parseFlags(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.ports, tc.wantPorts) {
				t.Fatalf("ports = %v, want %v", cfg.ports, tc.wantPorts)
			}
			if cfg.collector != "127.0.0.1:7070" || cfg.httpListen != "127.0.0.1:7072" {
				t.Fatalf("defaults = %+v", cfg)
			}
		})
	}
}

func TestParseFlagsSelection(t *testing.T) {
	cfg, err := parseFlags([]string{"--pids", "1, 42", "--cgroups", "/sys/fs/cgroup/a.slice,/b", "--sample-rate", "0.25",
		"--ring-size", "8388608", "--methods", "get,POST", "--paths", "/api/,/v*/items", "--max-conns", "50"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.pids, []uint32{1, 42}) || !slices.Equal(cfg.cgroups, []string{"/sys/fs/cgroup/a.slice", "/b"}) ||
		cfg.sampleRate != 0.25 || cfg.ringSize != 8<<20 || cfg.track.MaxConns != 50 {
		t.Fatalf("cfg = %+v", cfg)
	}
	if !cfg.filter.Match("GET", "/api/x") || !cfg.filter.Match("POST", "/v2/items") || cfg.filter.Match("PUT", "/api/x") || cfg.filter.Match("GET", "/other") {
		t.Fatal("filter does not follow --methods and --paths")
	}
}

func TestCollectorToken(t *testing.T) {
	path := t.TempDir() + "/token"
	if err := os.WriteFile(path, []byte("agent-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseFlags([]string{"--token-file", path})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := cfg.conn.Token(); err != nil || tok != "agent-secret" {
		t.Fatalf("token = %q, %v; want the file's token", tok, err)
	}
	if _, err := parseFlags([]string{"--tls-ca", "/nonexistent/ca.pem"}); err != nil {
		t.Fatalf("a missing CA must fail at dial, with the flag named, not at parse: %v", err)
	}
	cfg, _ = parseFlags([]string{"--tls-ca", "/nonexistent/ca.pem"})
	if _, err := cfg.conn.Dial("127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "--tls-ca") {
		t.Fatalf("dial with a missing CA: %v", err)
	}
}
