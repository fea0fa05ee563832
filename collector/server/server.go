// Package server assembles the collector: the gRPC services, the HTTP
// endpoints for health and metrics, and their shutdown.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/reflection"

	"github.com/reprise-dev/reprise/collector/auth"
	"github.com/reprise-dev/reprise/collector/ingest"
	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/query"
	"github.com/reprise-dev/reprise/collector/store"
	"github.com/reprise-dev/reprise/collector/tail"
	"github.com/reprise-dev/reprise/internal/grpcclient"
	"github.com/reprise-dev/reprise/internal/sanitize"
	"github.com/reprise-dev/reprise/internal/wirecodec"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// shutdownTimeout bounds the graceful stop: agents keep their ingest streams
// open indefinitely, so after this the remaining streams are cut. Batches
// they had not been acked for are resent by the agents.
const shutdownTimeout = 10 * time.Second

// OpenStore opens the store that spec names: a postgres:// URL for the
// shared PostgreSQL store, else a file path for the embedded SQLite store.
func OpenStore(spec string) (store.Store, error) {
	return store.Open(context.Background(), spec)
}

// LoadTLS returns the gRPC server's TLS credentials from PEM files, nil for
// plaintext when certPath is ""; with a client CA, every client must present
// a certificate it signed (mutual TLS).
func LoadTLS(certPath, keyPath, clientCAPath string) (credentials.TransportCredentials, error) {
	if (certPath == "") != (keyPath == "") {
		return nil, errors.New("a certificate and its key go together")
	}
	if certPath == "" {
		if clientCAPath != "" {
			return nil, errors.New("a client CA needs the server's own certificate and key: mutual TLS is TLS first")
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAPath != "" {
		if cfg.ClientCAs, err = grpcclient.CertPool(clientCAPath); err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(cfg), nil
}

// Config is what the collector serves with beyond its store; the zero value
// serves without auth, TLS or retention, with the default sanitizer.
type Config struct {
	Tokens auth.Tokens
	// TLS, when set, serves gRPC over TLS with these credentials.
	TLS credentials.TransportCredentials
	// Sanitizer runs on every ingested exchange; nil means sanitize.Default().
	Sanitizer *sanitize.Sanitizer
	Retention store.Retention
	// RetentionEvery is how often retention runs (default one minute).
	RetentionEvery time.Duration
	// Ingest bounds ingest's memory and streams (zero: the defaults).
	Ingest ingest.Limits
}

// maxConnStreams bounds the concurrent streams of one client connection
// (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS): an agent uses one, a replayer a
// few; 20,000 idle streams on one connection once made 40,000 goroutines.
const maxConnStreams = 64

// NewGRPC returns a gRPC server with IngestService, QueryService and server
// reflection (so grpcurl works without the proto files).
func NewGRPC(st store.Store, m metrics.Metrics, cfg Config) *grpc.Server {
	opts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(grpcclient.MaxMessageBytes),
		grpc.MaxSendMsgSize(grpcclient.MaxMessageBytes),
		grpc.MaxConcurrentStreams(maxConnStreams),
	}, cfg.Tokens.ServerOptions()...)
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(cfg.TLS))
	}
	// Received batches are read into buffers gRPC does not clear first.
	opts = append(opts, experimental.BufferPool(wirecodec.Pool()))
	san := cfg.Sanitizer
	if san == nil {
		san = sanitize.Default()
	}
	hub := tail.NewHub()
	in := ingest.New(st, san, hub, m, cfg.Ingest)
	// A batch waits for its memory before it is decoded; a string that is
	// not UTF-8 is InvalidArgument, not gRPC's Internal for codec errors.
	utf8 := &utf8Codec{CodecV2: in.Codec(wirecodec.Codec())}
	srv := grpc.NewServer(append(opts, utf8.serverOptions()...)...)
	reprisev1.RegisterIngestServiceServer(srv, in)
	reprisev1.RegisterQueryServiceServer(srv, query.New(st, hub, m))
	reflection.Register(srv)
	return srv
}

// RunRetention prunes st by the policy every interval until ctx is done.
func RunRetention(ctx context.Context, st store.Store, policy store.Retention, every time.Duration, m metrics.Metrics) {
	if policy == (store.Retention{}) {
		return
	}
	log := slog.With("component", "retention")
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		n, err := st.Prune(ctx, policy, time.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			m.StoreError("prune")
			log.Error("prune store", "err", err)
		case n > 0:
			m.Pruned(int(n))
			log.Info("pruned store", "exchanges", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// NewHTTP returns the handler for /healthz, /readyz and /metrics.
func NewHTTP(st store.Store, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := st.Ping(ctx); err != nil {
			http.Error(w, "store not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return mux
}

// Serve runs the collector on the listeners until ctx is done or a server
// fails, then stops both. It does not close st: the caller owns it and
// closes it once Serve has returned, when no request can use it any more.
func Serve(ctx context.Context, grpcLis, httpLis net.Listener, st store.Store, cfg Config) error {
	log := slog.With("component", "server")
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.NewPrometheus(reg)
	if cfg.Sanitizer == nil {
		cfg.Sanitizer = sanitize.Default()
	}
	metrics.RegisterRuleCounts(reg, cfg.Sanitizer.Counts)

	grpcSrv := NewGRPC(st, m, cfg)
	retentionCtx, stopRetention := context.WithCancel(ctx)
	retentionDone := make(chan struct{})
	go func() {
		defer close(retentionDone)
		RunRetention(retentionCtx, st, cfg.Retention, cmp.Or(cfg.RetentionEvery, time.Minute), m)
	}()
	// The caller closes st after Serve returns: retention must be over by then.
	defer func() { stopRetention(); <-retentionDone }()
	httpSrv := &http.Server{Handler: NewHTTP(st, reg), ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 2)
	go func() { errc <- grpcSrv.Serve(grpcLis) }()
	go func() { errc <- httpSrv.Serve(httpLis) }()
	log.Info("serving", "grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String())

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-errc:
		serveErr = fmt.Errorf("serve: %w", err)
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		grpcSrv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-shutdownCtx.Done():
		log.Warn("graceful stop timed out, closing remaining streams")
		grpcSrv.Stop()
		<-stopped
	}
	if err := httpSrv.Shutdown(shutdownCtx); err != nil && serveErr == nil {
		serveErr = fmt.Errorf("shut down http: %w", err)
	}
	return serveErr
}
