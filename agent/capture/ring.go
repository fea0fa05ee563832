package capture

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Bits of a ring buffer record header's length word (kernel/bpf/ringbuf.c).
const (
	ringBusy    = 1 << 31 // reserved, not yet committed
	ringDiscard = 1 << 30 // committed as discarded
	ringHdrLen  = 8
)

// ring reads a BPF ring buffer in place: read hands out a record's bytes
// without copying them, and gives the space back to the kernel at the
// following call. cilium/ebpf's reader copies every record first; under
// 64 KiB uploads that copy was 16 % of the agent's CPU.
//
// The kernel lets the data pages be mapped twice in a row, so that no
// record wraps; each mapping counts in the agent's RSS, so the data is
// mapped once here and the one record in a lap that wraps is copied into
// a scratch buffer: the same RSS holds a ring twice as large.
type ring struct {
	mu sync.Mutex // serialises read and the unmapping
	// poll is a copy of the map's fd on Go's netpoller: a reader waiting
	// for records parks its goroutine instead of holding a thread in
	// epoll_wait, which made the runtime take its P back and wake the
	// scheduler's monitor every 20 µs under load (16 % of the agent's CPU
	// under 64 KiB bodies). Closing it ends a wait.
	poll     *os.File
	pollRaw  syscall.RawConn
	cons     []byte   // consumer page, ours to write
	prod     []byte   // producer page and the data pages
	data     []byte   // the data pages
	wrapped  []byte   // a record that wraps, put back together
	consPos  *uintptr // in cons; the kernel's positions are unsigned longs
	prodPos  *uintptr // in prod
	mask     uintptr
	next     uintptr // consumer position after the record handed out
	lent     bool    // a record is handed out: unmapping waits for the next read
	closed   atomic.Bool
	unmapped bool
	// mapMu keeps unread from reading positions being unmapped.
	mapMu   sync.RWMutex
	cleanup runtime.Cleanup
}

// newRing maps the ring buffer map fd of size data bytes (a power of two).
func newRing(fd, size int) (_ *ring, err error) {
	page := os.Getpagesize()
	r := &ring{mask: uintptr(size - 1)}
	defer func() {
		if err != nil {
			for _, m := range [][]byte{r.prod, r.cons} {
				if m != nil {
					_ = unix.Munmap(m)
				}
			}
			if r.poll != nil {
				_ = r.poll.Close()
			}
		}
	}()
	if r.cons, err = unix.Mmap(fd, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mmap ring buffer consumer page: %w", err)
	}
	if r.prod, err = unix.Mmap(fd, int64(page), page+size, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mmap ring buffer data: %w", err)
	}
	r.data = r.prod[page:]
	r.consPos = (*uintptr)(unsafe.Pointer(&r.cons[0]))
	r.prodPos = (*uintptr)(unsafe.Pointer(&r.prod[0]))
	r.next = atomic.LoadUintptr(r.consPos)
	if r.poll, err = pollable(fd); err != nil {
		return nil, err
	}
	if r.pollRaw, err = r.poll.SyscallConn(); err != nil {
		return nil, fmt.Errorf("ring buffer fd: %w", err)
	}
	// A record lent when the ring is closed keeps the mapping until the next
	// call; if none comes, the mapping goes with the ring.
	prod, cons := r.prod, r.cons
	r.cleanup = runtime.AddCleanup(r, func(int) {
		_ = unix.Munmap(prod)
		_ = unix.Munmap(cons)
	}, 0)
	return r, nil
}

// read returns the next record, valid until the next call. On an empty ring
// it waits up to poll for a wakeup (the kernel writes most records without
// one), then returns os.ErrDeadlineExceeded. After close it returns
// os.ErrClosed.
func (r *ring) read(poll time.Duration) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lent {
		atomic.StoreUintptr(r.consPos, r.next)
		r.lent = false
	}
	waited, spins := false, 0
	for {
		if r.closed.Load() {
			r.unmap()
			return nil, os.ErrClosed
		}
		prod := atomic.LoadUintptr(r.prodPos)
		if r.next == prod {
			if waited {
				return nil, os.ErrDeadlineExceeded
			}
			if err := r.wait(poll); err != nil {
				return nil, err
			}
			waited = true
			continue
		}
		// The length word is written last, with the busy bit cleared, when
		// the producer commits: load it atomically before the record.
		start := r.next & r.mask
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[start])))
		if hdr&ringBusy != 0 {
			// Records are consumed in reservation order: wait for this one,
			// which another CPU is still filling.
			if spins++; spins > 64 {
				time.Sleep(20 * time.Microsecond)
			} else {
				runtime.Gosched()
			}
			continue
		}
		n := uintptr(hdr &^ (ringBusy | ringDiscard))
		if n > uintptr(len(r.data))-ringHdrLen || prod-r.next < ringHdrLen+n {
			return nil, fmt.Errorf("ring buffer record of %d bytes at %d, %d written", n, r.next, prod-r.next)
		}
		// Records are 8-byte aligned, so a header never wraps.
		start = (start + ringHdrLen) & r.mask
		r.next += (ringHdrLen + n + 7) &^ 7
		if hdr&ringDiscard != 0 {
			atomic.StoreUintptr(r.consPos, r.next)
			continue
		}
		r.lent = true
		if end := start + n; end > uintptr(len(r.data)) {
			r.wrapped = append(append(r.wrapped[:0], r.data[start:]...), r.data[:end-uintptr(len(r.data))]...)
			return r.wrapped, nil
		}
		return r.data[start : start+n : start+n], nil
	}
}

// pollable returns a non-blocking copy of fd that Go's netpoller watches,
// so that a deadline bounds a wait on it.
func pollable(fd int) (*os.File, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate ring buffer fd: %w", err)
	}
	if err := unix.SetNonblock(dup, true); err != nil {
		_ = unix.Close(dup)
		return nil, fmt.Errorf("ring buffer fd non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(dup), "ring buffer")
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("ring buffer fd not pollable: %w", err)
	}
	return f, nil
}

// wait blocks until the kernel wakes the reader or the ring holds a record,
// poll passes or the ring is closed. Readiness is edge-triggered: the check
// runs before each park, so a record written before it is never missed.
func (r *ring) wait(poll time.Duration) error {
	err := r.poll.SetReadDeadline(time.Now().Add(poll))
	if err == nil {
		err = r.pollRaw.Read(func(uintptr) bool {
			return r.closed.Load() || atomic.LoadUintptr(r.prodPos) != r.next
		})
	}
	// After close the caller finds the ring closed.
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !r.closed.Load() {
		return fmt.Errorf("wait for ring buffer: %w", err)
	}
	return nil
}

// unread returns the bytes written and not yet consumed.
func (r *ring) unread() int64 {
	r.mapMu.RLock()
	defer r.mapMu.RUnlock()
	if r.unmapped {
		return 0
	}
	return int64(atomic.LoadUintptr(r.prodPos) - atomic.LoadUintptr(r.consPos))
}

// close makes a waiting read return os.ErrClosed, and unmaps the ring
// unless a record is still lent: the next read unmaps it then.
func (r *ring) close() error {
	r.closed.Store(true)
	err := r.poll.Close() // ends a wait
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.lent {
		r.unmap()
	}
	if err != nil {
		return fmt.Errorf("interrupt ring buffer reader: %w", err)
	}
	return nil
}

// unmap is called with mu held.
func (r *ring) unmap() {
	if r.unmapped {
		return
	}
	r.mapMu.Lock()
	r.unmapped = true
	r.mapMu.Unlock()
	r.cleanup.Stop()
	for _, m := range [][]byte{r.prod, r.cons} {
		_ = unix.Munmap(m)
	}
	r.prod, r.cons, r.data = nil, nil, nil
}
