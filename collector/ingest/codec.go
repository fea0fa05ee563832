package ingest

import (
	"context"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Codec returns the gRPC server codec that decodes an ingest batch only
// once its share of Limits.Memory is taken (the stream waits until it is):
// decoding a message copies it twice, and eight streams decoding 28 MiB
// batches at once took the collector past 600 MB.
// Other messages, and the decoding itself, are next's.
func (s *Service) Codec(next encoding.CodecV2) encoding.CodecV2 {
	return &codec{s: s, next: next}
}

type codec struct {
	s    *Service
	next encoding.CodecV2
}

func (c *codec) Name() string                           { return c.next.Name() }
func (c *codec) Marshal(v any) (mem.BufferSlice, error) { return c.next.Marshal(v) }

func (c *codec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*reprisev1.IngestRequest)
	if !ok {
		return c.next.Unmarshal(data, v)
	}
	// The codec has no context; the wait ends as batches in work are acked.
	n := min(wireCost(data.Len()), c.s.wireMemory)
	_ = c.s.memory.Acquire(context.Background(), n)
	if err := c.next.Unmarshal(data, v); err != nil {
		c.s.memory.Release(n)
		return err
	}
	c.s.reserved.Store(req, n)
	return nil
}

// reservations are what the codec took for the batches it decoded, until
// the stream's receiver claims them.
type reservations struct{ m sync.Map }

func (r *reservations) Store(req *reprisev1.IngestRequest, n int64) { r.m.Store(req, n) }

// claim returns and forgets what was taken for req; 0 when it was decoded
// by another codec.
func (r *reservations) claim(req *reprisev1.IngestRequest) int64 {
	n, _ := r.m.LoadAndDelete(req)
	held, _ := n.(int64)
	return held
}
