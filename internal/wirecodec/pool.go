package wirecodec

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

// Buffers of 2^minTier to 2^maxTier bytes are pooled; smaller ones are
// cheap to allocate, larger ones are rare (a message is at most
// grpcclient.MaxMessageBytes, a batch of the agent's about 2 MiB).
const (
	minTier = 8
	maxTier = 25
)

// pool is a mem.BufferPool that hands out buffers without zeroing them.
// gRPC's default pool clears a buffer's whole capacity on every Get, and
// sends anything over 1 MiB to a pool that allocates per size: under 64
// KiB bodies the agent spent a tenth of its CPU clearing buffers that the
// marshaller, the compressor or a socket read overwrite at once. Every
// user of a gRPC buffer writes its bytes before reading them, which is
// what makes skipping the clear safe (gRPC keeps a dirty pool of its own,
// internal, for the same reason).
type pool struct {
	tiers [tiers]sync.Pool
}

const tiers = maxTier - minTier + 1

var dirty = &pool{}

// Pool returns the process's gRPC buffer pool: pass it to
// experimental.WithBufferPool / experimental.BufferPool. The codec
// marshals into it.
func Pool() mem.BufferPool { return dirty }

// tier is the index of the smallest tier holding n bytes, or -1.
func tier(n int) int {
	if n <= 1<<minTier {
		return 0
	}
	t := bits.Len(uint(n-1)) - minTier
	if t >= tiers {
		return -1
	}
	return t
}

func (p *pool) Get(n int) *[]byte {
	t := tier(n)
	if t < 0 {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.tiers[t].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(t+minTier))
	return &b
}

func (p *pool) Put(b *[]byte) {
	c := cap(*b)
	// Only buffers this pool made (a tier's exact size) go back.
	if t := tier(c); t >= 0 && c == 1<<(t+minTier) {
		p.tiers[t].Put(b)
	}
}
