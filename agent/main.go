// Command agent captures HTTP traffic on this host with eBPF and exports
// the exchanges to a reprise collector.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/reprise-dev/reprise/agent/capture"
	"github.com/reprise-dev/reprise/agent/export"
	"github.com/reprise-dev/reprise/agent/httpstream"
	"github.com/reprise-dev/reprise/agent/metadata"
	"github.com/reprise-dev/reprise/agent/metrics"
	"github.com/reprise-dev/reprise/agent/pipeline"
	"github.com/reprise-dev/reprise/agent/sockdiag"
	"github.com/reprise-dev/reprise/agent/spool"
	"github.com/reprise-dev/reprise/internal/exitcode"
	"github.com/reprise-dev/reprise/internal/grpcclient"
	"github.com/reprise-dev/reprise/internal/logging"
	"github.com/reprise-dev/reprise/internal/s2compress"
	"github.com/reprise-dev/reprise/internal/sanitize"
	"github.com/reprise-dev/reprise/internal/wirecodec"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

type config struct {
	collector  string
	conn       *grpcclient.Flags
	ports      []uint16
	pids       []uint32
	cgroups    []string
	sampleRate float64
	ringSize   uint
	methods    []string
	paths      []string
	filter     httpstream.Filter
	httpListen string
	agentID    string
	nodeName   string
	track      httpstream.Config
	maxPending int
	// maxPendingBytes is an int so the positive check covers it.
	maxPendingBytes int
	pprof           bool
	drain           time.Duration
	compression     string
	spoolDir        string
	spoolMaxBytes   int64
	sanitizeConfig  string
	tokenKeyFile    string
}

func main() {
	// The gRPC codec and compressor of the stream to the collector.
	wirecodec.Register()
	s2compress.Register()
	os.Exit(run(os.Args[1:]))
}

func parseFlags(args []string) (config, error) {
	host, _ := os.Hostname()
	cfg := config{}
	var ports, pids, cgroups, methods, paths string
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.StringVar(&cfg.collector, "collector", "127.0.0.1:7070", "collector gRPC address")
	cfg.conn = grpcclient.Register(fs)
	logging.Register(fs)
	fs.StringVar(&ports, "ports", "", "comma-separated ports; capture only connections with one of them as local or remote port (default all)")
	fs.StringVar(&pids, "pids", "", "comma-separated process ids (host namespace); capture only their connections (default all)")
	fs.StringVar(&cgroups, "cgroups", "", "comma-separated cgroup v2 paths; capture only processes inside them (default all)")
	fs.Float64Var(&cfg.sampleRate, "sample-rate", 1, "share of connections captured, 0 < rate <= 1")
	fs.UintVar(&cfg.ringSize, "ring-size", capture.DefaultRingSize, "kernel ring buffer bytes, a power of two (mapped once: it counts once in the RSS)")
	fs.StringVar(&methods, "methods", "", "comma-separated HTTP methods; export only these (default all)")
	fs.StringVar(&paths, "paths", "", "comma-separated request path prefixes or globs (with * ? [); export only matching requests (default all)")
	fs.StringVar(&cfg.httpListen, "http-listen", "127.0.0.1:7072", "address for /healthz and /metrics")
	fs.StringVar(&cfg.agentID, "agent-id", host, "agent id recorded in every exchange")
	fs.StringVar(&cfg.nodeName, "node-name", os.Getenv("NODE_NAME"), "Kubernetes node of the agent; its pods name the exchanges (in a cluster)")
	fs.IntVar(&cfg.track.BodyCap, "body-cap", httpstream.DefaultBodyCap, "bytes of each body kept; longer bodies are marked truncated")
	fs.IntVar(&cfg.track.MaxConns, "max-conns", httpstream.DefaultMaxConns, "connections tracked at once; more are dropped and counted")
	fs.IntVar(&cfg.track.MaxBuffered, "max-buffered", httpstream.DefaultMaxBuffered, "bytes held per connection direction outside the parser (reordering, responses ahead of requests)")
	fs.DurationVar(&cfg.track.IdleTimeout, "idle-timeout", httpstream.DefaultIdleTimeout, "a connection without events for this long is closed and flushed")
	fs.DurationVar(&cfg.track.StreamTimeout, "stream-timeout", httpstream.DefaultStreamTimeout, "a response still streaming after this long is exported as far as read")
	fs.IntVar(&cfg.maxPending, "max-pending", 32768, "exchanges held for the collector, queued or unacknowledged; more are dropped and counted (with --max-pending-bytes, bounds memory when the collector is slow)")
	fs.IntVar(&cfg.maxPendingBytes, "max-pending-bytes", export.DefaultMaxPendingBytes, "approximate bytes of the exchanges held for the collector; more are dropped and counted (bounds memory with large bodies)")
	fs.BoolVar(&cfg.pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on --http-listen")
	fs.DurationVar(&cfg.drain, "drain-timeout", 10*time.Second, "on shutdown, how long to wait for the collector to acknowledge what is pending; the rest is spooled (--spool-dir) or dropped and counted")
	fs.StringVar(&cfg.compression, "compression", s2compress.Name, "compression of the batches sent to the collector: "+strings.Join(export.Compressions, ", ")+" (a collector that refuses one gets the next)")
	fs.StringVar(&cfg.spoolDir, "spool-dir", "", "directory of the disk spool that holds batches, sanitized, while the collector is down or slow (default: no spool, memory only)")
	fs.Int64Var(&cfg.spoolMaxBytes, "spool-max-bytes", 1<<30, "bound of the disk spool; past it the oldest batches are dropped and counted")
	fs.StringVar(&cfg.sanitizeConfig, "sanitize-config", "", "YAML sanitize rules applied before anything is spooled (default: the built-in rules; use the collector's)")
	fs.StringVar(&cfg.tokenKeyFile, "token-key-file", "", "HMAC key of tokenize rules, the collector's (default: $REPRISE_TOKEN_KEY)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	logging.Install(fs)
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if cfg.ports, err = parsePorts(ports); err != nil {
		return cfg, fmt.Errorf("--ports: %w", err)
	}
	if cfg.pids, err = parsePids(pids); err != nil {
		return cfg, fmt.Errorf("--pids: %w", err)
	}
	cfg.cgroups, cfg.methods, cfg.paths = list(cgroups), list(methods), list(paths)
	if cfg.filter, err = httpstream.NewFilter(cfg.methods, cfg.paths); err != nil {
		return cfg, fmt.Errorf("--paths: %w", err)
	}
	for name, v := range map[string]int{"--body-cap": cfg.track.BodyCap, "--max-conns": cfg.track.MaxConns,
		"--max-buffered": cfg.track.MaxBuffered, "--max-pending": cfg.maxPending, "--max-pending-bytes": cfg.maxPendingBytes} {
		if v <= 0 {
			return cfg, fmt.Errorf("%s must be positive, got %d", name, v)
		}
	}
	if cfg.track.BodyCap > 1<<30 {
		return cfg, fmt.Errorf("--body-cap must be at most 1 GiB, got %d", cfg.track.BodyCap)
	}
	if cfg.track.IdleTimeout <= 0 || cfg.track.StreamTimeout <= 0 {
		return cfg, errors.New("--idle-timeout and --stream-timeout must be positive")
	}
	if !(cfg.sampleRate > 0 && cfg.sampleRate <= 1) {
		return cfg, fmt.Errorf("--sample-rate must be in (0, 1], got %g", cfg.sampleRate)
	}
	if cfg.ringSize == 0 || cfg.ringSize&(cfg.ringSize-1) != 0 || cfg.ringSize > 1<<30 {
		return cfg, fmt.Errorf("--ring-size must be a power of two up to 1 GiB, got %d", cfg.ringSize)
	}
	if cfg.agentID == "" {
		return cfg, errors.New("--agent-id is empty and the host name is unknown")
	}
	if !slices.Contains(export.Compressions, cfg.compression) {
		return cfg, fmt.Errorf("--compression must be one of %s, got %q", strings.Join(export.Compressions, ", "), cfg.compression)
	}
	if cfg.spoolMaxBytes <= 0 {
		return cfg, fmt.Errorf("--spool-max-bytes must be positive, got %d", cfg.spoolMaxBytes)
	}
	return cfg, nil
}

// list splits a comma-separated flag value, dropping empty items.
func list(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parsePids(s string) ([]uint32, error) {
	var pids []uint32
	for _, f := range list(s) {
		p, err := strconv.ParseUint(f, 10, 32)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("%q is not a process id", f)
		}
		pids = append(pids, uint32(p))
	}
	return pids, nil
}

func parsePorts(s string) ([]uint16, error) {
	var ports []uint16
	for _, f := range list(s) {
		p, err := strconv.ParseUint(f, 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("%q is not a port (1-65535)", f)
		}
		ports = append(ports, uint16(p))
	}
	return ports, nil
}

// defaultMemoryLimit is the Go heap's soft limit unless GOMEMLIMIT says
// otherwise. The queues are bounded by bytes (ring buffer, connection
// buffers, export backlog), so the live heap stays well below it; the limit keeps
// GOGC's headroom (up to twice the live heap) from doubling RSS under large
// bodies: 291 MB instead of ~145 MB with 64 KiB uploads, for ~7 % of the
// agent's CPU returning memory to the kernel (docs/benchmarks/capture.md).
const defaultMemoryLimit = 64 << 20

// defaultGCPercent is GOGC with the default soft limit, unless the
// environment sets it: the heap may grow to five times the live heap
// instead of twice, still bounded by the limit, so the GC runs a quarter as
// often under small exchanges, where it was 10-17 % of the agent's CPU
// (docs/benchmarks/capture.md).
const defaultGCPercent = 400

// defaultMaxProcs is GOMAXPROCS unless the environment sets it. The agent's
// work is one pipeline (ring, parser, exporter): on more than one P its
// goroutines hand each other work across threads, and every handoff wakes a
// thread. Under 64 KiB bodies on a saturated two-core node one P moved 1.5×
// the traced server's requests at ~60 % of the agent's CPU per exchange
// (docs/benchmarks/capture.md). It is also what the DaemonSet's CPU limit
// of one core gives a container-aware Go runtime.
const defaultMaxProcs = 1

func run(args []string) int {
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		runtime.GOMAXPROCS(defaultMaxProcs)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(defaultMemoryLimit)
		if _, set := os.LookupEnv("GOGC"); !set {
			debug.SetGCPercent(defaultGCPercent)
		}
	}
	cfg, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return exitcode.OK
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return exitcode.Error
	}
	if err := serve(cfg); err != nil {
		slog.Error("agent stopped", "err", err)
		return exitcode.Error
	}
	return exitcode.OK
}

func serve(cfg config) error {
	log := slog.With("component", "agent")
	lis, err := net.Listen("tcp", cfg.httpListen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.httpListen, err)
	}
	// The ingest token (--token-file or $REPRISE_TOKEN) and --tls-ca work
	// as for the command-line clients.
	opts, err := cfg.conn.DialOptions()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(cfg.collector, append(opts, export.DialOptions()...)...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", cfg.collector, err)
	}
	defer conn.Close()

	capt, err := capture.Open(capture.Config{Ports: cfg.ports, Pids: cfg.pids, Cgroups: cfg.cgroups,
		SampleRate: cfg.sampleRate, RingSize: uint32(cfg.ringSize), BodyCap: cfg.track.BodyCap})
	if err != nil {
		return fmt.Errorf("open capture: %w", err)
	}
	defer capt.Close()

	// The pod index lives as long as the process; its watch ends with it.
	pods, err := podIndex(context.Background(), cfg.nodeName)
	if err != nil {
		return err
	}
	resolver := metadata.NewResolver("/proc", metadata.DefaultCacheSize, pods)
	expCfg := export.Config{AgentID: cfg.agentID, Hostname: cfg.agentID, MaxPending: cfg.maxPending,
		MaxPendingBytes: int64(cfg.maxPendingBytes), Compression: cfg.compression,
		Acked: httpstream.Release} // the bodies' buffers serve later exchanges
	if cfg.spoolDir != "" {
		if expCfg.Spool, expCfg.Sanitizer, err = openSpool(cfg); err != nil {
			return err
		}
		defer expCfg.Spool.Close()
	}
	exp := export.New(conn, expCfg)
	track := cfg.track
	track.Filter = cfg.filter
	track.Skipper = capt
	roles := sockdiag.New()
	defer roles.Close()
	track.Roles = roles
	tracker := httpstream.New(track, func(x *reprisev1.Exchange) {
		resolver.Enrich(x)
		exp.Add(x)
	})
	pipe := pipeline.New(tracker)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(metrics.NewCollector(metrics.Sources{
		// Events wait in the ring buffer, not in a queue: the pipeline handles
		// each as it reads it.
		Capture: capt.Stats, Tracker: pipe.Stats, Export: exp.Stats, Pending: exp.Pending,
		RingUnread: capt.Unread, PendingBytes: exp.PendingBytes,
	}))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if cfg.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	httpSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = httpSrv.Serve(lis) }()
	defer httpSrv.Close()

	// The exporter outlives the capture so it can deliver what the last
	// events completed; drainCtx bounds that wait at shutdown.
	drainCtx, stopDrain := context.WithCancel(context.Background())
	defer stopDrain()
	exported := make(chan error, 1)
	go func() { exported <- exp.Run(drainCtx) }()
	piped := make(chan error, 1)
	go func() { piped <- pipe.Run(capt, time.Second) }()
	log.Info("capturing", "collector", cfg.collector, "ports", cfg.ports, "pids", cfg.pids, "cgroups", cfg.cgroups,
		"sample_rate", cfg.sampleRate, "methods", cfg.methods, "paths", cfg.paths, "http", lis.Addr().String())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var runErr error
	select {
	case s := <-sig:
		log.Info("shutting down", "signal", s.String())
		capt.Close()
		runErr = <-piped
	case runErr = <-piped:
	}
	exp.Close()
	timer := time.AfterFunc(cfg.drain, stopDrain)
	defer timer.Stop()
	if err := <-exported; err != nil {
		log.Warn("exchanges not delivered", "err", err)
	}
	st := exp.Stats()
	log.Info("stopped", "exported", st.Acked, "dropped", st.Dropped, "spooled", st.SpoolExchanges)
	return runErr
}

// openSpool opens --spool-dir with the sanitizer that cleans what goes
// into it: the collector's rules and key, so tokens agree.
func openSpool(cfg config) (*spool.Spool, *sanitize.Sanitizer, error) {
	key, err := sanitize.KeyFromEnvOrFile(cfg.tokenKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--token-key-file: %w", err)
	}
	san, err := sanitize.Load(cfg.sanitizeConfig, key)
	if err != nil {
		return nil, nil, fmt.Errorf("--sanitize-config: %w", err)
	}
	sp, err := spool.Open(cfg.spoolDir, cfg.spoolMaxBytes)
	if err != nil {
		return nil, nil, fmt.Errorf("--spool-dir: %w", err)
	}
	return sp, san, nil
}

// podIndex watches this node's pods when the agent runs in Kubernetes, and
// returns nil elsewhere. The first sync happens in the background: until it
// ends, exchanges carry the pod UID without the pod's name.
func podIndex(ctx context.Context, node string) (*metadata.PodIndex, error) {
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return nil, nil
	}
	if node == "" {
		return nil, errors.New("running in Kubernetes: set --node-name or NODE_NAME (fieldRef spec.nodeName)")
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes config: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	idx, err := metadata.NewPodIndex(cs, node)
	if err != nil {
		return nil, err
	}
	go func() {
		if err := idx.Start(ctx); err != nil {
			slog.Warn("pod index stopped", "component", "metadata", "err", err)
		}
	}()
	return idx, nil
}
