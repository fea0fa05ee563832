// Command collector receives captured exchanges from agents, sanitizes and
// stores them, and serves them to users and the replayer.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/reprise-dev/reprise/collector/server"
	"github.com/reprise-dev/reprise/internal/filterflag"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

const usage = `Usage: collector <command> [flags]

Commands:
  serve   receive exchanges from agents, store them, serve queries
  query   print stored exchanges as JSON lines
  help    show this help

Run "collector <command> -h" for the flags of a command.
`

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the exit code: 0 success, 2 usage or
// runtime error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "serve":
		err = serve(ctx, args[1:], stderr)
	case "query":
		err = query(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "collector: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		// The flag package has already printed the problem and the usage.
		return 2
	default:
		fmt.Fprintf(stderr, "collector %s: %v\n", args[0], err)
		return 2
	}
}

var errUsage = errors.New("usage")

// parse parses a command's flags; it allows no positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: collector %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", "serve [flags]", stderr)
	grpcAddr := fs.String("grpc-listen", "127.0.0.1:7070", "gRPC listen address (ingest, query, reflection)")
	httpAddr := fs.String("http-listen", "127.0.0.1:7071", "HTTP listen address (/healthz, /readyz, /metrics)")
	storePath := fs.String("store", "./reprise-data/reprise.db", "store: a SQLite file path (postgres:// is not supported yet)")
	if err := parse(fs, args); err != nil {
		return err
	}
	st, err := server.OpenStore(*storePath)
	if err != nil {
		return err
	}
	defer st.Close()
	grpcLis, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		return fmt.Errorf("listen grpc: %w", err)
	}
	httpLis, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("listen http: %w", err)
	}
	return server.Serve(ctx, grpcLis, httpLis, st)
}

func query(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("query", "query [--addr ADDR] [filter flags] [--limit N]", stderr)
	addr := fs.String("addr", "127.0.0.1:7070", "collector gRPC address")
	limit := fs.Int("limit", 0, "print at most this many exchanges (0: all)")
	filters := filterflag.Register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return fmt.Errorf("--limit must not be negative, got %d", *limit)
	}
	filter, err := filters.Filter(time.Now())
	if err != nil {
		return err
	}

	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("connect %s: %w", *addr, err)
	}
	defer conn.Close()
	stream, err := reprisev1.NewQueryServiceClient(conn).StreamExchanges(ctx, &reprisev1.StreamExchangesRequest{
		Filter: filter,
		Limit:  int32(min(*limit, math.MaxInt32)),
	})
	if err != nil {
		return fmt.Errorf("stream exchanges from %s: %w", *addr, err)
	}
	out := bufio.NewWriter(stdout)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			out.Flush()
			return fmt.Errorf("stream exchanges from %s: %w", *addr, err)
		}
		// protojson without Multiline writes one line per exchange.
		b, err := protojson.MarshalOptions{}.Marshal(resp.GetExchange())
		if err != nil {
			return fmt.Errorf("encode exchange %s: %w", resp.GetExchange().GetId(), err)
		}
		if _, err := out.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
