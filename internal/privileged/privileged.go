// Package privileged lets kernel-facing tests skip where root or the
// kernel feature is truly missing, and fail instead in CI, which sets
// REPRISE_REQUIRE_PRIVILEGED=1 so that such a test can never pass by skipping.
package privileged

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// EnvRequire names the variable that turns skips into failures.
const EnvRequire = "REPRISE_REQUIRE_PRIVILEGED"

// SkipOrFail skips t with reason, or fails it when privileged tests are required.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("%s=1 but: %s", EnvRequire, reason)
	}
	t.Skip(reason)
}

// SkipMissingFeature skips t because the machine truly lacks a kernel or
// CPU feature the test exercises (32-bit syscalls, the kTLS module). It
// skips in CI too, with the reason printed: machines differ between runs,
// and only missing root or missing basic eBPF support may fail a run.
func SkipMissingFeature(t testing.TB, reason string) {
	t.Helper()
	t.Skip("machine lacks a feature: " + reason)
}

// RequireRoot skips (or fails) t unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "loading eBPF programs needs root")
	}
}

// CheckOpen skips (or fails) t when err says the kernel lacks what the
// capture needs, and fails it on any other error.
func CheckOpen(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, os.ErrPermission) || errors.Is(err, os.ErrNotExist) {
		SkipOrFail(t, fmt.Sprintf("eBPF tracepoints unavailable: %v", err))
	}
	if err != nil {
		t.Fatalf("open capture: %v", err)
	}
}
