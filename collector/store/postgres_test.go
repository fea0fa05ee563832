package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// usedBytes is what size retention measures: tables, indexes and TOAST of
// every partition.
func (s *Postgres) usedBytes(ctx context.Context) (int64, error) {
	parts, err := partitions(ctx, s.pool)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, p := range parts {
		total += p.bytes
	}
	return total, nil
}

// TestPostgresPartitions checks that exchanges land in daily partitions,
// that the next day's is made ahead, and that one collector's retention
// dropping a partition another one knew does not fail the other's writes.
func TestPostgresPartitions(t *testing.T) {
	b := postgresBackend()
	ctx := context.Background()
	a, c := b.open(t).(*Postgres), b.open(t).(*Postgres)
	var exs []*reprisev1.Exchange
	for day := range 3 {
		exs = append(exs, newEx(fmt.Sprint("d", day), time.Duration(day)*24*time.Hour))
	}
	if err := a.Put(ctx, exs); err != nil {
		t.Fatal(err)
	}
	parts, err := partitions(ctx, a.pool)
	if err != nil {
		t.Fatal(err)
	}
	tomorrow := partitionStart(time.Now().UnixNano()) + partitionSpan
	if len(parts) != 4 || parts[0].lo != t0.Truncate(24*time.Hour).UnixNano() || parts[3].lo != tomorrow {
		t.Fatalf("partitions = %+v, want the 3 days of the exchanges and tomorrow", parts)
	}
	// c drops the first day; a still believes it exists.
	if n, err := c.Prune(ctx, Retention{MaxAge: 24 * time.Hour}, t0.Add(36*time.Hour)); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1", n, err)
	}
	if err := a.Put(ctx, []*reprisev1.Exchange{newEx("again", time.Hour)}); err != nil {
		t.Fatalf("Put into a day another collector pruned: %v", err)
	}
	if _, err := c.Get(ctx, "again"); err != nil {
		t.Errorf("Get: %v", err)
	}
}

// TestPostgresSizeKeepsNewestDay checks that size retention never drops the
// partition with the newest exchange, even over the limit.
func TestPostgresSizeKeepsNewestDay(t *testing.T) {
	b := postgresBackend()
	s := b.open(t)
	ctx := context.Background()
	putMany(t, s, 100)
	n, err := s.Prune(ctx, Retention{MaxBytes: 1}, time.Now())
	if err != nil || n != 0 {
		t.Errorf("Prune = %d, %v; want nothing deleted", n, err)
	}
	if c, err := s.Count(ctx, nil); err != nil || c != 100 {
		t.Errorf("Count = %d, %v; want 100", c, err)
	}
}
