package capture

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/reprise-dev/reprise/bpf"
	"github.com/reprise-dev/reprise/internal/privileged"
)

// The benchmarks below measure the kernel side only. Each runs a loop in
// short rounds: without programs, with this tree's programs and, when
// REPRISE_BENCH_BASELINE names another capture_bpfel.o (e.g. an older
// revision's), with those, in turn. This process is traced (the agent's
// tgid is set to none). They report the median CPU ns per operation of
// each and the ratios to "off": CPU time, not wall time, so that a shared,
// loaded machine (time spent waiting for a CPU) moves the figures less.
// Run with -benchtime=1x; see scripts/bench-capture-kernel.sh and
// docs/benchmarks/capture-kernel.md.
const benchRounds = 21

// cpuTime reads clock (CLOCK_THREAD_CPUTIME_ID or CLOCK_PROCESS_CPUTIME_ID).
func cpuTime(b *testing.B, clock int32) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// threadLoop runs n calls of f on one locked thread and returns the
// thread's CPU time, user and system.
func threadLoop(b *testing.B, n int, f func()) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := cpuTime(b, unix.CLOCK_THREAD_CPUTIME_ID)
	for range n {
		f()
	}
	return cpuTime(b, unix.CLOCK_THREAD_CPUTIME_ID) - start
}

// progs is a loaded set of capture programs, attached only during its rounds.
type progs struct {
	name  string
	spec  *ebpf.CollectionSpec
	coll  *ebpf.Collection
	ring  *ring
	links []link.Link
	done  chan struct{}
}

func loadProgs(b *testing.B, name string, spec *ebpf.CollectionSpec) *progs {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		b.Fatal(err)
	}
	spec.Maps[bpf.CaptureMapBufs].MaxEntries = uint32(cpus)
	if err := spec.Variables[bpf.CaptureVarSelfTgid].Set(^uint32(0)); err != nil {
		b.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		b.Fatalf("load %s programs: %v", name, err)
	}
	events := coll.Maps[bpf.CaptureMapEvents]
	r, err := newRing(events.FD(), int(events.MaxEntries()))
	if err != nil {
		b.Fatal(err)
	}
	p := &progs{name: name, spec: spec, coll: coll, ring: r, done: make(chan struct{})}
	b.Cleanup(p.close)
	// Drained all along, as the agent would; idle, this is a 15 ms poll.
	go func() {
		defer close(p.done)
		for {
			if _, err := r.read(pollInterval); errors.Is(err, os.ErrClosed) {
				return
			}
		}
	}()
	return p
}

// attach attaches every program: raw tracepoints, or, for an older
// object, syscall tracepoints ("tracepoint/<group>/<name>").
func (p *progs) attach(b *testing.B) {
	for name, ps := range p.spec.Programs {
		var l link.Link
		var err error
		if tp, ok := strings.CutPrefix(ps.SectionName, "raw_tracepoint/"); ok {
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: p.coll.Programs[name]})
		} else if parts := strings.Split(ps.SectionName, "/"); len(parts) == 3 && parts[0] == "tracepoint" {
			l, err = link.Tracepoint(parts[1], parts[2], p.coll.Programs[name], nil)
		} else {
			b.Fatalf("%s: unexpected section %q", p.name, ps.SectionName)
		}
		if err != nil {
			b.Fatalf("%s: attach %s: %v", p.name, name, err)
		}
		p.links = append(p.links, l)
	}
}

func (p *progs) detach() {
	for _, l := range p.links {
		l.Close()
	}
	p.links = nil
}

func (p *progs) close() {
	p.detach()
	p.ring.close()
	<-p.done
	p.coll.Close()
}

// compare runs loop (n operations) benchRounds times per variant, the
// variants interleaved.
func compare(b *testing.B, unit string, n int, loop func() time.Duration) {
	privileged.RequireRoot(b)
	if err := rlimit.RemoveMemlock(); err != nil {
		b.Fatal(err)
	}
	// The baseline may use syscall tracepoints, which need tracefs.
	if err := ensureTracefs(); err != nil {
		b.Fatal(err)
	}
	spec, err := bpf.LoadCapture()
	if err != nil {
		b.Fatal(err)
	}
	variants := []*progs{nil, loadProgs(b, "on", spec)}
	if path := os.Getenv("REPRISE_BENCH_BASELINE"); path != "" {
		base, err := ebpf.LoadCollectionSpec(path)
		if err != nil {
			b.Fatal(err)
		}
		variants = append(variants, loadProgs(b, "base", base))
	}
	times := make([][]time.Duration, len(variants))
	for r := range benchRounds {
		for i := range variants {
			// Rotate the order so no variant always follows another.
			v := (i + r) % len(variants)
			p := variants[v]
			if p != nil {
				p.attach(b)
			}
			times[v] = append(times[v], loop())
			if p != nil {
				p.detach()
			}
		}
	}
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Nanoseconds()) / float64(n)
	}
	off := median(times[0])
	b.ReportMetric(off, "ns/"+unit+"-off")
	for i, p := range variants[1:] {
		m := median(times[i+1])
		b.ReportMetric(m, "ns/"+unit+"-"+p.name)
		b.ReportMetric(m/off, "ratio-"+p.name)
	}
}

// BenchmarkNonSocketRead: 1-byte reads of /dev/zero, a syscall the
// programs trace on an fd that is not a socket.
func BenchmarkNonSocketRead(b *testing.B) {
	f, err := os.Open("/dev/zero")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1)
	fd := int(f.Fd())
	const reads = 100_000
	compare(b, "read", reads, func() time.Duration {
		return threadLoop(b, reads, func() {
			if _, err := unix.Read(fd, buf); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkUntracedSyscall: getppid, a syscall the programs do not trace;
// what attaching them costs every process on the host per syscall.
func BenchmarkUntracedSyscall(b *testing.B) {
	const calls = 200_000
	compare(b, "call", calls, func() time.Duration {
		return threadLoop(b, calls, func() { unix.Getppid() })
	})
}

// BenchmarkSocketRoundTrip: a keep-alive ping-pong of a 200-byte request
// and a 300-byte response over loopback TCP between two goroutines, both
// ends traced. CPU time of the whole process: both ends, the Go runtime
// and the ring drain.
func BenchmarkSocketRoundTrip(b *testing.B) {
	const trips = 3000
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, resp := make([]byte, 200), make([]byte, 300)
		for {
			if _, err := io.ReadFull(c, req); err != nil {
				return
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req, resp := make([]byte, 200), make([]byte, 300)
	compare(b, "trip", trips, func() time.Duration {
		start := cpuTime(b, unix.CLOCK_PROCESS_CPUTIME_ID)
		for range trips {
			if _, err := c.Write(req); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, resp); err != nil {
				b.Fatal(err)
			}
		}
		return cpuTime(b, unix.CLOCK_PROCESS_CPUTIME_ID) - start
	})
}

const tracefsPath = "/sys/kernel/tracing"

// ensureTracefs mounts tracefs when it is missing: attaching a syscall
// tracepoint (a baseline's) reads its id from there.
func ensureTracefs() error {
	if isTracefs(tracefsPath) || isTracefs("/sys/kernel/debug/tracing") {
		return nil
	}
	err := unix.Mount("tracefs", tracefsPath, "tracefs", 0, "")
	if err != nil && !isTracefs(tracefsPath) { // EBUSY: mounted meanwhile
		return fmt.Errorf("tracefs is not mounted and mounting it at %s needs CAP_SYS_ADMIN in the host mount namespace: %w", tracefsPath, err)
	}
	return nil
}

func isTracefs(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.TRACEFS_MAGIC
}
