package wirecodec

import "testing"

func TestPoolSizesAndReuse(t *testing.T) {
	for _, n := range []int{0, 1, 256, 257, 4096, 4097, 2<<20 + 1, 1 << maxTier} {
		b := dirty.Get(n)
		if len(*b) != n {
			t.Fatalf("Get(%d): len %d", n, len(*b))
		}
		if c := cap(*b); c < n || c&(c-1) != 0 {
			t.Fatalf("Get(%d): cap %d, want the power of two holding it", n, c)
		}
		dirty.Put(b)
	}
	// Past the largest tier: the exact size, never kept.
	big := dirty.Get(1<<maxTier + 1)
	if len(*big) != 1<<maxTier+1 || cap(*big) != 1<<maxTier+1 {
		t.Fatalf("oversize: len %d cap %d", len(*big), cap(*big))
	}
	dirty.Put(big)
	// A buffer of a size no tier has is not kept either: a later Get of
	// its tier must not get a short capacity.
	odd := make([]byte, 5000)
	dirty.Put(&odd)
	if b := dirty.Get(8192); cap(*b) != 8192 {
		t.Fatalf("Get(8192) after Put of 5000 bytes: cap %d", cap(*b))
	}
}
