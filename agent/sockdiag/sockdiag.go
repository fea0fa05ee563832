// Package sockdiag tells which side of a TCP connection a process is on
// from the kernel's socket tables (netlink sock_diag), for connections the
// capture first saw mid-stream, without their accept or connect.
package sockdiag

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/reprise-dev/reprise/agent/event"
)

// listenTTL bounds how stale a namespace's listener set may be: many
// connections found at start-up are resolved with one dump.
const listenTTL = time.Second

// tcpListen is TCP_LISTEN in the kernel's TCP states.
const tcpListen = 10

// Resolver resolves roles in the network namespace of each process. It is
// safe for concurrent use.
type Resolver struct {
	mu         sync.Mutex
	namespaces map[uint64]*namespace // by netns inode
	ephemeral  [2]uint16             // ip_local_port_range
	now        func() time.Time
}

type namespace struct {
	handle    *netlink.Handle
	listeners []netip.AddrPort // unspecified address: all addresses
	at        time.Time
}

// New returns a Resolver. The ephemeral port range is the host's.
func New() *Resolver {
	r := &Resolver{namespaces: map[uint64]*namespace{}, ephemeral: [2]uint16{32768, 60999}, now: time.Now}
	if lo, hi, err := portRange("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		r.ephemeral = [2]uint16{lo, hi}
	}
	return r
}

// Role of process pid on the connection local→remote: server when a socket
// of its namespace listens on the local address and port, client when
// nothing does and the local port is an ephemeral one, else unknown.
func (r *Resolver) Role(pid uint32, local, remote netip.AddrPort) (event.Role, error) {
	ns, err := r.namespace(pid)
	if err != nil {
		return event.RoleUnknown, err
	}
	for _, l := range ns.listeners {
		if l.Port() == local.Port() && (l.Addr().IsUnspecified() || l.Addr() == local.Addr()) {
			return event.RoleServer, nil
		}
	}
	if local.Port() >= r.ephemeral[0] && local.Port() <= r.ephemeral[1] {
		return event.RoleClient, nil
	}
	return event.RoleUnknown, nil
}

// namespace returns the listener set of pid's network namespace, dumping
// it again when older than listenTTL.
func (r *Resolver) namespace(pid uint32) (*namespace, error) {
	h, err := netns.GetFromPid(int(pid))
	if err != nil {
		return nil, fmt.Errorf("network namespace of pid %d: %w", pid, err)
	}
	defer h.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		return nil, fmt.Errorf("stat network namespace of pid %d: %w", pid, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ns := r.namespaces[st.Ino]
	if ns != nil && r.now().Sub(ns.at) < listenTTL {
		return ns, nil
	}
	if ns == nil {
		nh, err := netlink.NewHandleAt(h, unix.NETLINK_SOCK_DIAG)
		if err != nil {
			return nil, fmt.Errorf("sock_diag in network namespace of pid %d: %w", pid, err)
		}
		ns = &namespace{handle: nh}
		r.namespaces[st.Ino] = ns
	}
	ns.listeners = ns.listeners[:0]
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := ns.handle.SocketDiagTCP(family)
		// The dump of a busy namespace may be cut short; use what came.
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("list TCP sockets of pid %d: %w", pid, err)
		}
		for _, s := range socks {
			if s.State != tcpListen {
				continue
			}
			addr, ok := netip.AddrFromSlice(s.ID.Source)
			if !ok {
				continue
			}
			ns.listeners = append(ns.listeners, netip.AddrPortFrom(addr.Unmap(), s.ID.SourcePort))
		}
	}
	ns.at = r.now()
	return ns, nil
}

// Close releases the netlink sockets.
func (r *Resolver) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ino, ns := range r.namespaces {
		ns.handle.Close()
		delete(r.namespaces, ino)
	}
}

func portRange(path string) (lo, hi uint16, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("%s: want two ports, got %q", path, b)
	}
	l, err1 := strconv.ParseUint(f[0], 10, 16)
	h, err2 := strconv.ParseUint(f[1], 10, 16)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	return uint16(l), uint16(h), nil
}
