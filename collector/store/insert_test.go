package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// TestPutInChunks puts batches that take several INSERT statements of
// different sizes, with ids repeated inside a batch, across its chunks and
// from an earlier batch: every exchange is stored once, in order, and reads
// back whole.
func TestPutInChunks(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	var want []string
	seen := map[string]bool{}
	put := func(ids ...string) {
		t.Helper()
		var batch []*reprisev1.Exchange
		for _, id := range ids {
			var at int
			fmt.Sscanf(id, "e%d", &at)
			batch = append(batch, newEx(id, time.Duration(at)*time.Millisecond, func(ex *reprisev1.Exchange) {
				ex.Request.Target = "/orders/" + id
			}))
			if !seen[id] {
				seen[id] = true
				want = append(want, id)
			}
		}
		if err := s.Put(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for i := range 2*insertRows + 37 {
		ids = append(ids, fmt.Sprintf("e%04d", i))
	}
	put("e0001")
	// e0001 again (stored before), e0005 twice in the first chunk, e0200 in
	// the first chunk and again in a later one.
	put(slices.Concat([]string{"e0001", "e0005", "e0200"}, ids, []string{"e0200"})...)
	for _, n := range []int{1, 3, insertRows - 1, insertRows + 1} {
		var more []string
		for i := range n {
			more = append(more, fmt.Sprintf("e%04d", 1000+len(want)+i))
		}
		put(more...)
	}
	slices.Sort(want)

	var got []string
	err := s.Stream(ctx, nil, "", 0, func(ex *reprisev1.Exchange, _ string) error {
		if ex.GetRequest().GetTarget() != "/orders/"+ex.GetId() {
			return fmt.Errorf("exchange %s has target %s", ex.GetId(), ex.GetRequest().GetTarget())
		}
		got = append(got, ex.GetId())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("stored %d exchanges, want %d: %v", len(got), len(want), got)
	}
}

// TestFailedInsertRollsBack makes the engine refuse one exchange in the
// middle of a batch of several INSERT statements: nothing of that batch is
// stored, a batch committed in the same group is, and the writer keeps
// working.
func TestFailedInsertRollsBack(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	if _, err := s.db.Exec(`CREATE TRIGGER refuse BEFORE INSERT ON exchanges WHEN NEW.id = 'bad'
		BEGIN SELECT RAISE(ABORT, 'refused'); END`); err != nil {
		t.Fatal(err)
	}
	request := func(batchID string, ids ...string) *putRequest {
		var exs []*reprisev1.Exchange
		for i, id := range ids {
			exs = append(exs, newEx(id, time.Duration(i)*time.Millisecond))
		}
		rows, blobs, err := encodeRows(exs)
		if err != nil {
			t.Fatal(err)
		}
		return &putRequest{ctx: ctx, batchID: batchID, rows: rows, blobs: blobs, done: make(chan putResult, 1)}
	}
	var ids []string
	for i := range insertRows + 10 {
		ids = append(ids, fmt.Sprint("a", i))
	}
	bad := request("b-bad", append(ids, "bad")...)
	good := request("b-good", "g1", "g2")
	s.commitGroup([]*putRequest{bad, good})
	if res := <-bad.done; res.err == nil || !strings.Contains(res.err.Error(), "refused") {
		t.Errorf("Put with a refused exchange = %+v, want the engine's error", res)
	}
	if res := <-good.done; res.err != nil || res.duplicate {
		t.Errorf("Put in the same group = %+v, want stored", res)
	}
	if n, err := s.Count(ctx, nil); err != nil || n != 2 {
		t.Errorf("Count = %d, %v; want the 2 of the good batch", n, err)
	}
	// The refused batch's ID was rolled back too: resent without the bad
	// exchange, it is stored, not a duplicate.
	dup, err := s.PutBatch(ctx, Batch{ID: "b-bad", Exchanges: []*reprisev1.Exchange{newEx("a0", 0)}})
	if err != nil || dup {
		t.Errorf("resent batch: duplicate %v, %v; want stored", dup, err)
	}
	if n, err := s.Count(ctx, nil); err != nil || n != 3 {
		t.Errorf("Count = %d, %v; want 3", n, err)
	}
}
