//go:build amd64

package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/reprise-dev/reprise/agent/event"
	"github.com/reprise-dev/reprise/bpf"
)

// The decoder's offsets must match the struct the C side writes.
func TestLayoutMatchesBPF(t *testing.T) {
	var e bpf.CaptureEvent
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"ts", unsafe.Offsetof(e.Ts), offTS},
		{"start", unsafe.Offsetof(e.Start), offStart},
		{"pos", unsafe.Offsetof(e.Pos), offPos},
		{"tgid", unsafe.Offsetof(e.Tgid), offTGID},
		{"tid", unsafe.Offsetof(e.Tid), offTID},
		{"fd", unsafe.Offsetof(e.Fd), offFD},
		{"size", unsafe.Offsetof(e.Size), offSize},
		{"len", unsafe.Offsetof(e.Len), offLen},
		{"lport", unsafe.Offsetof(e.Lport), offLPort},
		{"rport", unsafe.Offsetof(e.Rport), offRPort},
		{"laddr", unsafe.Offsetof(e.Laddr), offLAddr},
		{"raddr", unsafe.Offsetof(e.Raddr), offRAddr},
		{"comm", unsafe.Offsetof(e.Comm), offComm},
		{"kind", unsafe.Offsetof(e.Kind), offKind},
		{"role", unsafe.Offsetof(e.Role), offRole},
		{"dir", unsafe.Offsetof(e.Dir), offDir},
		{"flags", unsafe.Offsetof(e.Flags), offFlags},
		{"cgroup", unsafe.Offsetof(e.Cgroup), offCgroup},
		{"size of header", unsafe.Sizeof(e), headerLen},
	} {
		if c.got != c.want {
			t.Errorf("%s: generated struct has %d, decoder uses %d", c.name, c.got, c.want)
		}
	}
}

// record is a raw record as the kernel writes it.
type record struct {
	ts, start, pos   uint64
	tgid, tid        uint32
	fd               int32
	size             uint32
	lport, rport     uint16
	laddr, raddr     [16]byte
	comm             string
	kind, role, dir  uint8
	flags            uint8
	cgroup           uint64
	data             []byte
	lenField         *uint32 // overrides len(data) in the header
	truncateHeaderTo int
}

func (r record) bytes() []byte {
	b := make([]byte, headerLen, headerLen+len(r.data))
	le := binary.LittleEndian
	le.PutUint64(b[offTS:], r.ts)
	le.PutUint64(b[offStart:], r.start)
	le.PutUint64(b[offPos:], r.pos)
	le.PutUint32(b[offTGID:], r.tgid)
	le.PutUint32(b[offTID:], r.tid)
	le.PutUint32(b[offFD:], uint32(r.fd))
	le.PutUint32(b[offSize:], r.size)
	n := uint32(len(r.data))
	if r.lenField != nil {
		n = *r.lenField
	}
	le.PutUint32(b[offLen:], n)
	le.PutUint16(b[offLPort:], r.lport)
	le.PutUint16(b[offRPort:], r.rport)
	copy(b[offLAddr:], r.laddr[:])
	copy(b[offRAddr:], r.raddr[:])
	copy(b[offComm:offComm+16], r.comm)
	b[offKind], b[offRole], b[offDir], b[offFlags] = r.kind, r.role, r.dir, r.flags
	le.PutUint64(b[offCgroup:], r.cgroup)
	b = append(b, r.data...)
	if r.truncateHeaderTo > 0 {
		b = b[:r.truncateHeaderTo]
	}
	return b
}

func mapped(s string) [16]byte {
	return netip.MustParseAddr(s).As16()
}

func u32(v uint32) *uint32 { return &v }

func TestDecode(t *testing.T) {
	boot := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	v4 := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	v4mapped := netip.AddrFrom16(v4.As16()) // ::ffff:127.0.0.1, as the kernel writes IPv4
	tests := []struct {
		name string
		rec  record
		want event.Event
		err  bool
	}{
		{
			name: "open ipv4 server",
			rec: record{
				ts: 1500, start: 1000, tgid: 42, tid: 43, fd: 7, lport: 8080, rport: 51000,
				laddr: v4mapped.As16(), raddr: v4mapped.As16(), comm: "server",
				kind: uint8(event.KindOpen), role: uint8(event.RoleServer),
			},
			want: event.Event{
				Kind: event.KindOpen, Conn: event.ConnID{TGID: 42, FD: 7, Start: 1000}, TID: 43,
				Comm: "server", Time: boot.Add(1500), Role: event.RoleServer,
				Local:  netip.AddrPortFrom(v4, 8080),
				Remote: netip.AddrPortFrom(v4, 51000),
			},
		},
		{
			name: "data ipv6 client, full comm",
			rec: record{
				ts: 2000, start: 1000, pos: 10, size: 3, tgid: 42, tid: 42, fd: 3, lport: 40000, rport: 443,
				laddr: mapped("::1"), raddr: mapped("2001:db8::1"), comm: "0123456789abcdef",
				kind: uint8(event.KindData), role: uint8(event.RoleClient), dir: uint8(event.Egress),
				data: []byte("GET"),
			},
			want: event.Event{
				Kind: event.KindData, Conn: event.ConnID{TGID: 42, FD: 3, Start: 1000}, TID: 42,
				Comm: "0123456789abcdef", Time: boot.Add(2000), Role: event.RoleClient,
				Local:  netip.MustParseAddrPort("[::1]:40000"),
				Remote: netip.MustParseAddrPort("[2001:db8::1]:443"),
				Dir:    event.Egress, Pos: 10, Size: 3, Data: []byte("GET"),
			},
		},
		{
			name: "truncated data covers more than it carries",
			rec: record{
				start: 1, pos: 65536, size: 40000, kind: uint8(event.KindData), dir: uint8(event.Ingress),
				data: []byte("abc"),
			},
			want: event.Event{
				Kind: event.KindData, Conn: event.ConnID{Start: 1}, Time: boot,
				Local:  netip.AddrPortFrom(netip.IPv6Unspecified(), 0),
				Remote: netip.AddrPortFrom(netip.IPv6Unspecified(), 0),
				Pos:    65536, Size: 40000, Data: []byte("abc"),
			},
		},
		{
			name: "sendfile: counted, unavailable",
			rec: record{
				start: 1, pos: 7, size: 50000, kind: uint8(event.KindData), dir: uint8(event.Egress),
				flags: flagUnavailable, cgroup: 4242,
			},
			want: event.Event{
				Kind: event.KindData, Conn: event.ConnID{Start: 1}, Time: boot, CgroupID: 4242,
				Local:  netip.AddrPortFrom(netip.IPv6Unspecified(), 0),
				Remote: netip.AddrPortFrom(netip.IPv6Unspecified(), 0),
				Dir:    event.Egress, Pos: 7, Size: 50000, Unavailable: true,
			},
		},
		{
			name: "past a body's cap: counted, skipped",
			rec: record{
				start: 1, pos: 7, size: 3 << 20, kind: uint8(event.KindData), dir: uint8(event.Egress),
				flags: flagSkipped | flagAfterLoss,
			},
			want: event.Event{
				Kind: event.KindData, Conn: event.ConnID{Start: 1}, Time: boot,
				Local:  netip.AddrPortFrom(netip.IPv6Unspecified(), 0),
				Remote: netip.AddrPortFrom(netip.IPv6Unspecified(), 0),
				Dir:    event.Egress, Pos: 7, Size: 3 << 20, Skipped: true, AfterLoss: true,
			},
		},
		{
			name: "after a loss",
			rec: record{
				start: 1, pos: 9000, size: 2, kind: uint8(event.KindData), dir: uint8(event.Ingress),
				flags: flagAfterLoss, data: []byte("ok"),
			},
			want: event.Event{
				Kind: event.KindData, Conn: event.ConnID{Start: 1}, Time: boot,
				Local:  netip.AddrPortFrom(netip.IPv6Unspecified(), 0),
				Remote: netip.AddrPortFrom(netip.IPv6Unspecified(), 0),
				Pos:    9000, Size: 2, Data: []byte("ok"), AfterLoss: true,
			},
		},
		{
			name: "sendfile after a loss",
			rec: record{
				start: 1, pos: 7, size: 50, kind: uint8(event.KindData), dir: uint8(event.Egress),
				flags: flagUnavailable | flagAfterLoss,
			},
			want: event.Event{
				Kind: event.KindData, Conn: event.ConnID{Start: 1}, Time: boot,
				Local:  netip.AddrPortFrom(netip.IPv6Unspecified(), 0),
				Remote: netip.AddrPortFrom(netip.IPv6Unspecified(), 0),
				Dir:    event.Egress, Pos: 7, Size: 50, Unavailable: true, AfterLoss: true,
			},
		},
		{name: "unavailable with payload", rec: record{kind: uint8(event.KindData), size: 2, flags: flagUnavailable, data: []byte("xy")}, err: true},
		{name: "unknown flag", rec: record{kind: uint8(event.KindData), size: 2, flags: 8}, err: true},
		{name: "skipped with payload", rec: record{kind: uint8(event.KindData), size: 2, flags: flagSkipped, data: []byte("xy")}, err: true},
		{name: "skipped and unavailable", rec: record{kind: uint8(event.KindData), size: 2, flags: flagSkipped | flagUnavailable}, err: true},
		{name: "loss flag on open", rec: record{kind: uint8(event.KindOpen), flags: flagAfterLoss}, err: true},
		{name: "flag on open", rec: record{kind: uint8(event.KindOpen), flags: flagUnavailable}, err: true},
		{name: "empty", rec: record{truncateHeaderTo: 1}, err: true},
		{name: "short header", rec: record{kind: uint8(event.KindOpen), truncateHeaderTo: headerLen - 1}, err: true},
		{name: "unknown kind", rec: record{kind: 9}, err: true},
		{name: "kind zero", rec: record{}, err: true},
		{name: "unknown role", rec: record{kind: uint8(event.KindOpen), role: 3}, err: true},
		{name: "unknown direction", rec: record{kind: uint8(event.KindData), dir: 2}, err: true},
		{name: "payload on close", rec: record{kind: uint8(event.KindClose), data: []byte("x")}, err: true},
		{name: "payload beyond size", rec: record{kind: uint8(event.KindData), size: 1, data: []byte("xy")}, err: true},
		{name: "len beyond record", rec: record{kind: uint8(event.KindData), size: 10, data: []byte("xy"), lenField: u32(5)}, err: true},
		{
			// The kernel reserves records in size classes: the rest is padding.
			name: "len short of record",
			rec:  record{start: 1, kind: uint8(event.KindData), size: 10, data: []byte("xy"), lenField: u32(1)},
			want: event.Event{
				Kind: event.KindData, Conn: event.ConnID{Start: 1}, Time: boot,
				Local:  netip.AddrPortFrom(netip.IPv6Unspecified(), 0),
				Remote: netip.AddrPortFrom(netip.IPv6Unspecified(), 0),
				Size:   10, Data: []byte("x"),
			},
		},
		{name: "huge len", rec: record{kind: uint8(event.KindData), size: 10, lenField: u32(^uint32(0))}, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newDecoder(boot).decode(tt.rec.bytes())
			if tt.err {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("decode: got %+v, %v; want errMalformed", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !got.Time.Equal(tt.want.Time) || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("decode:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// Data is the payload in place, capped at its length so that an append by
// the consumer cannot write over the rest of the reader's buffer.
func TestDecodeDataIsThePayloadInPlace(t *testing.T) {
	raw := record{kind: uint8(event.KindData), size: 3, data: []byte("abcpad"), lenField: u32(3)}.bytes()
	ev, err := newDecoder(time.Time{}).decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if string(ev.Data) != "abc" || cap(ev.Data) != 3 || &ev.Data[0] != &raw[headerLen] {
		t.Fatalf("Data = %q (cap %d), want abc in place with cap 3", ev.Data, cap(ev.Data))
	}
}

// Process names are interned: the same name decodes to the same string
// (one allocation per name, not per event), and names past the bound still
// decode right.
func TestDecodeInternsComm(t *testing.T) {
	d := newDecoder(time.Time{})
	name := func(comm string) string {
		ev, err := d.decode(record{kind: uint8(event.KindOpen), comm: comm}.bytes())
		if err != nil {
			t.Fatal(err)
		}
		return ev.Comm
	}
	a, b := name("nginx"), name("nginx")
	if a != "nginx" || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Errorf("comm %q and %q: want one interned \"nginx\"", a, b)
	}
	for i := range maxComms + 10 {
		want := fmt.Sprintf("p%d", i)
		if got := name(want); got != want {
			t.Fatalf("comm %q, want %q", got, want)
		}
	}
	if len(d.comms) > maxComms {
		t.Errorf("%d names kept, bound %d", len(d.comms), maxComms)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(record{kind: uint8(event.KindOpen), comm: "curl", laddr: mapped("127.0.0.1")}.bytes())
	f.Add(record{kind: uint8(event.KindData), size: 5, data: []byte("HTTP/")}.bytes())
	f.Add(record{kind: uint8(event.KindData), size: 4, data: []byte("GET "), lenField: u32(3)}.bytes())
	f.Add(record{kind: uint8(event.KindData), size: 9000, flags: flagUnavailable, cgroup: 1}.bytes())
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := newDecoder(time.Unix(0, 0)).decode(raw)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error does not wrap errMalformed: %v", err)
			}
			return
		}
		if len(raw) < headerLen || uint32(len(ev.Data)) > ev.Size {
			t.Fatalf("accepted an invalid record: %+v", ev)
		}
		if ev.Unavailable && len(ev.Data) != 0 {
			t.Fatalf("unavailable event with data: %+v", ev)
		}
		if ev.Kind != event.KindData && (ev.Data != nil || ev.Size != 0 || ev.Unavailable) {
			t.Fatalf("connection event with data: %+v", ev)
		}
		if !ev.Local.IsValid() || !ev.Remote.IsValid() || ev.Local.Addr().Is4In6() {
			t.Fatalf("bad addresses: %+v", ev)
		}
	})
}
