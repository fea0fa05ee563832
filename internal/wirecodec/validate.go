package wirecodec

import (
	"encoding/binary"
	"fmt"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// field is what validate looks at in one field of a message.
type field struct {
	name protoreflect.FullName
	str  bool     // a string protobuf-go requires to be valid UTF-8
	msg  *msgInfo // a message, walked too
}

// msgInfo lists the string and message fields of one message type.
type msgInfo struct {
	low  [64]field // by field number, the common case
	high map[protowire.Number]field
}

func (mi *msgInfo) field(n protowire.Number) field {
	if n < protowire.Number(len(mi.low)) {
		return mi.low[n]
	}
	return mi.high[n]
}

// infos caches msgInfo by message descriptor; built once per type.
var infos sync.Map // protoreflect.MessageDescriptor → *msgInfo

// validate walks the wire form b of a message of type md and fails, as
// protobuf-go does, when a string field is not valid UTF-8. It also fails
// on what protobuf-go refuses and the generated code lets through: field
// numbers out of range, varints longer than 64 bits, unknown groups that
// end with another field's number. Bytes fields are skipped without being
// read. When b was just marshalled (ours), its structure is sound and only
// the strings matter, so small all-ASCII messages are skipped whole.
func validate(b []byte, md protoreflect.MessageDescriptor, ours bool) error {
	v, ok := infos.Load(md)
	if !ok {
		v, _ = infos.LoadOrStore(md, build(md, map[protoreflect.MessageDescriptor]*msgInfo{}))
	}
	return v.(*msgInfo).check(b, ours)
}

func (mi *msgInfo) check(b []byte, ours bool) error {
	for len(b) > 0 {
		// Most tags and lengths take one byte: decoded here, not called for.
		tag, n := uint64(b[0]), 1
		if tag >= 0x80 {
			if tag, n = protowire.ConsumeVarint(b); n < 0 {
				return fmt.Errorf("proto: %w", protowire.ParseError(n))
			}
		}
		b = b[n:]
		num, typ := protowire.DecodeTag(tag)
		if !num.IsValid() { // the generated code lets some through
			return fmt.Errorf("proto: invalid field number %d", tag>>3)
		}
		if f := mi.field(num); typ == protowire.BytesType && (f.str || f.msg != nil) {
			l, n := uint64(0), 1
			if len(b) > 0 && b[0] < 0x80 {
				l = uint64(b[0])
			} else if l, n = protowire.ConsumeVarint(b); n < 0 {
				return fmt.Errorf("proto: %w", protowire.ParseError(n))
			}
			if l > uint64(len(b)-n) {
				return fmt.Errorf("proto: %w", protowire.ParseError(-1))
			}
			v := b[n : n+int(l)]
			if f.str && !utf8.Valid(v) {
				return fmt.Errorf("proto: field %s contains invalid UTF-8", f.name)
			}
			if f.msg != nil && !(ours && smallASCII(v)) {
				if err := f.msg.check(v, ours); err != nil {
					return err
				}
			}
			b = b[n+int(l):]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return fmt.Errorf("proto: %w", protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

// smallASCII reports whether b is short and all ASCII: then every string
// in it is too. Headers mostly are; longer messages (with bodies) mostly
// are not, so they are not scanned.
func smallASCII(b []byte) bool {
	if len(b) > 256 {
		return false
	}
	var or uint64
	for ; len(b) >= 8; b = b[8:] {
		or |= binary.LittleEndian.Uint64(b)
	}
	for _, c := range b {
		or |= uint64(c)
	}
	return or&0x8080808080808080 == 0
}

// build makes the msgInfo of md; seen holds the types being built, so a
// recursive type refers to itself.
func build(md protoreflect.MessageDescriptor, seen map[protoreflect.MessageDescriptor]*msgInfo) *msgInfo {
	if mi, ok := seen[md]; ok {
		return mi
	}
	mi := &msgInfo{}
	seen[md] = mi
	fds := md.Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		f := field{name: fd.FullName()}
		switch fd.Kind() {
		case protoreflect.StringKind:
			f.str = enforceUTF8(fd)
		case protoreflect.MessageKind:
			f.msg = build(fd.Message(), seen)
		}
		if !f.str && f.msg == nil {
			continue
		}
		if n := fd.Number(); n < protowire.Number(len(mi.low)) {
			mi.low[n] = f
		} else {
			if mi.high == nil {
				mi.high = map[protowire.Number]field{}
			}
			mi.high[n] = f
		}
	}
	return mi
}

// enforceUTF8 is protobuf-go's rule: proto3 strings are checked, proto2
// ones not, and editions say per field.
func enforceUTF8(fd protoreflect.FieldDescriptor) bool {
	if fd.Syntax() == protoreflect.Editions {
		if fd, ok := fd.(interface{ EnforceUTF8() bool }); ok {
			return fd.EnforceUTF8()
		}
	}
	return fd.Syntax() == protoreflect.Proto3
}
