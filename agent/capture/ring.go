package capture

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
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
type ring struct {
	mu   sync.Mutex // serialises read and the unmapping
	epfd int
	// stop is an eventfd that interrupts a wait when the ring is closed.
	stop     int
	events   []unix.EpollEvent
	cons     []byte   // consumer page, ours to write
	prod     []byte   // producer page and the data pages, mapped twice
	data     []byte   // the data pages twice over, so a record never wraps
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
	r := &ring{epfd: -1, stop: -1, events: make([]unix.EpollEvent, 2), mask: uintptr(size - 1)}
	defer func() {
		if err != nil {
			for _, m := range [][]byte{r.prod, r.cons} {
				if m != nil {
					_ = unix.Munmap(m)
				}
			}
			r.closeFDs()
		}
	}()
	if r.cons, err = unix.Mmap(fd, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mmap ring buffer consumer page: %w", err)
	}
	if r.prod, err = unix.Mmap(fd, int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mmap ring buffer data: %w", err)
	}
	r.data = r.prod[page:]
	r.consPos = (*uintptr)(unsafe.Pointer(&r.cons[0]))
	r.prodPos = (*uintptr)(unsafe.Pointer(&r.prod[0]))
	r.next = atomic.LoadUintptr(r.consPos)
	if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	if r.stop, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	for _, f := range []int{fd, r.stop} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(f)}
		if err = unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, f, &ev); err != nil {
			return nil, fmt.Errorf("epoll add: %w", err)
		}
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
		if n > uintptr(len(r.data)/2)-ringHdrLen || prod-r.next < ringHdrLen+n {
			return nil, fmt.Errorf("ring buffer record of %d bytes at %d, %d written", n, r.next, prod-r.next)
		}
		start += ringHdrLen
		r.next += (ringHdrLen + n + 7) &^ 7
		if hdr&ringDiscard != 0 {
			atomic.StoreUintptr(r.consPos, r.next)
			continue
		}
		r.lent = true
		return r.data[start : start+n : start+n], nil
	}
}

// wait blocks until the kernel wakes the reader, poll passes or the ring
// is closed.
func (r *ring) wait(poll time.Duration) error {
	for {
		_, err := unix.EpollWait(r.epfd, r.events, int(poll.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for ring buffer: %w", err)
		}
		return nil
	}
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
	var one [8]byte
	one[0] = 1 // eventfd counters are native endian; 1 in any byte wakes
	_, err := unix.Write(r.stop, one[:])
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.lent {
		r.unmap()
	}
	r.closeFDs()
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

func (r *ring) closeFDs() {
	for _, fd := range []int{r.epfd, r.stop} {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
	r.epfd, r.stop = -1, -1
}
