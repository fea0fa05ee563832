package http1

import (
	"math/bits"
	"sync"
)

// Bodies of a known length between minPooled and maxPooled bytes come from
// pools by size class and go back to them with ReleaseBody. Under large
// uploads, allocating each body anew cost the agent more than copying into
// it: the runtime zeroes a large allocation, and the memory limit has the
// freed pages returned to the kernel and faulted in again (docs/benchmarks/capture.md).
const (
	minShift  = 12
	minPooled = 1 << minShift
	maxShift  = 20
	maxPooled = 1 << maxShift
)

// bodyPools holds, for each power of two from minPooled to maxPooled/2, the
// sizes 5/4, 6/4, 7/4 and 8/4 of it: a body wastes at most a fifth of its
// buffer.
var bodyPools [4 * (maxShift - minShift)]sync.Pool

// bodyClass returns the pool and buffer size of a body of n bytes, or -1
// when n is not pooled.
func bodyClass(n int) (class, size int) {
	if n <= minPooled || n > maxPooled {
		return -1, n
	}
	e := bits.Len(uint(n-1)) - 1 // 1<<e < n <= 2<<e
	q := 1 << (e - 2)
	k := (n - 1 - 1<<e) / q // n is in (1<<e + k*q, 1<<e + (k+1)*q]
	return 4*(e-minShift) + k, 1<<e + (k+1)*q
}

// newBody returns an empty buffer for a body of n bytes.
func newBody(n int) []byte {
	c, size := bodyClass(n)
	if c < 0 {
		return make([]byte, 0, n)
	}
	if b, ok := bodyPools[c].Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, size)
}

// ReleaseBody hands back the Body of a message that nothing refers to any
// more, not even a parser still reading it (a message Feed or Close
// returned whole), so that a later body reuses its buffer. Other slices
// are ignored.
func ReleaseBody(b []byte) {
	if c, size := bodyClass(cap(b)); c >= 0 && cap(b) == size {
		p := new([]byte) // not &b: b would escape on every call
		*p = b
		bodyPools[c].Put(p)
	}
}
