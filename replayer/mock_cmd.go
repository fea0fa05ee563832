package main

import (
	"context"
	"fmt"
	"io"
)

// mockCommand serves recorded outbound exchanges as an HTTP server.
func mockCommand(_ context.Context, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "replayer mock: not built yet")
	return exitError
}
