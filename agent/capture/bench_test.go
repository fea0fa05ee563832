package capture

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkNonSocketRead measures what the programs add to a syscall on a
// file that is not a socket: 1-byte reads of /dev/zero by this process
// (not excluded: SelfTGID names no process), interleaved with rounds
// without the programs. It reports ns per read for both and their ratio.
// Run with -benchtime=1x; see docs/benchmarks/capture-kernel.md.
func BenchmarkNonSocketRead(b *testing.B) {
	const reads, rounds = 1_000_000, 5
	f, err := os.Open("/dev/zero")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1)
	loop := func() time.Duration {
		start := time.Now()
		for range reads {
			if _, err := unix.Read(int(f.Fd()), buf); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	var off, on time.Duration
	for range rounds {
		off += loop()
		c, err := Open(Config{SelfTGID: ^uint32(0)})
		if err != nil {
			b.Skipf("open capture: %v", err)
		}
		on += loop()
		c.Close()
	}
	n := float64(reads * rounds)
	b.ReportMetric(float64(off.Nanoseconds())/n, "ns/read-off")
	b.ReportMetric(float64(on.Nanoseconds())/n, "ns/read-on")
	b.ReportMetric(float64(on)/float64(off), "ratio")
}
