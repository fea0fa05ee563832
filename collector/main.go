// Command collector receives captured exchanges from agents, sanitizes and
// stores them, and serves them to users and the replayer.
package main

import (
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
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // registers gzip: agents with --compression gzip, or older ones
	"google.golang.org/protobuf/proto"

	"github.com/reprise-dev/reprise/collector/auth"
	"github.com/reprise-dev/reprise/collector/ingest"
	"github.com/reprise-dev/reprise/collector/server"
	"github.com/reprise-dev/reprise/internal/exchfile"
	"github.com/reprise-dev/reprise/internal/exitcode"
	"github.com/reprise-dev/reprise/internal/filterflag"
	"github.com/reprise-dev/reprise/internal/grpcclient"
	"github.com/reprise-dev/reprise/internal/logging"
	"github.com/reprise-dev/reprise/internal/s2compress"
	"github.com/reprise-dev/reprise/internal/sanitize"
	"github.com/reprise-dev/reprise/internal/wirecodec"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

const usage = `Usage: collector <command> [flags]

Commands:
  serve   receive exchanges from agents, store them, serve queries
  query   print stored exchanges as JSON lines (or --count them)
  stats   print per-endpoint counts, error rates and latency percentiles
  export  write stored exchanges to a HAR or JSONL file
  import  send the exchanges of a HAR or JSONL file through ingest
  help    show this help

Run "collector <command> -h" for the flags of a command.
`

func main() {
	// gRPC's codec for every command; s2 (and gzip, imported above) for
	// the batches agents compress.
	wirecodec.Register()
	s2compress.Register()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the exit code: exitcode.OK, or
// exitcode.Error for a usage or runtime error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitcode.Error
	}
	var err error
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitcode.OK
	case "serve":
		err = serve(ctx, args[1:], stderr)
	case "query":
		err = query(ctx, args[1:], stdout, stderr)
	case "stats":
		err = stats(ctx, args[1:], stdout, stderr)
	case "export":
		err = export(ctx, args[1:], stdout, stderr)
	case "import":
		err = importFile(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "collector: unknown command %q\n\n%s", args[0], usage)
		return exitcode.Error
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitcode.OK
	case errors.Is(err, errUsage):
		// The flag package has already printed the problem and the usage.
		return exitcode.Error
	default:
		fmt.Fprintf(stderr, "collector %s: %v\n", args[0], err)
		return exitcode.Error
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
	logging.Install(fs)
	return nil
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	logging.Register(fs)
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
	storePath := fs.String("store", "./reprise-data/reprise.db", "store: a SQLite file path, or a postgres:// URL of the database several collectors share")
	ingestTokenFile := fs.String("ingest-token-file", "", "file holding the token agents must send to IngestService (default: $"+ingestTokenEnv+"; none: open)")
	queryTokenFile := fs.String("query-token-file", "", "file holding the token clients must send to QueryService (default: $"+queryTokenEnv+"; none: open)")
	tlsCert := fs.String("tls-cert", "", "PEM certificate to serve gRPC over TLS (with --tls-key)")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	tlsClientCA := fs.String("tls-client-ca", "", "PEM CA file: require every gRPC client to present a certificate it signed (mutual TLS; needs --tls-cert)")
	agentsFile := fs.String("agents-file", "", "YAML list of the agents allowed to ingest, each with its token's SHA-256 or named by its client certificate; others are refused (replaces --ingest-token-file)")
	retentionAge := fs.Duration("retention-age", 0, "delete exchanges older than this (e.g. 168h; 0: keep)")
	retentionSize := fs.String("retention-size", "", "delete the oldest exchanges while the store holds more than this (e.g. 10GB; empty: no limit)")
	sanitizeConfig := fs.String("sanitize-config", "", "YAML sanitize rules (default: the built-in rules)")
	tokenKeyFile := fs.String("token-key-file", "", "HMAC key of tokenize rules (default: $REPRISE_TOKEN_KEY)")
	ingestMemory := fs.String("ingest-memory", humanize.IBytes(ingest.DefaultMemory), "memory for the batches in work, process-wide; further batches wait")
	batchMemory := fs.String("ingest-batch-memory", humanize.IBytes(ingest.DefaultBatchDecoded), "memory one batch may decode compressed bodies into; its further compressed bodies are removed")
	ingestStreams := fs.Int("ingest-streams", ingest.DefaultStreams, "ingest streams open at once; more are refused with ResourceExhausted")
	agentStreams := fs.Int("ingest-agent-streams", ingest.DefaultAgentStreams, "ingest streams one agent of --agents-file may have open")
	ingestIdle := fs.Duration("ingest-idle", ingest.DefaultIdle, "close an ingest stream that sends no batch for this long")
	allowOpen := fs.Bool("allow-unauthenticated", false, "serve IngestService or QueryService without a token or client certificate on an address other than loopback")
	if err := parse(fs, args); err != nil {
		return err
	}
	var cfg server.Config
	var err error
	if cfg.Tokens.Ingest, err = tokenFrom(*ingestTokenFile, ingestTokenEnv, "--ingest-token-file"); err != nil {
		return err
	}
	if cfg.Tokens.Query, err = tokenFrom(*queryTokenFile, queryTokenEnv, "--query-token-file"); err != nil {
		return err
	}
	if *agentsFile != "" {
		if cfg.Tokens.Ingest != "" {
			return errors.New("--agents-file replaces the shared ingest token: drop --ingest-token-file and $" + ingestTokenEnv)
		}
		if cfg.Tokens.Agents, err = auth.LoadAgents(*agentsFile); err != nil {
			return fmt.Errorf("--agents-file: %w", err)
		}
	}
	if cfg.TLS, err = server.LoadTLS(*tlsCert, *tlsKey, *tlsClientCA); err != nil {
		return fmt.Errorf("--tls-cert, --tls-key, --tls-client-ca: %w", err)
	}
	if open := openServices(cfg.Tokens, *tlsClientCA != ""); len(open) > 0 {
		if !*allowOpen && !loopback(*grpcAddr) {
			return fmt.Errorf("%s would accept calls from anyone on %s: give --ingest-token-file, --agents-file, --query-token-file or --tls-client-ca, or pass --allow-unauthenticated to serve it open", strings.Join(open, " and "), *grpcAddr)
		}
		slog.Warn("serving without authentication", "component", "collector", "services", strings.Join(open, ","), "grpc", *grpcAddr)
	}
	if *retentionAge < 0 {
		return fmt.Errorf("--retention-age must not be negative, got %s", *retentionAge)
	}
	cfg.Retention.MaxAge = *retentionAge
	if *retentionSize != "" {
		n, err := humanize.ParseBytes(*retentionSize)
		if err != nil || n == 0 || n > math.MaxInt64 {
			return fmt.Errorf("--retention-size: want a size like 10GB, got %q", *retentionSize)
		}
		cfg.Retention.MaxBytes = int64(n)
	}
	key, err := sanitize.KeyFromEnvOrFile(*tokenKeyFile)
	if err != nil {
		return fmt.Errorf("--token-key-file: %w", err)
	}
	if cfg.Sanitizer, err = sanitize.Load(*sanitizeConfig, key); err != nil {
		return fmt.Errorf("--sanitize-config: %w", err)
	}
	// Ingest sizes its decode room by what one body may decode to.
	cfg.Ingest.BodyDecoded = cfg.Sanitizer.Limits().MaxBodyBytes
	for _, l := range []struct {
		name string
		v    string
		to   *int64
	}{{"--ingest-memory", *ingestMemory, &cfg.Ingest.Memory}, {"--ingest-batch-memory", *batchMemory, &cfg.Ingest.BatchDecoded}} {
		n, err := humanize.ParseBytes(l.v)
		if err != nil || n == 0 || n > math.MaxInt64 {
			return fmt.Errorf("%s: want a size like 256MiB, got %q", l.name, l.v)
		}
		*l.to = int64(n)
	}
	if *ingestStreams <= 0 || *agentStreams <= 0 || *ingestIdle <= 0 {
		return errors.New("--ingest-streams, --ingest-agent-streams and --ingest-idle must be positive")
	}
	cfg.Ingest.Streams, cfg.Ingest.AgentStreams, cfg.Ingest.Idle = *ingestStreams, *agentStreams, *ingestIdle
	if err := cfg.Ingest.Check(); err != nil {
		return fmt.Errorf("--ingest-memory, --ingest-batch-memory: %w", err)
	}
	gcPercent, memLimit := tuneGC(cgroupMemoryMax, cfg.Ingest.Memory+softLimitHeadroom)
	slog.Info("garbage collector", "component", "collector", "gogc", gcPercent, "memory_limit_bytes", memLimit)

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
	return server.Serve(ctx, grpcLis, httpLis, st, cfg)
}

// softLimitHeadroom is the heap beyond --ingest-memory the collector's soft
// memory limit allows, without a cgroup limit: queries (pages of 16 MiB),
// messages being received and the runtime.
const softLimitHeadroom = 128 << 20

// openServices names the gRPC services that accept calls from anyone: no
// token and no client certificate required.
func openServices(t auth.Tokens, clientCerts bool) []string {
	if clientCerts {
		return nil // mutual TLS: every caller has a certificate of the CA
	}
	var open []string
	if t.Ingest == "" && t.Agents == nil {
		open = append(open, "IngestService")
	}
	if t.Query == "" {
		open = append(open, "QueryService")
	}
	return open
}

// loopback reports whether a listen address only accepts connections from
// this host: a loopback IP or "localhost" (not "", which is every address).
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Environment variables that hold the serve tokens when no file is given.
const (
	ingestTokenEnv = "REPRISE_INGEST_TOKEN"
	queryTokenEnv  = "REPRISE_QUERY_TOKEN"
)

// tokenFrom reads a token from path, or from the environment variable when
// path is ""; "" means no token.
func tokenFrom(path, env, flagName string) (string, error) {
	if path == "" {
		return strings.TrimSpace(os.Getenv(env)), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s: %s is empty", flagName, path)
	}
	return tok, nil
}

// client holds the flags every client command shares: where the collector
// is, how to authenticate, and which exchanges.
type client struct {
	addr    *string
	conn    *grpcclient.Flags
	filters *filterflag.Flags
}

func registerClient(fs *flag.FlagSet) *client {
	return &client{
		addr:    fs.String("addr", "127.0.0.1:7070", "collector gRPC address"),
		conn:    grpcclient.Register(fs),
		filters: filterflag.Register(fs),
	}
}

// open builds the selection the flags describe and connects; the caller
// closes the connection.
func (c *client) open() (*reprisev1.ExchangeFilter, reprisev1.QueryServiceClient, *grpc.ClientConn, error) {
	filter, err := c.filters.Filter(time.Now())
	if err != nil {
		return nil, nil, nil, err
	}
	conn, err := c.conn.Dial(*c.addr)
	if err != nil {
		return nil, nil, nil, err
	}
	return filter, reprisev1.NewQueryServiceClient(conn), conn, nil
}

func query(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("query", "query [--addr ADDR] [filter flags] [--limit N | --count]", stderr)
	c := registerClient(fs)
	limit := fs.Int("limit", 0, "print at most this many exchanges (0: all)")
	count := fs.Bool("count", false, "print only the number of matching exchanges")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return fmt.Errorf("--limit must not be negative, got %d", *limit)
	}
	filter, qc, conn, err := c.open()
	if err != nil {
		return err
	}
	defer conn.Close()
	if *count {
		resp, err := qc.CountExchanges(ctx, &reprisev1.CountExchangesRequest{Filter: filter})
		if err != nil {
			return fmt.Errorf("count exchanges at %s: %w", *c.addr, err)
		}
		_, err = fmt.Fprintln(stdout, resp.GetCount())
		return err
	}
	return streamTo(ctx, qc, *c.addr, filter, *limit, exchfile.NewWriter(stdout, exchfile.JSONL))
}

// streamTo writes the matching exchanges to w in time order and closes w.
func streamTo(ctx context.Context, qc reprisev1.QueryServiceClient, addr string, filter *reprisev1.ExchangeFilter, limit int, w exchfile.Writer) error {
	stream, err := qc.StreamExchanges(ctx, &reprisev1.StreamExchangesRequest{
		Filter: filter,
		Limit:  int32(min(limit, math.MaxInt32)),
	})
	if err != nil {
		return fmt.Errorf("stream exchanges from %s: %w", addr, err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			w.Close()
			return fmt.Errorf("stream exchanges from %s: %w", addr, err)
		}
		if err := w.Write(resp.GetExchange()); err != nil {
			return fmt.Errorf("write exchange %s: %w", resp.GetExchange().GetId(), err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func stats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("stats", "stats [--addr ADDR] [filter flags]", stderr)
	c := registerClient(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	filter, qc, conn, err := c.open()
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := qc.GetStats(ctx, &reprisev1.GetStatsRequest{Filter: filter})
	if err != nil {
		return fmt.Errorf("get stats from %s: %w", *c.addr, err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tMETHOD\tENDPOINT\tCOUNT\t4XX\t5XX\tERROR RATE\tP50\tP95\tP99")
	for _, e := range resp.GetEndpoints() {
		st := e.GetStats()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%.2f%%\t%s\t%s\t%s\n", e.GetService(), e.GetMethod(), e.GetEndpoint(),
			st.GetCount(), st.GetClientErrors(), st.GetServerErrors(), 100*st.GetErrorRate(),
			st.GetP50().AsDuration(), st.GetP95().AsDuration(), st.GetP99().AsDuration())
	}
	return tw.Flush()
}

func export(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", "export [--format har|jsonl] [--out FILE] [filter flags]", stderr)
	c := registerClient(fs)
	format := fs.String("format", "", "har or jsonl (default: from the --out extension, else jsonl)")
	out := fs.String("out", "", "file to write (default: standard output)")
	limit := fs.Int("limit", 0, "export at most this many exchanges (0: all)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return fmt.Errorf("--limit must not be negative, got %d", *limit)
	}
	f := exchfile.JSONL
	switch {
	case *format != "":
		var err error
		if f, err = exchfile.ParseFormat(*format); err != nil {
			return fmt.Errorf("--format: %w", err)
		}
	case *out != "":
		f = exchfile.FormatOf(*out)
	}
	filter, qc, conn, err := c.open()
	if err != nil {
		return err
	}
	defer conn.Close()
	if *out == "" {
		return streamTo(ctx, qc, *c.addr, filter, *limit, exchfile.NewWriter(stdout, f))
	}
	// Exports hold captured traffic: owner-only, like the store.
	file, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := streamTo(ctx, qc, *c.addr, filter, *limit, exchfile.NewWriter(file, f)); err != nil {
		file.Close()
		return err
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}

// An import batch closes at importBatch exchanges or importBatchBytes of
// encoded exchanges, whichever comes first, so large bodies stay under
// grpcclient.MaxMessageBytes.
const (
	importBatch      = 256
	importBatchBytes = grpcclient.MaxMessageBytes / 4
	// importBatchOverhead is room for the batch's own fields around one
	// exchange.
	importBatchOverhead = 1 << 10
)

// importFile sends a file's exchanges to the collector's IngestService, so
// they are sanitized and stored exactly like captured ones.
func importFile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("import", "import [--addr ADDR] FILE", stderr)
	addr := fs.String("addr", "127.0.0.1:7070", "collector gRPC address")
	connFlags := grpcclient.Register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "import takes exactly one FILE")
		fs.Usage()
		return errUsage
	}
	logging.Install(fs)
	path := fs.Arg(0)
	conn, err := connFlags.Dial(*addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := reprisev1.NewIngestServiceClient(conn).Ingest(ctx)
	if err != nil {
		return fmt.Errorf("ingest to %s: %w", *addr, err)
	}
	importID := uuid.NewString()
	var sent, stored, dropped int
	batches := 0
	send := func(exs []*reprisev1.Exchange) error {
		batches++
		req := &reprisev1.IngestRequest{BatchId: fmt.Sprintf("import-%s-%d", importID, batches), AgentId: "import", Exchanges: exs}
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("send batch to %s: %w", *addr, err)
		}
		// One batch in flight: the ack says it is stored before the next goes.
		ack, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("ingest batch %d of %s: %w", batches, path, err)
		}
		sent += len(exs)
		stored += int(ack.GetStored())
		dropped += int(ack.GetDropped())
		return nil
	}
	var batch []*reprisev1.Exchange
	batchBytes := 0
	for ex, err := range exchfile.ReadFile(path) {
		if err != nil {
			return fmt.Errorf("after %d exchanges: %w", sent+len(batch), err)
		}
		if ex.GetId() == "" {
			ex.Id = uuid.NewString()
		}
		if ex.Capture == nil {
			ex.Capture = &reprisev1.Capture{Source: reprisev1.CaptureSource_CAPTURE_SOURCE_IMPORT}
		}
		size := proto.Size(ex)
		if size > grpcclient.MaxMessageBytes-importBatchOverhead {
			return fmt.Errorf("exchange %s of %s is %d bytes encoded, over the %d bytes of one message", ex.GetId(), path, size, grpcclient.MaxMessageBytes-importBatchOverhead)
		}
		if len(batch) > 0 && batchBytes+size > importBatchBytes {
			if err := send(batch); err != nil {
				return err
			}
			batch, batchBytes = nil, 0
		}
		batch, batchBytes = append(batch, ex), batchBytes+size
		if len(batch) == importBatch {
			if err := send(batch); err != nil {
				return err
			}
			batch, batchBytes = nil, 0
		}
	}
	if len(batch) > 0 {
		if err := send(batch); err != nil {
			return err
		}
	}
	if err := stream.CloseSend(); err != nil {
		return fmt.Errorf("close ingest stream: %w", err)
	}
	if _, err := stream.Recv(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("close ingest stream: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "imported %d exchanges from %s: %d stored, %d dropped by sanitize rules\n", sent, path, stored, dropped)
	return err
}
