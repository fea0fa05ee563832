//go:build amd64

package capture

import (
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkKernelCost measures what the attached programs add to three
// operations of this process (not excluded: SelfTGID names no process),
// each timed in rounds without and with the programs, interleaved:
//   - a 1-byte read of /dev/zero: a data syscall on a file, not a socket;
//   - getppid: a syscall no program is for, which every process on the
//     host makes all the time;
//   - a round trip on a loopback TCP connection, both ends in this process
//     and captured: 200 bytes one way, 300 back.
//
// It reports ns per operation off and on, and their difference. Run with
// -benchtime=1x; see docs/benchmarks/capture-kernel.md.
func BenchmarkKernelCost(b *testing.B) {
	const rounds = 5
	f, err := os.Open("/dev/zero")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	client, server := tcpPair(b)
	defer client.Close()
	defer server.Close()
	one := make([]byte, 1)
	req, resp := make([]byte, 200), make([]byte, 300)
	ops := []struct {
		name string
		n    int
		op   func() error
	}{
		{"read-file", 1_000_000, func() error { _, err := unix.Read(int(f.Fd()), one); return err }},
		{"getppid", 1_000_000, func() error { unix.Getppid(); return nil }},
		{"tcp-roundtrip", 50_000, func() error {
			if _, err := client.Write(req); err != nil {
				return err
			}
			if _, err := io.ReadFull(server, req); err != nil {
				return err
			}
			if _, err := server.Write(resp); err != nil {
				return err
			}
			_, err := io.ReadFull(client, resp)
			return err
		}},
	}
	off := make([]time.Duration, len(ops))
	on := make([]time.Duration, len(ops))
	run := func(into []time.Duration) {
		for i, o := range ops {
			start := time.Now()
			for range o.n {
				if err := o.op(); err != nil {
					b.Fatal(err)
				}
			}
			into[i] += time.Since(start)
		}
	}
	for range rounds {
		run(off)
		c, err := Open(Config{SelfTGID: ^uint32(0)})
		if err != nil {
			b.Skipf("open capture: %v", err)
		}
		go drain(c)
		run(on)
		c.Close()
	}
	for i, o := range ops {
		n := float64(o.n * rounds)
		b.ReportMetric(float64(off[i].Nanoseconds())/n, "ns/"+o.name+"-off")
		b.ReportMetric(float64(on[i].Nanoseconds())/n, "ns/"+o.name+"-on")
		b.ReportMetric(float64((on[i]-off[i]).Nanoseconds())/n, "ns/"+o.name+"-added")
	}
}

// drain reads events until the capture is closed, as the agent would.
func drain(c *Capture) {
	for {
		if _, err := c.Read(); err != nil {
			return
		}
	}
}

func tcpPair(b *testing.B) (client, server net.Conn) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	return client, server
}
