package httpstream

import (
	"crypto/rand"
	"time"

	"github.com/google/uuid"
)

// idSource makes the exchange ids: UUIDv7 as uuid.NewV7 makes them (Unix
// milliseconds, a 12-bit sub-millisecond sequence that keeps ids
// increasing, 62 random bits), without its process-wide lock, the
// allocation of its random read, or a getrandom call per id. It belongs to
// the tracker's goroutine.
type idSource struct {
	last int64 // milliseconds<<12 | sequence of the last id
	rnd  [4096]byte
	off  int // next unused byte of rnd
}

func (s *idSource) next(now time.Time) string {
	nano := now.UnixNano()
	ms := nano / 1e6
	v := ms<<12 | (nano-ms*1e6)>>8 // the sequence is < 3907
	if v <= s.last {
		v = s.last + 1
	}
	s.last = v
	if s.off == 0 || s.off+8 > len(s.rnd) {
		_, _ = rand.Read(s.rnd[:]) // never fails: crypto/rand crashes the process instead
		s.off = 0
	}
	var u uuid.UUID
	ms, seq := v>>12, v&0xfff
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	u[6], u[7] = 0x70|byte(seq>>8), byte(seq)
	copy(u[8:], s.rnd[s.off:s.off+8])
	s.off += 8
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return u.String()
}
