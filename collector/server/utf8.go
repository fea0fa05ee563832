package server

import (
	"context"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// utf8Codec turns a request with a string that is not valid UTF-8 into
// InvalidArgument naming the field. gRPC reports every codec error as
// Internal, so the codec decodes such a message without the UTF-8 check
// and marks it, and the interceptors refuse it before any handler sees it.
type utf8Codec struct {
	encoding.CodecV2
	bad sync.Map // proto.Message → the codec's error
}

// vtUnmarshaler is the generated decoder, which does not check UTF-8.
type vtUnmarshaler interface {
	proto.Message
	UnmarshalVT([]byte) error
}

func (c *utf8Codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	m, ok := v.(vtUnmarshaler)
	if err == nil || !ok || !strings.Contains(err.Error(), "invalid UTF-8") {
		return err
	}
	proto.Reset(m)
	if verr := m.UnmarshalVT(data.Materialize()); verr != nil {
		return err
	}
	c.bad.Store(v, err.Error())
	return nil
}

// check returns InvalidArgument for a message the codec marked.
func (c *utf8Codec) check(m any) error {
	if e, ok := c.bad.LoadAndDelete(m); ok {
		return status.Errorf(codes.InvalidArgument, "%s", strings.TrimPrefix(e.(string), "proto: "))
	}
	return nil
}

// serverOptions returns the codec and the interceptors that refuse what it
// marked.
func (c *utf8Codec) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(c),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := c.check(req); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			return handler(srv, &utf8Stream{ServerStream: ss, c: c})
		}),
	}
}

type utf8Stream struct {
	grpc.ServerStream
	c *utf8Codec
}

func (s *utf8Stream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.c.check(m)
}
