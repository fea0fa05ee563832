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
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/reprise-dev/reprise/agent/capture"
	"github.com/reprise-dev/reprise/agent/conntrack"
	"github.com/reprise-dev/reprise/agent/export"
	"github.com/reprise-dev/reprise/agent/metrics"
	"github.com/reprise-dev/reprise/agent/pipeline"
)

type config struct {
	collector  string
	ports      []uint16
	httpListen string
	agentID    string
	bodyCap    int
	drain      time.Duration
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func parseFlags(args []string) (config, error) {
	host, _ := os.Hostname()
	cfg := config{}
	var ports string
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.StringVar(&cfg.collector, "collector", "127.0.0.1:7070", "collector gRPC address")
	fs.StringVar(&ports, "ports", "", "comma-separated ports; capture only connections with one of them as local or remote port (default all)")
	fs.StringVar(&cfg.httpListen, "http-listen", "127.0.0.1:7072", "address for /healthz and /metrics")
	fs.StringVar(&cfg.agentID, "agent-id", host, "agent id recorded in every exchange")
	fs.IntVar(&cfg.bodyCap, "body-cap", conntrack.DefaultBodyCap, "bytes of each body kept; longer bodies are marked truncated")
	fs.DurationVar(&cfg.drain, "drain-timeout", 10*time.Second, "on shutdown, how long to wait for the collector to acknowledge what is pending")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if cfg.ports, err = parsePorts(ports); err != nil {
		return cfg, fmt.Errorf("--ports: %w", err)
	}
	if cfg.bodyCap <= 0 {
		return cfg, fmt.Errorf("--body-cap must be positive, got %d", cfg.bodyCap)
	}
	if cfg.agentID == "" {
		return cfg, errors.New("--agent-id is empty and the host name is unknown")
	}
	return cfg, nil
}

func parsePorts(s string) ([]uint16, error) {
	var ports []uint16
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.ParseUint(f, 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("%q is not a port (1-65535)", f)
		}
		ports = append(ports, uint16(p))
	}
	return ports, nil
}

func run(args []string) int {
	cfg, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 2
	}
	if err := serve(cfg); err != nil {
		slog.Error("agent stopped", "err", err)
		return 2
	}
	return 0
}

func serve(cfg config) error {
	log := slog.With("component", "agent")
	lis, err := net.Listen("tcp", cfg.httpListen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.httpListen, err)
	}
	conn, err := grpc.NewClient(cfg.collector, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("collector %s: %w", cfg.collector, err)
	}
	defer conn.Close()

	capt, err := capture.Open(capture.Config{Ports: cfg.ports})
	if err != nil {
		return fmt.Errorf("open capture: %w", err)
	}
	defer capt.Close()

	exp := export.New(conn, export.Config{AgentID: cfg.agentID, Hostname: cfg.agentID})
	tracker := conntrack.New(conntrack.Config{BodyCap: cfg.bodyCap}, exp.Add)
	pipe := pipeline.New(tracker)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(metrics.NewCollector(metrics.Sources{
		Capture: capt.Stats, Tracker: pipe.Stats, Export: exp.Stats, Pending: exp.Pending,
	}))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
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
	log.Info("capturing", "collector", cfg.collector, "ports", cfg.ports, "http", lis.Addr().String())

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
	log.Info("stopped", "exported", st.Acked, "dropped", st.Dropped)
	return runErr
}
