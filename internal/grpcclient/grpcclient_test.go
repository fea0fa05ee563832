package grpcclient

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv(TokenEnv, "from-env")
	tests := []struct {
		args    []string
		want    string
		wantErr string
	}{
		{nil, "from-env", ""},
		{[]string{"--token-file", write("tok", "from-file\n")}, "from-file", ""},
		{[]string{"--token-file", write("empty", " \n")}, "", "is empty"},
		{[]string{"--token-file", filepath.Join(dir, "missing")}, "", "--token-file"},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		f := Register(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		got, err := f.Token()
		if got != tt.want || (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Token(%v) = %q, %v; want %q, error containing %q", tt.args, got, err, tt.want, tt.wantErr)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f := Register(fs)
	fs.Parse([]string{"--tls-ca", write("ca.pem", "not a certificate")})
	if _, err := f.Dial("127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "--tls-ca") {
		t.Errorf("Dial with a bad CA file: %v, want an error naming --tls-ca", err)
	}
}
