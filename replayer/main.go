// Command replayer replays recorded inbound HTTP traffic against a test
// environment and reports where the responses differ from the recorded ones.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/reprise-dev/reprise/internal/filterflag"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
	"github.com/reprise-dev/reprise/replayer/replay"
	"github.com/reprise-dev/reprise/replayer/report"
)

// Exit codes, shared by every reprise command.
const (
	exitOK     = 0
	exitFailed = 1 // some exchange differed or could not be sent
	exitError  = 2 // usage or runtime error, or nothing to replay
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command line, apart from the process, for tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitError
	}
	switch args[0] {
	case "run":
		return runCommand(ctx, args[1:], stdout, stderr)
	case "mock":
		return mockCommand(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "replayer: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitError
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: replayer run --target URL [--collector ADDR] [selection flags] [flags]
       replayer help

run streams the inbound exchanges the selection flags match from the
collector, in time order, replays each request against --target one at a
time, compares each response with the recorded one, prints a summary and
optionally writes a JSON report.

Exit status: 0 every replayed exchange matched; 1 some differed or could not
be sent; 2 usage or runtime error, or no exchange to replay (a replay of
nothing is almost always a filter mistake, so CI should not pass it).

Flags of run:
`)
	fs, _ := newRunFlags()
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// config is the configuration of the run command.
type config struct {
	collector  string
	target     string
	limit      int
	reportJSON string
	timeout    time.Duration
	runID      string
	filters    *filterflag.Flags
}

func newRunFlags() (*flag.FlagSet, *config) {
	fs := flag.NewFlagSet("replayer run", flag.ContinueOnError)
	c := &config{}
	fs.StringVar(&c.collector, "collector", "127.0.0.1:7070", "collector gRPC address (host:port)")
	fs.StringVar(&c.target, "target", "", "base URL to replay against, e.g. http://127.0.0.1:8080 (required; a path is a prefix)")
	fs.IntVar(&c.limit, "limit", 0, "replay at most this many exchanges (0: all)")
	fs.StringVar(&c.reportJSON, "report-json", "", "write the JSON report to this file")
	fs.DurationVar(&c.timeout, "timeout", replay.DefaultTimeout, "timeout of one replayed request")
	fs.StringVar(&c.runID, "run-id", "", "id of this run, sent in the "+replay.RunHeader+" header (default: random)")
	c.filters = filterflag.Register(fs)
	return fs, c
}

// filter validates the configuration and returns the selection to stream.
func (c *config) filter(now time.Time) (*reprisev1.ExchangeFilter, error) {
	if c.target == "" {
		return nil, errors.New("--target is required")
	}
	if _, err := replay.ParseTarget(c.target); err != nil {
		return nil, fmt.Errorf("--target: %w", err)
	}
	if c.collector == "" {
		return nil, errors.New("--collector must not be empty")
	}
	if c.limit < 0 {
		return nil, fmt.Errorf("--limit must not be negative, got %d", c.limit)
	}
	if c.timeout <= 0 {
		return nil, fmt.Errorf("--timeout must be positive, got %s", c.timeout)
	}
	f, err := c.filters.Filter(now)
	if err != nil {
		return nil, err
	}
	// Only inbound requests are this service's API; outbound ones are its
	// dependencies, which a replay serves from mocks instead.
	if f.Direction == reprisev1.Direction_DIRECTION_OUTBOUND {
		return nil, errors.New("--direction: only inbound exchanges can be replayed")
	}
	f.Direction = reprisev1.Direction_DIRECTION_INBOUND
	return f, nil
}

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, cfg := newRunFlags()
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitError
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "replayer run: unexpected arguments %q\n", fs.Args())
		return exitError
	}
	filter, err := cfg.filter(time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "replayer run: %v\n", err)
		return exitError
	}
	if cfg.runID == "" {
		cfg.runID = rand.Text()
	}
	rep, err := replayRun(ctx, cfg, filter, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "replayer run: %v\n", err)
		return exitError
	}
	switch {
	case rep.Total == 0:
		fmt.Fprintln(stderr, "replayer run: no inbound exchange matched the selection; check --since, --service, --path-prefix and the other filters")
		return exitError
	case rep.Skipped == rep.Total:
		fmt.Fprintf(stderr, "replayer run: all %d selected exchanges were skipped; nothing was replayed\n", rep.Total)
		return exitError
	case !rep.OK():
		return exitFailed
	}
	return exitOK
}

// replayRun streams the selection, replays it and writes the summary and the
// JSON report. The report is written even when the run breaks off, so CI
// keeps what was found.
func replayRun(ctx context.Context, cfg *config, filter *reprisev1.ExchangeFilter, stdout io.Writer) (*report.Report, error) {
	r, err := replay.New(cfg.target, cfg.runID, cfg.timeout)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(cfg.collector, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("collector %s: %w", cfg.collector, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream when the replay stops early
	stream, err := reprisev1.NewQueryServiceClient(conn).StreamExchanges(ctx, &reprisev1.StreamExchangesRequest{
		Filter: filter,
		Limit:  int32(cfg.limit),
	})
	if err != nil {
		return nil, fmt.Errorf("stream exchanges from collector %s: %w", cfg.collector, err)
	}

	rep := report.New(cfg.runID, cfg.target, time.Now())
	runErr := r.Run(ctx, exchanges(stream, cfg.collector), rep.Add)
	rep.Finish(time.Now())
	if runErr != nil && rep.Total == 0 {
		return nil, runErr // e.g. collector unreachable: there is nothing to report
	}
	if err := rep.WriteSummary(stdout); err != nil {
		return nil, err
	}
	if cfg.reportJSON != "" {
		if err := writeReport(rep, cfg.reportJSON); err != nil {
			return nil, err
		}
	}
	if runErr != nil {
		return nil, fmt.Errorf("replay stopped after %d exchanges: %w", rep.Total, runErr)
	}
	return rep, nil
}

// exchanges yields the exchanges of a collector stream until it ends.
func exchanges(stream grpc.ServerStreamingClient[reprisev1.StreamExchangesResponse], collector string) iter.Seq2[*reprisev1.Exchange, error] {
	return func(yield func(*reprisev1.Exchange, error) bool) {
		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(nil, fmt.Errorf("receive exchanges from collector %s: %w", collector, err))
				return
			}
			if !yield(msg.GetExchange(), nil) {
				return
			}
		}
	}
}

func writeReport(rep *report.Report, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create report: %w", err)
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close report %s: %w", path, err)
	}
	return nil
}
