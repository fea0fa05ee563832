package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/reprise-dev/reprise/agent/event"
)

// Layout of struct event in bpf/capture.c (little endian: the programs are
// built for amd64 only). decode_test.go checks it against the generated Go
// struct, so a change on the C side fails the unit tests.
const (
	offTS     = 0
	offStart  = 8
	offPos    = 16
	offTGID   = 24
	offTID    = 28
	offFD     = 32
	offSize   = 36
	offLen    = 40
	offLPort  = 44
	offRPort  = 46
	offLAddr  = 48
	offRAddr  = 64
	offComm   = 80
	offKind   = 96
	offRole   = 97
	offDir    = 98
	offFlags  = 99
	offCgroup = 104
	headerLen = 112
)

// Bits of enum flag.
const (
	flagUnavailable = 1
	flagAfterLoss   = 2
	flagSkipped     = 4
	// flagsNoPayload are the flags of events that carry none.
	flagsNoPayload = flagUnavailable | flagSkipped
)

var errMalformed = errors.New("malformed record")

// maxComms bounds the process names a decoder keeps.
const maxComms = 1024

// decoder turns ring buffer records into events. It is not safe for
// concurrent use.
type decoder struct {
	boot time.Time // wall clock time of kernel monotonic time zero
	// comms interns process names: every event carries one, and a few
	// processes make most of them.
	comms map[string]string
}

func newDecoder(boot time.Time) *decoder {
	return &decoder{boot: boot, comms: make(map[string]string)}
}

// decode turns one ring buffer record into an event. Data points into raw,
// which the reader reuses at the next read. A record may be longer than its
// header and payload: the kernel reserves records in a few size classes.
func (d *decoder) decode(raw []byte) (event.Event, error) {
	if len(raw) < headerLen {
		return event.Event{}, fmt.Errorf("%w: %d bytes, header is %d", errMalformed, len(raw), headerLen)
	}
	le := binary.LittleEndian
	n := le.Uint32(raw[offLen:])
	if uint64(n) > uint64(len(raw)-headerLen) {
		return event.Event{}, fmt.Errorf("%w: payload length %d, record has %d", errMalformed, n, len(raw)-headerLen)
	}
	ev := event.Event{
		Kind: event.Kind(raw[offKind]),
		Conn: event.ConnID{
			TGID:  le.Uint32(raw[offTGID:]),
			FD:    int32(le.Uint32(raw[offFD:])),
			Start: le.Uint64(raw[offStart:]),
		},
		TID:      le.Uint32(raw[offTID:]),
		Comm:     d.comm(raw[offComm : offComm+16]),
		CgroupID: le.Uint64(raw[offCgroup:]),
		Time:     d.boot.Add(time.Duration(le.Uint64(raw[offTS:]))),
		Role:     event.Role(raw[offRole]),
		Local:    addrPort(raw[offLAddr:offLAddr+16], le.Uint16(raw[offLPort:])),
		Remote:   addrPort(raw[offRAddr:offRAddr+16], le.Uint16(raw[offRPort:])),
	}
	if ev.Role > event.RoleClient {
		return event.Event{}, fmt.Errorf("%w: role %d", errMalformed, ev.Role)
	}
	switch ev.Kind {
	case event.KindOpen, event.KindClose:
		if n != 0 || raw[offFlags] != 0 {
			return event.Event{}, fmt.Errorf("%w: %d payload bytes on kind %d", errMalformed, n, ev.Kind)
		}
	case event.KindData:
		ev.Dir = event.Direction(raw[offDir])
		ev.Pos = le.Uint64(raw[offPos:])
		ev.Size = le.Uint32(raw[offSize:])
		if ev.Dir > event.Egress {
			return event.Event{}, fmt.Errorf("%w: direction %d", errMalformed, ev.Dir)
		}
		if n > ev.Size {
			return event.Event{}, fmt.Errorf("%w: %d payload bytes for size %d", errMalformed, n, ev.Size)
		}
		flags := raw[offFlags]
		if flags&^(flagUnavailable|flagAfterLoss|flagSkipped) != 0 || flags&flagsNoPayload != 0 && n != 0 ||
			flags&flagsNoPayload == flagsNoPayload {
			return event.Event{}, fmt.Errorf("%w: flags %#x with %d payload bytes", errMalformed, flags, n)
		}
		ev.Unavailable = flags&flagUnavailable != 0
		ev.AfterLoss = flags&flagAfterLoss != 0
		ev.Skipped = flags&flagSkipped != 0
		if n > 0 {
			ev.Data = raw[headerLen : headerLen+n : headerLen+n]
		}
	default:
		return event.Event{}, fmt.Errorf("%w: kind %d", errMalformed, ev.Kind)
	}
	return ev, nil
}

// addrPort unmaps v4-mapped addresses so IPv4 peers print as 127.0.0.1.
func addrPort(b []byte, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b)).Unmap(), port)
}

// comm returns the NUL-terminated name in b, interned.
func (d *decoder) comm(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if s, ok := d.comms[string(b)]; ok {
		return s
	}
	if len(d.comms) >= maxComms {
		clear(d.comms)
	}
	s := string(b)
	d.comms[s] = s
	return s
}
