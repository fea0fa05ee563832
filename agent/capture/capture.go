// Package capture loads reprise's eBPF programs (package bpf), attaches them
// to the socket layer's tracepoints and turns the records of their ring
// buffer into event.Event values.
package capture

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/reprise-dev/reprise/agent/event"
	"github.com/reprise-dev/reprise/bpf"
)

// pollInterval bounds how long a record written without a wakeup
// (BPF_RB_NO_WAKEUP) waits in the ring before Read picks it up.
const pollInterval = 15 * time.Millisecond

// maxPorts is the size of the kernel's port set, maxSetSize that of its
// pid and cgroup sets.
const (
	maxPorts   = 256
	maxSetSize = 1024
)

// Config selects what is captured. The filters combine: a connection is
// captured when it passes every one that is set.
type Config struct {
	// Ports limits capture to connections whose local or remote port is in
	// the set. Empty captures every TCP connection.
	Ports []uint16
	// Pids limits capture to these processes (host-namespace tgids).
	Pids []uint32
	// Cgroups limits capture to processes in these cgroup v2 groups or
	// their descendants at Open: paths (absolute, or relative to
	// /sys/fs/cgroup) or container ids (full, or a prefix of 12 or more hex
	// digits) looked up by name under /sys/fs/cgroup.
	Cgroups []string
	// SampleRate is the share of connections captured, 0 < r <= 1; 0 means
	// 1. The choice is per connection: each is captured whole or not at all.
	SampleRate float64
	// SelfTGID is the process whose traffic is never captured, so the agent
	// does not capture its own stream to the collector. 0 means os.Getpid().
	SelfTGID uint32
	// RingSize is the ring buffer size in bytes, a power of two and a
	// multiple of the page size. 0 keeps the default of 16 MiB.
	RingSize uint32
}

// Stats are the drop counters, summed over CPUs since Open. Every lost
// data byte is in one of the *Bytes counters and shows as a gap in the
// stream positions.
type Stats struct {
	RingbufFull      uint64 // kernel: events lost because the ring buffer was full
	RingbufFullBytes uint64 // kernel: stream bytes those events covered
	TruncatedBytes   uint64 // kernel: bytes past the 64 KiB or 128 iovec steps copied per syscall (or message of a mmsg call)
	CopyFailed       uint64 // kernel: events with bytes that could not be read from user memory
	CopyFailedBytes  uint64 // kernel: those bytes
	ConnMapFull      uint64 // kernel: connections that could not be tracked
	UnavailableBytes uint64 // kernel: bytes that moved outside user memory (sendfile, splice, io_uring, 32-bit syscalls): counted, never copied
	Malformed        uint64 // agent: records that did not decode
}

// Capture is a running capture. It implements event.Source.
type Capture struct {
	coll  *ebpf.Collection
	links []link.Link
	ring  *ring
	dec   *decoder // guarded by mu

	mu        sync.Mutex // serialises Read
	malformed atomic.Uint64
	roles     *roles // guarded by mu

	closeOnce sync.Once
	closeErr  error
}

var _ event.Source = (*Capture)(nil)

// Open loads and attaches the capture programs. It needs root (or
// CAP_BPF and CAP_PERFMON). Raw tracepoints are attached by name: tracefs
// need not be mounted.
func Open(cfg Config) (*Capture, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cgroups, err := resolveCgroups(cgroupRoot, cfg.Cgroups)
	if err != nil {
		return nil, err
	}
	if len(cgroups) > maxSetSize {
		return nil, fmt.Errorf("config: Cgroups name %d cgroups with their descendants, at most %d", len(cgroups), maxSetSize)
	}
	if cfg.SelfTGID == 0 {
		cfg.SelfTGID = uint32(os.Getpid())
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock rlimit: %w", err)
	}

	spec, err := bpf.LoadCapture()
	if err != nil {
		return nil, fmt.Errorf("load capture spec: %w", err)
	}
	if cfg.RingSize != 0 {
		spec.Maps[bpf.CaptureMapEvents].MaxEntries = cfg.RingSize
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count CPUs: %w", err)
	}
	spec.Maps[bpf.CaptureMapBufs].MaxEntries = uint32(cpus)
	vars := map[string]any{bpf.CaptureVarSelfTgid: cfg.SelfTGID}
	if len(cfg.Ports) > 0 {
		vars[bpf.CaptureVarFilterPorts] = uint8(1)
	}
	if len(cfg.Pids) > 0 {
		vars[bpf.CaptureVarFilterPids] = uint8(1)
	}
	if len(cfg.Cgroups) > 0 {
		vars[bpf.CaptureVarFilterCgroups] = uint8(1)
	}
	if cfg.SampleRate > 0 && cfg.SampleRate < 1 {
		vars[bpf.CaptureVarSampling] = uint8(1)
		// At least 1 so a tiny rate still captures now and then.
		vars[bpf.CaptureVarSampleThreshold] = uint32(max(1, cfg.SampleRate*(1<<32)))
	}
	for name, v := range vars {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}

	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("load capture programs: %w", err)
	}
	c := &Capture{coll: coll, dec: newDecoder(bootTime()), roles: newRoles()}
	if err := c.start(spec, cfg, cgroups); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// validate checks cfg before anything is loaded; errors name the field.
func (cfg Config) validate() error {
	if len(cfg.Ports) > maxPorts {
		return fmt.Errorf("config: Ports has %d entries, at most %d", len(cfg.Ports), maxPorts)
	}
	if len(cfg.Pids) > maxSetSize {
		return fmt.Errorf("config: Pids has %d entries, at most %d", len(cfg.Pids), maxSetSize)
	}
	for _, p := range cfg.Pids {
		if p == 0 {
			return errors.New("config: Pids contains 0, which is no process")
		}
	}
	if math.IsNaN(cfg.SampleRate) || cfg.SampleRate < 0 || cfg.SampleRate > 1 {
		return fmt.Errorf("config: SampleRate %v is outside (0, 1]", cfg.SampleRate)
	}
	if cfg.RingSize != 0 && (cfg.RingSize&(cfg.RingSize-1) != 0 || cfg.RingSize%uint32(os.Getpagesize()) != 0) {
		return fmt.Errorf("config: RingSize %d is not a power of two multiple of the page size", cfg.RingSize)
	}
	return nil
}

// start fills the filter sets before attaching, so no connection is judged
// against an incomplete set.
func (c *Capture) start(spec *ebpf.CollectionSpec, cfg Config, cgroups []uint64) error {
	for _, p := range cfg.Ports {
		if err := c.coll.Maps[bpf.CaptureMapPorts].Put(p, uint8(1)); err != nil {
			return fmt.Errorf("add port %d: %w", p, err)
		}
	}
	for _, p := range cfg.Pids {
		if err := c.coll.Maps[bpf.CaptureMapPids].Put(p, uint8(1)); err != nil {
			return fmt.Errorf("add pid %d: %w", p, err)
		}
	}
	for _, id := range cgroups {
		if err := c.coll.Maps[bpf.CaptureMapCgroups].Put(id, uint8(1)); err != nil {
			return fmt.Errorf("add cgroup %d: %w", id, err)
		}
	}
	events := c.coll.Maps[bpf.CaptureMapEvents]
	r, err := newRing(events.FD(), int(events.MaxEntries()))
	if err != nil {
		return fmt.Errorf("open ring buffer: %w", err)
	}
	c.ring = r

	names := make([]string, 0, len(spec.Programs))
	for name := range spec.Programs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		// Sections are "raw_tracepoint/<tracepoint>".
		tp, ok := strings.CutPrefix(spec.Programs[name].SectionName, "raw_tracepoint/")
		if !ok {
			return fmt.Errorf("attach %s: unexpected section %q", name, spec.Programs[name].SectionName)
		}
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: c.coll.Programs[name]})
		if err != nil {
			return fmt.Errorf("attach %s: %w", tp, err)
		}
		c.links = append(c.links, l)
	}
	return nil
}

// Read returns the next event. It blocks until one arrives or the capture is
// closed, in which case the error wraps os.ErrClosed. The event's Data is
// the kernel's record in place, valid until the next Read.
func (c *Capture) Read() (event.Event, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		// The kernel writes without waking us, so poll.
		raw, err := c.ring.read(pollInterval)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue
		case errors.Is(err, os.ErrClosed):
			return event.Event{}, fmt.Errorf("read capture: %w", os.ErrClosed)
		case err != nil:
			return event.Event{}, fmt.Errorf("read ring buffer: %w", err)
		}
		ev, err := c.dec.decode(raw)
		if err != nil {
			c.malformed.Add(1)
			continue
		}
		if ev.Role == event.RoleUnknown {
			ev.Role = c.roles.role(ev)
		}
		return ev, nil
	}
}

// Unread returns the bytes written to the ring buffer and not read yet.
func (c *Capture) Unread() int64 {
	if c.ring == nil {
		return 0
	}
	return c.ring.unread()
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
		s.RingbufFullBytes += v.RingbufFullBytes
		s.TruncatedBytes += v.TruncatedBytes
		s.CopyFailed += v.CopyFailed
		s.CopyFailedBytes += v.CopyFailedBytes
		s.ConnMapFull += v.ConnMapFull
		s.UnavailableBytes += v.UnavailableBytes
	}
	s.Malformed = c.malformed.Load()
	return s, nil
}

// drainTimeout bounds how long Close waits for Read to take the records
// left in the ring.
const drainTimeout = time.Second

// Close detaches the programs, gives a Read running on another goroutine
// up to drainTimeout to take the records they left in the ring (at
// shutdown they complete exchanges), and makes a blocked Read return.
func (c *Capture) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		for _, l := range c.links {
			if err := l.Close(); err != nil {
				errs = append(errs, fmt.Errorf("detach: %w", err))
			}
		}
		for deadline := time.Now().Add(drainTimeout); c.Unread() > 0 && time.Now().Before(deadline); {
			time.Sleep(pollInterval)
		}
		if c.ring != nil {
			if err := c.ring.close(); err != nil {
				errs = append(errs, fmt.Errorf("close ring buffer: %w", err))
			}
		}
		c.coll.Close()
		if c.roles != nil {
			c.roles.close()
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
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
