package main

import (
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
