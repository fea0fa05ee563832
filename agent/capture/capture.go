//go:build amd64

// Package capture loads reprise's eBPF programs (package bpf), attaches them
// to the socket layer's tracepoints and turns the records of their ring
// buffer into event.Event values.
package capture

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/reprise-dev/reprise/agent/event"
	"github.com/reprise-dev/reprise/bpf"
)

// pollInterval bounds how long a record written without a wakeup
// (BPF_RB_NO_WAKEUP) waits in the ring before Read picks it up.
const pollInterval = 15 * time.Millisecond

// maxSkipping bounds the connections remembered with a skips entry: the
// size of the kernel map.
const maxSkipping = 16384

// Capture is a running capture. It implements event.Source.
type Capture struct {
	coll  *ebpf.Collection
	links []link.Link
	ring  *ring
	dec   *decoder // guarded by mu

	mu        sync.Mutex // serialises Read
	malformed atomic.Uint64

	// skipMu guards skipping: the connections with an entry in the skips
	// map, removed at their close event.
	skipMu   sync.Mutex
	skipping map[event.ConnID]bpf.CaptureSkipTo

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
	cgroups, err := resolveCgroups(cfg.Cgroups)
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
	// The copy of a syscall is a bpf_loop (Linux 5.17).
	if err := features.HaveProgramHelper(ebpf.RawTracepoint, asm.FnLoop); err != nil {
		return nil, fmt.Errorf("the kernel lacks the bpf_loop helper (Linux 5.17 or later) the capture needs: %w", err)
	}

	spec, err := bpf.LoadCapture()
	if err != nil {
		return nil, fmt.Errorf("load capture spec: %w", err)
	}
	spec.Maps[bpf.CaptureMapEvents].MaxEntries = cmp.Or(cfg.RingSize, DefaultRingSize)
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count CPUs: %w", err)
	}
	spec.Maps[bpf.CaptureMapBufs].MaxEntries = uint32(cpus)
	// A wakeup per sixteenth of the ring: each one is a context switch of
	// the agent (and an IPI in the traced process), which under 64 KiB
	// bodies cost more than the parsing; the reader still has fifteen
	// sixteenths of headroom when woken.
	vars := map[string]any{bpf.CaptureVarSelfTgid: cfg.SelfTGID, bpf.CaptureVarSyscallCap: cfg.syscallCap(),
		bpf.CaptureVarWakeupBytes: spec.Maps[bpf.CaptureMapEvents].MaxEntries / 16}
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
	c := &Capture{coll: coll, dec: newDecoder(bootTime()), skipping: map[event.ConnID]bpf.CaptureSkipTo{}}
	if err := c.start(spec, cfg, cgroups); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
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
		if ev.Kind == event.KindClose {
			c.forgetSkip(ev.Conn)
		}
		return ev, nil
	}
}

// Skip tells the kernel that the bytes of connection id's direction d at
// stream positions [from, to) are not needed: they are then counted, not
// copied (events with Skipped set). Bytes already in the ring still come.
func (c *Capture) Skip(id event.ConnID, d event.Direction, from, to uint64) error {
	c.skipMu.Lock()
	defer c.skipMu.Unlock()
	r := c.skipping[id]
	r.From[d&1], r.To[d&1] = from, to
	if len(c.skipping) >= maxSkipping {
		clear(c.skipping) // close events were lost; the kernel's LRU evicts their entries
	}
	key := bpf.CaptureConnKey{Start: id.Start, Tgid: id.TGID, Fd: id.FD}
	if err := c.coll.Maps[bpf.CaptureMapSkips].Put(key, r); err != nil {
		return fmt.Errorf("skip %s %s [%d, %d): %w", id, d, from, to, err)
	}
	c.skipping[id] = r
	return nil
}

// forgetSkip removes the skips entry of a closed connection.
func (c *Capture) forgetSkip(id event.ConnID) {
	c.skipMu.Lock()
	defer c.skipMu.Unlock()
	if _, ok := c.skipping[id]; !ok {
		return
	}
	delete(c.skipping, id)
	key := bpf.CaptureConnKey{Start: id.Start, Tgid: id.TGID, Fd: id.FD}
	_ = c.coll.Maps[bpf.CaptureMapSkips].Delete(key) // the LRU evicts it otherwise
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
		s.CopiedBytes += v.CopiedBytes
		s.SkippedBytes += v.SkippedBytes
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
