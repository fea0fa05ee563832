// Package wirecodec marshals protobuf messages with the code vtprotobuf
// generates for them (MarshalVT, UnmarshalVT, SizeVT), falling back to
// google.golang.org/protobuf for messages without it. Register makes it
// gRPC's "proto" codec in the whole process; each binary's main calls it, so
// that importing the package for Append or Unmarshal changes nothing else.
//
// The bytes are the same protobuf any peer reads and writes. What the
// generated code leaves out, the checks that proto3 strings are valid
// UTF-8, field numbers in range and varints at most 64 bits, is done here
// on the wire bytes, so a message that protobuf-go would refuse to send or
// to accept is refused here too (FuzzUnmarshal holds it to that). Two
// differences remain, both about input no protobuf encoder writes for this
// schema: unknown fields inside a Timestamp or Duration are dropped, and a
// known field with the wrong wire type is an error where protobuf-go keeps
// it as unknown. Pooled messages (vtprotobuf's pool feature) are not used:
// the pipeline keeps exchanges after a call returns.
package wirecodec

import (
	"slices"
	"sync"

	"google.golang.org/grpc/encoding"
	// Imported for its init: registering after it makes this codec win.
	_ "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Name is the codec's name, that of gRPC's default codec it replaces.
const Name = "proto"

var (
	// fallback is gRPC's own proto codec, for messages without generated
	// code, taken before this one replaces it in the registry.
	fallback = sync.OnceValue(func() encoding.CodecV2 { return encoding.GetCodecV2(Name) })
	register sync.Once
)

// Register replaces gRPC's "proto" codec with this one in the whole
// process. Call it from main before any gRPC connection or server is made
// (gRPC reads its registry without a lock); calls after the first do
// nothing.
func Register() {
	register.Do(func() {
		fallback()
		encoding.RegisterCodecV2(codec{})
	})
}

// Codec returns the codec, for a server that sets it explicitly rather
// than relying on the process-wide registry.
func Codec() encoding.CodecV2 {
	fallback()
	return codec{}
}

// vtMessage is what protoc-gen-go-vtproto generates with the features
// marshal, unmarshal and size.
type vtMessage interface {
	proto.Message
	SizeVT() int
	MarshalToSizedBufferVT([]byte) (int, error)
	UnmarshalVT([]byte) error
}

// Append appends the wire form of m to b.
func Append(b []byte, m proto.Message) ([]byte, error) {
	vt, ok := m.(vtMessage)
	if !ok {
		return proto.MarshalOptions{}.MarshalAppend(b, m)
	}
	start, n := len(b), vt.SizeVT()
	b = slices.Grow(b, n)[:start+n]
	if err := marshalTo(vt, b[start:]); err != nil {
		return b[:start], err
	}
	return b, nil
}

// Unmarshal resets m and fills it from b, as proto.Unmarshal does. The
// message keeps no reference to b.
func Unmarshal(b []byte, m proto.Message) error {
	vt, ok := m.(vtMessage)
	if !ok {
		return proto.Unmarshal(b, m)
	}
	proto.Reset(m)
	if err := vt.UnmarshalVT(b); err != nil {
		return err
	}
	return validate(b, m.ProtoReflect().Descriptor(), false)
}

// marshalTo writes vt into b, exactly SizeVT bytes long, and checks its
// strings.
func marshalTo(vt vtMessage, b []byte) error {
	if _, err := vt.MarshalToSizedBufferVT(b); err != nil {
		return err
	}
	return validate(b, vt.ProtoReflect().Descriptor(), true)
}

// codec is an encoding.CodecV2 that sizes buffers as gRPC's own proto
// codec does, from the pool without zeroing (Pool).
type codec struct{}

func (codec) Name() string { return Name }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	vt, ok := v.(vtMessage)
	if !ok {
		return fallback().Marshal(v)
	}
	n := vt.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(n) {
		b := make([]byte, n)
		if err := marshalTo(vt, b); err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	b := dirty.Get(n)
	if err := marshalTo(vt, *b); err != nil {
		dirty.Put(b)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(b, dirty)}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(vtMessage)
	if !ok {
		return fallback().Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(dirty)
	defer buf.Free()
	return Unmarshal(buf.ReadOnlyData(), m)
}
