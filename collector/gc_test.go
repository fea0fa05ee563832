package main

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	dir := t.TempDir()
	for _, tc := range []struct {
		name         string
		gogc, memlim string // "" unset
		memoryMax    string // "" no file
		wantPercent  int
		wantLimit    int64
	}{
		{name: "defaults, no cgroup limit", memoryMax: "max\n", wantPercent: defaultGCPercent, wantLimit: 512 << 20},
		{name: "no cgroup file", wantPercent: defaultGCPercent, wantLimit: 512 << 20},
		{name: "cgroup limit", memoryMax: "1073741824\n", wantPercent: defaultGCPercent, wantLimit: 805306368},
		{name: "GOGC set", gogc: "150", memoryMax: "max", wantPercent: 150, wantLimit: 512 << 20},
		{name: "GOMEMLIMIT set", memlim: "100MiB", memoryMax: "1073741824", wantPercent: defaultGCPercent, wantLimit: 100 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The runtime reads GOGC and GOMEMLIMIT at start: set what it would have.
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(1<<63 - 1)
			setenv(t, "GOGC", tc.gogc)
			if tc.gogc != "" {
				debug.SetGCPercent(150)
			}
			setenv(t, "GOMEMLIMIT", tc.memlim)
			if tc.memlim != "" {
				debug.SetMemoryLimit(100 << 20)
			}
			path := filepath.Join(dir, "none")
			if tc.memoryMax != "" {
				path = filepath.Join(dir, "memory.max")
				if err := os.WriteFile(path, []byte(tc.memoryMax), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			percent, limit := tuneGC(path, 512<<20)
			if percent != tc.wantPercent || limit != tc.wantLimit {
				t.Errorf("tuneGC = GOGC %d, limit %d; want %d, %d", percent, limit, tc.wantPercent, tc.wantLimit)
			}
		})
	}
}

// setenv sets an environment variable for the test, or unsets it for "".
func setenv(t *testing.T, key, value string) {
	t.Setenv(key, value) // restored after the test
	if value == "" {
		os.Unsetenv(key)
	}
}
