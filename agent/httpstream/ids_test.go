package httpstream

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestIDs checks the exchange ids: UUIDv7 of the time they were made,
// increasing even within a millisecond or when the clock steps back, and
// unique.
func TestIDs(t *testing.T) {
	var s idSource
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	last := ""
	for i := range 10000 {
		at := now.Add(time.Duration(i/5000) * time.Millisecond) // 5000 ids in one millisecond
		if i == 9000 {
			now = now.Add(-time.Second)
		}
		id := s.next(at)
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("id %d %q: not a uuid v7 (%v)", i, id, err)
		}
		if sec, nsec := u.Time().UnixTime(); i < 4096 && !time.Unix(sec, nsec).Equal(at.Truncate(time.Millisecond)) {
			t.Fatalf("id %d %q holds %v, want %v", i, id, time.Unix(sec, nsec), at)
		}
		if id <= last || seen[id] {
			t.Fatalf("id %d %q after %q", i, id, last)
		}
		seen[id], last = true, id
	}
}
