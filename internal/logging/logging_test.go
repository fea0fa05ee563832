package logging

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestFlags(t *testing.T) {
	tests := []struct {
		args []string
		want []string // messages written, of debug, info, warn, error
		json bool
	}{
		{nil, []string{"i", "w", "e"}, false},
		{[]string{"--log-level=debug"}, []string{"d", "i", "w", "e"}, false},
		{[]string{"--log-level=WARN", "--log-format=json"}, []string{"w", "e"}, true},
		{[]string{"--log-level", "error", "--log-format", "text"}, []string{"e"}, false},
		{[]string{"--log-format=json", "--log-format=text"}, []string{"i", "w", "e"}, false},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			Register(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			log := Logger(fs, &buf)
			log.Debug("d")
			log.Info("i", "k", "v")
			log.Warn("w")
			log.Error("e")
			var got []string
			for line := range strings.Lines(buf.String()) {
				if tc.json {
					var rec struct{ Msg string }
					if err := json.Unmarshal([]byte(line), &rec); err != nil {
						t.Fatalf("not a JSON line: %q", line)
					}
					got = append(got, rec.Msg)
					continue
				}
				_, msg, ok := strings.Cut(line, "msg=")
				if !ok {
					t.Fatalf("not a text line: %q", line)
				}
				got = append(got, strings.Fields(msg)[0])
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("logged %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBadValues(t *testing.T) {
	for _, args := range [][]string{{"--log-level=verbose"}, {"--log-level="}, {"--log-format=xml"}} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		Register(fs)
		if err := fs.Parse(args); err == nil {
			t.Errorf("%v: parsed without error", args)
		}
	}
}
