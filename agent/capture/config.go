package capture

import (
	"errors"
	"fmt"
	"math"
	"os"
)

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
	// BodyCap is the body bytes the agent keeps per message (0: 1 MiB). The
	// kernel copies at most BodyCap plus HeadRoom bytes of the start of one
	// syscall and its last 64 KiB, and skips the middle: no message needs
	// more of one body, and the next message may start in the last bytes.
	BodyCap int
	// RingSize is the ring buffer size in bytes, a power of two and a
	// multiple of the page size. 0 keeps DefaultRingSize.
	RingSize uint32
}

// Stats are the drop counters, summed over CPUs since Open. Every lost
// data byte is in one of the *Bytes counters and shows as a gap in the
// stream positions.
type Stats struct {
	RingbufFull      uint64 // kernel: events lost because the ring buffer was full
	RingbufFullBytes uint64 // kernel: stream bytes those events covered
	TruncatedBytes   uint64 // kernel: bytes of iovec entries that could not be read
	CopyFailed       uint64 // kernel: events with bytes that could not be read from user memory
	CopyFailedBytes  uint64 // kernel: those bytes
	ConnMapFull      uint64 // kernel: connections that could not be tracked
	UnavailableBytes uint64 // kernel: bytes that moved outside user memory (sendfile, splice, io_uring, 32-bit syscalls): counted, never copied
	Malformed        uint64 // agent: records that did not decode
	// Not drops: what the kernel copied into the ring, and what it left
	// in user memory on purpose (past SkipTo or the per-syscall cap).
	CopiedBytes  uint64
	SkippedBytes uint64
}

// DefaultRingSize is the ring buffer's size unless Config.RingSize says
// otherwise: mapped once, it counts once in the agent's RSS.
const DefaultRingSize = 32 << 20

// HeadRoom is what the kernel copies of a syscall beyond Config.BodyCap:
// the head of a message (http1.DefaultMaxHeaderBytes).
const HeadRoom = 64 << 10

// syscallCap is what the kernel copies of one syscall at most.
func (cfg Config) syscallCap() uint32 {
	bodyCap := cfg.BodyCap
	if bodyCap <= 0 {
		bodyCap = 1 << 20
	}
	return uint32(bodyCap + HeadRoom)
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
	if cfg.BodyCap < 0 || cfg.BodyCap > 1<<30 {
		return fmt.Errorf("config: BodyCap %d is outside [0, 1 GiB]", cfg.BodyCap)
	}
	if math.IsNaN(cfg.SampleRate) || cfg.SampleRate < 0 || cfg.SampleRate > 1 {
		return fmt.Errorf("config: SampleRate %v is outside (0, 1]", cfg.SampleRate)
	}
	if cfg.RingSize != 0 && (cfg.RingSize&(cfg.RingSize-1) != 0 || cfg.RingSize%uint32(os.Getpagesize()) != 0) {
		return fmt.Errorf("config: RingSize %d is not a power of two multiple of the page size", cfg.RingSize)
	}
	return nil
}
