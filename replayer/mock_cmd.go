package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/reprise-dev/reprise/internal/filterflag"
	"github.com/reprise-dev/reprise/internal/grpcclient"
	"github.com/reprise-dev/reprise/internal/logging"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
	"github.com/reprise-dev/reprise/replayer/mock"
	"github.com/reprise-dev/reprise/replayer/source"
)

// mockConfig is the mock: section of the replay config file.
type mockConfig struct {
	Strict bool     `yaml:"strict"`
	Ignore []string `yaml:"ignore"`
}

type mockFlags struct {
	collector, file, listen, config string
	strict                          bool
	limit                           int
	filters                         *filterflag.Flags
	conn                            *grpcclient.Flags
}

func newMockFlags() (*flag.FlagSet, *mockFlags) {
	fs := flag.NewFlagSet("replayer mock", flag.ContinueOnError)
	logging.Register(fs)
	m := &mockFlags{}
	fs.StringVar(&m.collector, "collector", "", "collector gRPC address (host:port); or --file")
	fs.StringVar(&m.file, "file", "", "JSONL or HAR file exported by the collector; or --collector")
	fs.StringVar(&m.listen, "listen", "127.0.0.1:8081", "address to serve the mock on")
	fs.StringVar(&m.config, "config", "", "replay config file; its mock: section sets strict and ignore")
	fs.BoolVar(&m.strict, "strict", false, "answer unmatched calls with 502 and exit 1 at shutdown if there were any")
	fs.IntVar(&m.limit, "limit", 0, "load at most this many exchanges (0: all)")
	m.filters = filterflag.Register(fs)
	m.conn = grpcclient.Register(fs)
	return fs, m
}

// mockCommand serves recorded outbound exchanges as an HTTP server until
// interrupted.
func mockCommand(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs, m := newMockFlags()
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: replayer mock (--collector ADDR | --file F) [--listen ADDR] [--strict] [--config FILE] [selection flags]

mock serves the recorded outbound exchanges the selection flags match as an
HTTP server, usable as a base URL or as an HTTP proxy. Unmatched calls are
listed at `+mock.UnmatchedPath+`. Exit status at shutdown (SIGINT/SIGTERM):
0, or 1 in strict mode when any call was unmatched, 2 on error.

Flags of mock:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitError
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "replayer mock: unexpected arguments %q\n", fs.Args())
		return exitError
	}
	logging.Install(fs)
	code, err := serveMock(ctx, m, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "replayer mock: %v\n", err)
		return exitError
	}
	return code
}

func serveMock(ctx context.Context, m *mockFlags, stderr io.Writer) (int, error) {
	opts := mock.Options{Strict: m.strict, Log: slog.New(slog.NewTextHandler(stderr, nil))}
	if m.config != "" {
		mc, err := loadMockConfig(m.config)
		if err != nil {
			return 0, err
		}
		opts.Strict = opts.Strict || mc.Strict
		opts.Ignore = mc.Ignore
	}
	filter, err := m.filters.Filter(time.Now())
	if err != nil {
		return 0, err
	}
	if filter.Direction == reprisev1.Direction_DIRECTION_INBOUND {
		return 0, errors.New("--direction: the mock serves outbound exchanges only")
	}
	filter.Direction = reprisev1.Direction_DIRECTION_OUTBOUND
	seq, err := source.Open(ctx, source.Spec{Collector: m.collector, Dial: m.conn.Dial, File: m.file, Filter: filter, Limit: m.limit})
	if err != nil {
		return 0, err
	}
	var recorded []*reprisev1.Exchange
	for ex, err := range seq {
		if err != nil {
			return 0, err
		}
		recorded = append(recorded, ex)
	}
	if len(recorded) == 0 {
		return 0, errors.New("no outbound exchange matched the selection; check --service, --since and the other filters")
	}
	srv, err := mock.New(recorded, opts)
	if err != nil {
		return 0, fmt.Errorf("config mock.%w", err)
	}
	ln, err := net.Listen("tcp", m.listen)
	if err != nil {
		return 0, fmt.Errorf("listen %s: %w", m.listen, err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	st := srv.Stats()
	fmt.Fprintf(stderr, "replayer mock: serving %d recorded exchanges on http://%s (strict=%t)\n", st.Recorded, ln.Addr(), opts.Strict)
	if st.Refused > 0 {
		fmt.Fprintf(stderr, "replayer mock: refused %d recorded exchanges whose request-target is neither origin form nor an absolute http URL\n", st.Refused)
	}
	select {
	case err := <-errc:
		return 0, fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(shutdownCtx)
	st = srv.Stats()
	fmt.Fprintf(stderr, "replayer mock: %d matched, %d unmatched calls\n", st.Matched, st.Unmatched)
	if opts.Strict && st.Unmatched > 0 {
		return exitFailed, nil
	}
	return exitOK, nil
}

// loadMockConfig reads the mock: section of a replay config file, leaving
// the other sections to the run command.
func loadMockConfig(path string) (mockConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return mockConfig{}, fmt.Errorf("--config: %w", err)
	}
	var doc struct {
		Mock yaml.Node `yaml:"mock"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return mockConfig{}, fmt.Errorf("--config %s: %w", path, err)
	}
	var mc mockConfig
	if doc.Mock.Kind == 0 {
		return mc, nil
	}
	// Re-encode the section to decode it strictly: a misspelt key is an
	// error, not a silently lax mock.
	section, err := yaml.Marshal(&doc.Mock)
	if err != nil {
		return mockConfig{}, fmt.Errorf("--config %s: mock: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(section))
	dec.KnownFields(true)
	if err := dec.Decode(&mc); err != nil {
		return mockConfig{}, fmt.Errorf("--config %s: mock: %w", path, err)
	}
	return mc, nil
}
