package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// defaultGCPercent is the collector's GOGC unless the environment sets one.
// Ingest allocates ~18 KB per exchange (decoded batches, sanitizer output,
// compressed blobs) and keeps only the batches in flight alive, so the
// default GOGC of 100 collects very often: 400 saves ~10 % of ingest CPU for
// ~100 MB more RSS at full rate (docs/benchmarks/collector.md).
const defaultGCPercent = 400

// cgroupMemoryMax is where cgroup v2 shows the container's memory limit.
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// tuneGC sets the collector's GC defaults for the variables the environment
// leaves unset, and returns the GC percent and memory limit in effect
// (limit 0: none). Under a cgroup memory limit the soft limit is 3/4 of it,
// so the headroom of the higher GOGC makes the GC work harder near the
// limit instead of getting the container killed. Without one it is
// fallback (0: none): GOGC 400 lets a heap whose live part the ingest and
// page bounds hold to a few hundred MB grow to five times that, which is
// the memory a hostile sender would then take.
func tuneGC(memoryMaxFile string, fallback int64) (percent int, limit int64) {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		if memMax := cgroupLimit(memoryMaxFile); memMax > 0 {
			debug.SetMemoryLimit(memMax / 4 * 3)
		} else if fallback > 0 {
			debug.SetMemoryLimit(fallback)
		}
	}
	percent = debug.SetGCPercent(-1)
	debug.SetGCPercent(percent)
	if limit = debug.SetMemoryLimit(-1); limit == 1<<63-1 {
		limit = 0
	}
	return percent, limit
}

// cgroupLimit returns the byte limit in a cgroup v2 memory.max file, or 0
// when there is none ("max", no file, not a number).
func cgroupLimit(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}
