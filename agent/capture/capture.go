// Package capture loads reprise's eBPF programs (package bpf), attaches them
// to the syscall tracepoints and turns the records of their ring buffer into
// event.Event values.
package capture

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/reprise-dev/reprise/agent/event"
	"github.com/reprise-dev/reprise/bpf"
)

// pollInterval bounds how long a record written without a wakeup
// (BPF_RB_NO_WAKEUP) waits in the ring before Read picks it up.
const pollInterval = 15 * time.Millisecond

// maxPorts is the size of the kernel's port set.
const maxPorts = 256

const tracefsPath = "/sys/kernel/tracing"

// Config selects what is captured.
type Config struct {
	// Ports limits capture to connections whose local or remote port is in
	// the set. Empty captures every TCP connection.
	Ports []uint16
	// SelfTGID is the process whose traffic is never captured, so the agent
	// does not capture its own stream to the collector. 0 means os.Getpid().
	SelfTGID uint32
	// RingSize is the ring buffer size in bytes, a power of two and a
	// multiple of the page size. 0 keeps the default of 16 MiB.
	RingSize uint32
}

// Stats are the drop counters, summed over CPUs since Open.
type Stats struct {
	RingbufFull    uint64 // kernel: events lost because the ring buffer was full
	TruncatedBytes uint64 // kernel: bytes beyond the 64 KiB copied per syscall
	CopyFailed     uint64 // kernel: chunks whose bytes could not be read from user memory
	StashFailed    uint64 // kernel: syscalls lost because their arguments could not be stashed
	ConnMapFull    uint64 // kernel: connections that could not be tracked
	ConnLost       uint64 // kernel: syscalls whose connection was closed while they ran
	Malformed      uint64 // agent: records that did not decode
}

// Capture is a running capture. It implements event.Source.
type Capture struct {
	coll  *ebpf.Collection
	links []link.Link
	rd    *ringbuf.Reader
	boot  time.Time

	mu        sync.Mutex // serialises Read, which reuses rec
	rec       ringbuf.Record
	malformed atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

var _ event.Source = (*Capture)(nil)

// Open loads and attaches the capture programs. It needs root (or
// CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN to mount tracefs).
func Open(cfg Config) (*Capture, error) {
	if len(cfg.Ports) > maxPorts {
		return nil, fmt.Errorf("config: Ports has %d entries, at most %d", len(cfg.Ports), maxPorts)
	}
	if cfg.SelfTGID == 0 {
		cfg.SelfTGID = uint32(os.Getpid())
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock rlimit: %w", err)
	}
	if err := ensureTracefs(); err != nil {
		return nil, err
	}

	spec, err := bpf.LoadCapture()
	if err != nil {
		return nil, fmt.Errorf("load capture spec: %w", err)
	}
	if cfg.RingSize != 0 {
		if cfg.RingSize&(cfg.RingSize-1) != 0 || cfg.RingSize%uint32(os.Getpagesize()) != 0 {
			return nil, fmt.Errorf("config: RingSize %d is not a power of two multiple of the page size", cfg.RingSize)
		}
		spec.Maps[bpf.CaptureMapEvents].MaxEntries = cfg.RingSize
	}
	if err := spec.Variables[bpf.CaptureVarSelfTgid].Set(cfg.SelfTGID); err != nil {
		return nil, fmt.Errorf("set self_tgid: %w", err)
	}
	if len(cfg.Ports) > 0 {
		if err := spec.Variables[bpf.CaptureVarFilterPorts].Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("set filter_ports: %w", err)
		}
	}

	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("load capture programs: %w", err)
	}
	c := &Capture{coll: coll, boot: bootTime()}
	if err := c.start(spec, cfg.Ports); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// start fills the port set before attaching, so no connection is judged
// against an incomplete set.
func (c *Capture) start(spec *ebpf.CollectionSpec, ports []uint16) error {
	for _, p := range ports {
		if err := c.coll.Maps[bpf.CaptureMapPorts].Put(p, uint8(1)); err != nil {
			return fmt.Errorf("add port %d: %w", p, err)
		}
	}
	rd, err := ringbuf.NewReader(c.coll.Maps[bpf.CaptureMapEvents])
	if err != nil {
		return fmt.Errorf("open ring buffer: %w", err)
	}
	c.rd = rd

	names := make([]string, 0, len(spec.Programs))
	for name := range spec.Programs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		// Sections are "tracepoint/<group>/<name>".
		parts := strings.Split(spec.Programs[name].SectionName, "/")
		if len(parts) != 3 || parts[0] != "tracepoint" {
			return fmt.Errorf("attach %s: unexpected section %q", name, spec.Programs[name].SectionName)
		}
		l, err := link.Tracepoint(parts[1], parts[2], c.coll.Programs[name], nil)
		if err != nil {
			return fmt.Errorf("attach %s: %w", parts[2], err)
		}
		c.links = append(c.links, l)
	}
	return nil
}

// Read returns the next event. It blocks until one arrives or the capture is
// closed, in which case the error wraps os.ErrClosed.
func (c *Capture) Read() (event.Event, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		// The kernel writes without waking us, so poll: on a deadline the
		// reader still drains what is in the ring before it reports it.
		c.rd.SetDeadline(time.Now().Add(pollInterval))
		err := c.rd.ReadInto(&c.rec)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue
		case errors.Is(err, ringbuf.ErrClosed):
			return event.Event{}, fmt.Errorf("read capture: %w", os.ErrClosed)
		case err != nil:
			return event.Event{}, fmt.Errorf("read ring buffer: %w", err)
		}
		ev, err := decode(c.rec.RawSample, c.boot)
		if err != nil {
			c.malformed.Add(1)
			continue
		}
		return ev, nil
	}
}

// Stats returns the drop counters.
func (c *Capture) Stats() (Stats, error) {
	var perCPU []bpf.CaptureCounters
	if err := c.coll.Maps[bpf.CaptureMapStats].Lookup(uint32(0), &perCPU); err != nil {
		return Stats{}, fmt.Errorf("read counters: %w", err)
	}
	var s Stats
	for _, v := range perCPU {
		s.RingbufFull += v.RingbufFull
		s.TruncatedBytes += v.TruncatedBytes
		s.CopyFailed += v.CopyFailed
		s.StashFailed += v.StashFailed
		s.ConnMapFull += v.ConnMapFull
		s.ConnLost += v.ConnLost
	}
	s.Malformed = c.malformed.Load()
	return s, nil
}

// Close detaches the programs and makes a blocked Read return.
func (c *Capture) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		for _, l := range c.links {
			if err := l.Close(); err != nil {
				errs = append(errs, fmt.Errorf("detach: %w", err))
			}
		}
		if c.rd != nil {
			if err := c.rd.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close ring buffer: %w", err))
			}
		}
		c.coll.Close()
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// ensureTracefs mounts tracefs when it is missing: attaching a tracepoint
// reads its id from there.
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

// bootTime is the wall clock time of CLOCK_MONOTONIC zero, the clock of
// bpf_ktime_get_ns. The monotonic reading is taken between two wall clock
// readings to halve the error.
func bootTime() time.Time {
	before := time.Now()
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for this clock
	after := time.Now()
	wall := before.Add(after.Sub(before) / 2)
	return wall.Add(-time.Duration(ts.Nano())).Round(0)
}
