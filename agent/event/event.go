// Package event defines the raw capture events that flow from the kernel
// programs into the agent's userspace pipeline. Everything above this type
// (reassembly, HTTP parsing, export) is tested with fake events, without a
// kernel.
package event

import (
	"fmt"
	"net/netip"
	"time"
)

// Kind is the type of a capture event.
type Kind uint8

const (
	// KindOpen: a connection was accepted or connected.
	KindOpen Kind = 1
	// KindClose: the connection's fd was closed.
	KindClose Kind = 2
	// KindData: bytes moved through the socket in one syscall.
	KindData Kind = 3
)

// Direction of a data event, from the traced process's point of view.
type Direction uint8

const (
	// Ingress: bytes the process read from the socket.
	Ingress Direction = 0
	// Egress: bytes the process wrote to the socket.
	Egress Direction = 1
)

func (d Direction) String() string {
	if d == Ingress {
		return "ingress"
	}
	return "egress"
}

// Role of the traced process on a connection.
type Role uint8

const (
	// RoleUnknown: the connection predates the agent, or its opening was missed.
	RoleUnknown Role = 0
	// RoleServer: the process accepted the connection.
	RoleServer Role = 1
	// RoleClient: the process connected.
	RoleClient Role = 2
)

// ConnID identifies a connection. The creation timestamp makes it survive
// reuse of the same fd (and pid) by a later connection.
type ConnID struct {
	TGID  uint32
	FD    int32
	Start uint64 // kernel monotonic ns when the agent first saw the connection
}

func (c ConnID) String() string {
	return fmt.Sprintf("%d-%d-%x", c.TGID, c.FD, c.Start)
}

// Event is one record from the kernel.
type Event struct {
	Kind Kind
	Conn ConnID
	TID  uint32
	Comm string
	// CgroupID of the process (cgroup v2 inode number).
	CgroupID uint64
	Time     time.Time // wall clock of the syscall's exit
	Role     Role
	Local    netip.AddrPort
	Remote   netip.AddrPort

	// Data events only.
	Dir Direction
	// Pos is the offset in this direction's stream of the first byte the
	// syscall moved; a Pos beyond the end of what was received is a gap.
	Pos uint64
	// Size is how many stream bytes the event covers, [Pos, Pos+Size); Data
	// holds the first len(Data) of them (fewer when the kernel truncated the
	// copy: the rest is lost and shows as a gap).
	Size uint32
	Data []byte
	// Unavailable: the bytes moved but their content never passed through
	// user memory (sendfile), so Data is empty by design, not by loss.
	Unavailable bool
	// Skipped: the bytes were left uncopied on purpose, because the agent
	// said it no longer needs them (the rest of a body past its cap) or
	// they are past the kernel's per-syscall copy cap. Data is empty.
	Skipped bool
	// AfterLoss: the kernel dropped the event before this one in its
	// direction (ring buffer full), so a gap before Pos is lost for good
	// rather than an event still to come from another CPU.
	AfterLoss bool
}

// Source yields events in the order the kernel produced them per CPU.
// Read blocks until an event arrives or the source is closed. An event's
// Data is only valid until the next Read: the source may reuse it.
type Source interface {
	Read() (Event, error)
	Close() error
}
