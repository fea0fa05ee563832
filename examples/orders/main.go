// Command orders is a small in-memory order API used by the reprise demo:
// record traffic against --version v1, then replay it against v2 to see the
// replayer catch v2's deliberate change.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/reprise-dev/reprise/examples/orders/api"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	version := flag.String("version", api.V1, "behaviour to serve: v1 or v2 (v2 has one deliberate change)")
	noisy := flag.Bool("noisy", false, "add timestamps, random references and request ids to responses, as real services do")
	flag.Parse()

	var opts []api.Option
	if *noisy {
		opts = append(opts, api.Noisy())
	}
	handler, err := api.New(*version, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "orders: --version:", err)
		os.Exit(2)
	}
	log := slog.With("component", "orders")
	srv := &http.Server{Addr: *listen, Handler: handler, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("listening", "addr", *listen, "version", *version)

	select {
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "orders: serve:", err)
		os.Exit(2)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown", "err", err)
	}
}
