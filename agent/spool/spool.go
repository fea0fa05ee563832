// Package spool keeps batches for the collector on disk while the collector
// is down or slower than the traffic, so they survive a full memory backlog
// and an agent restart. It stores whatever it is given: the exporter
// sanitizes every exchange before it reaches Write, so nothing unsanitized
// is ever written.
//
// Each batch is one file, written to a temporary name, fsynced and renamed,
// so a crash leaves either the whole file or none. A file is named
// <sequence>-<exchanges>.batch: the directory listing alone gives the order
// and what a lost file costs. The spool is bounded in bytes; past the bound
// the oldest files are removed and reported to the caller, which counts them.
package spool

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"google.golang.org/protobuf/proto"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// magic starts every spool file; its last byte is the format version.
var magic = [4]byte{'R', 'P', 'S', 1}

// headerLen is magic, payload length and CRC-32C of the payload.
const headerLen = 12

// MaxFileBytes bounds the payload a reader accepts, so a corrupt length
// cannot make it allocate without limit. Batches are a few MiB.
const MaxFileBytes = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by the errors of files that are not whole batches.
var ErrCorrupt = errors.New("corrupt spool file")

// ErrFull is returned by Write when the batch does not fit even after the
// oldest files that are not in use were removed.
var ErrFull = errors.New("spool full")

// File is one spooled batch.
type File struct {
	Seq       uint64
	Exchanges int
	Size      int64
}

func (f File) name() string { return fmt.Sprintf("%020d-%d.batch", f.Seq, f.Exchanges) }

// parseName reads a file name Write made; ok is false for any other name.
func parseName(name string) (f File, ok bool) {
	base, found := strings.CutSuffix(name, ".batch")
	if !found {
		return f, false
	}
	seq, n, found := strings.Cut(base, "-")
	if !found {
		return f, false
	}
	var err1, err2 error
	f.Seq, err1 = strconv.ParseUint(seq, 10, 64)
	f.Exchanges, err2 = strconv.Atoi(n)
	return f, err1 == nil && err2 == nil && f.Exchanges >= 0 && len(seq) == 20
}

// Spool is a directory of batches, oldest first; safe for concurrent use.
type Spool struct {
	dir      string
	maxBytes int64
	lock     *os.File

	mu    sync.Mutex
	files []File // by Seq
	busy  map[uint64]bool
	bytes int64
	next  uint64
}

// Open opens (creating it 0700 if needed) the spool in dir, bounded to
// maxBytes. It holds an exclusive lock on the directory, so two agents
// never share one spool, and it removes temporary files a crash left.
func Open(dir string, maxBytes int64) (*Spool, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("spool bound must be positive, got %d", maxBytes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create spool dir: %w", err)
	}
	// MkdirAll keeps an existing directory's mode; the spool holds traffic.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool dir mode: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool dir %s is in use by another agent: %w", dir, err)
	}
	s := &Spool{dir: dir, maxBytes: maxBytes, lock: lock, busy: map[uint64]bool{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("read spool dir: %w", err)
	}
	for _, de := range entries {
		if strings.HasSuffix(de.Name(), ".tmp") {
			// A write the crash cut short: its batch was never spooled.
			_ = os.Remove(filepath.Join(dir, de.Name()))
			continue
		}
		f, ok := parseName(de.Name())
		if !ok || !de.Type().IsRegular() {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue
		}
		f.Size = info.Size()
		s.files = append(s.files, f)
		s.bytes += f.Size
		s.next = max(s.next, f.Seq+1)
	}
	slices.SortFunc(s.files, func(a, b File) int { return cmp.Compare(a.Seq, b.Seq) })
	return s, nil
}

// Close releases the directory lock.
func (s *Spool) Close() error { return s.lock.Close() }

// Encode returns the file contents of req.
func Encode(req *reprisev1.IngestRequest) ([]byte, error) {
	payload, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("marshal batch: %w", err)
	}
	if len(payload) > MaxFileBytes {
		return nil, fmt.Errorf("batch %s is %d bytes, more than a spool file holds", req.GetBatchId(), len(payload))
	}
	b := make([]byte, headerLen, headerLen+len(payload))
	copy(b, magic[:])
	binary.BigEndian.PutUint32(b[4:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[8:], crc32.Checksum(payload, castagnoli))
	return append(b, payload...), nil
}

// Decode parses file contents; every error wraps ErrCorrupt.
func Decode(b []byte) (*reprisev1.IngestRequest, error) {
	if len(b) < headerLen || [4]byte(b[:4]) != magic {
		return nil, fmt.Errorf("%w: no spool header", ErrCorrupt)
	}
	n := binary.BigEndian.Uint32(b[4:])
	payload := b[headerLen:]
	if uint64(n) != uint64(len(payload)) {
		return nil, fmt.Errorf("%w: header says %d bytes, file holds %d", ErrCorrupt, n, len(payload))
	}
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(b[8:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	req := &reprisev1.IngestRequest{}
	if err := proto.Unmarshal(payload, req); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if req.GetBatchId() == "" {
		return nil, fmt.Errorf("%w: batch without an id", ErrCorrupt)
	}
	return req, nil
}

// Write stores req as the newest file. To stay within the bound it first
// removes the oldest files not in use and returns them, so the caller can
// count their exchanges as dropped. With ErrFull nothing was written.
func (s *Spool) Write(req *reprisev1.IngestRequest) (evicted []File, err error) {
	data, err := Encode(req)
	if err != nil {
		return nil, err
	}
	size := int64(len(data))
	s.mu.Lock()
	if size > s.maxBytes {
		s.mu.Unlock()
		return nil, ErrFull
	}
	for s.bytes+size > s.maxBytes {
		i := slices.IndexFunc(s.files, func(f File) bool { return !s.busy[f.Seq] })
		if i < 0 {
			s.mu.Unlock()
			return evicted, ErrFull
		}
		f := s.files[i]
		s.files = slices.Delete(s.files, i, i+1)
		s.bytes -= f.Size
		evicted = append(evicted, f)
	}
	f := File{Seq: s.next, Exchanges: len(req.GetExchanges()), Size: size}
	s.next++
	// Reserved now so concurrent writes stay within the bound; the file is
	// busy until it is on disk, so nobody reads it early.
	s.files = append(s.files, f)
	s.busy[f.Seq] = true
	s.bytes += size
	s.mu.Unlock()

	for _, old := range evicted {
		_ = os.Remove(filepath.Join(s.dir, old.name()))
	}
	err = s.writeFile(f.name(), data)
	s.mu.Lock()
	delete(s.busy, f.Seq)
	if err != nil {
		s.drop(f)
	}
	s.mu.Unlock()
	return evicted, err
}

// writeFile writes data under name atomically and durably.
func (s *Spool) writeFile(name string, data []byte) error {
	tmp := filepath.Join(s.dir, name+".tmp")
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create spool file: %w", err)
	}
	_, err = fh.Write(data)
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write spool file: %w", err)
	}
	// The rename is durable once the directory is synced.
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("sync spool dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync spool dir: %w", err)
	}
	return nil
}

// drop forgets f; s.mu is held.
func (s *Spool) drop(f File) {
	if i := slices.IndexFunc(s.files, func(g File) bool { return g.Seq == f.Seq }); i >= 0 {
		s.files = slices.Delete(s.files, i, i+1)
		s.bytes -= f.Size
	}
	delete(s.busy, f.Seq)
}

// Take returns the oldest file not in use and marks it in use, so Write
// does not remove it while its batch is on the wire; ok is false when
// there is none.
func (s *Spool) Take() (f File, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.files {
		if !s.busy[f.Seq] {
			s.busy[f.Seq] = true
			return f, true
		}
	}
	return File{}, false
}

// Release returns a taken file to the spool, to be taken again later.
func (s *Spool) Release(f File) {
	s.mu.Lock()
	delete(s.busy, f.Seq)
	s.mu.Unlock()
}

// Read returns the batch in f. A file that is not a whole batch gives an
// error wrapping ErrCorrupt; the caller removes it.
func (s *Spool) Read(f File) (*reprisev1.IngestRequest, error) {
	fh, err := os.Open(filepath.Join(s.dir, f.name()))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	defer fh.Close()
	info, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if info.Size() > MaxFileBytes+headerLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrCorrupt, info.Size())
	}
	b := make([]byte, info.Size())
	if _, err := fh.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	req, err := Decode(b)
	if err != nil {
		return nil, err
	}
	if len(req.GetExchanges()) != f.Exchanges {
		return nil, fmt.Errorf("%w: %d exchanges, name says %d", ErrCorrupt, len(req.GetExchanges()), f.Exchanges)
	}
	return req, nil
}

// Remove deletes f, once its batch is acknowledged or found corrupt.
func (s *Spool) Remove(f File) error {
	s.mu.Lock()
	s.drop(f)
	s.mu.Unlock()
	if err := os.Remove(filepath.Join(s.dir, f.name())); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove spool file: %w", err)
	}
	return nil
}

// Len returns the files, bytes and exchanges the spool holds.
func (s *Spool) Len() (files int, bytes int64, exchanges int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.files {
		exchanges += f.Exchanges
	}
	return len(s.files), s.bytes, exchanges
}
