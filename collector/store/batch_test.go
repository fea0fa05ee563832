package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func batchOf(id string, n int) Batch {
	b := Batch{ID: id, AgentID: "agent-a"}
	for i := range n {
		b.Exchanges = append(b.Exchanges, newEx(fmt.Sprintf("%s-%d", id, i), time.Duration(i)*time.Millisecond))
	}
	return b
}

func TestPutBatchOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		b := batchOf("b1", 10)
		if dup, err := s.PutBatch(ctx, b); err != nil || dup {
			t.Fatalf("first PutBatch = %v, %v; want stored", dup, err)
		}
		// The same ID again, even with other exchanges, stores nothing.
		again := batchOf("b1", 12)
		again.Exchanges[0].Service = "changed"
		if dup, err := s.PutBatch(ctx, again); err != nil || !dup {
			t.Fatalf("second PutBatch = %v, %v; want duplicate", dup, err)
		}
		if n, err := s.Count(ctx, nil); err != nil || n != 10 {
			t.Errorf("Count = %d, %v; want 10", n, err)
		}
		if ex, err := s.Get(ctx, "b1-0"); err != nil || ex.GetService() != "orders" {
			t.Errorf("Get = %v, %v; want the first batch's exchange", ex, err)
		}
		// A batch of no exchanges (all dropped by the sanitizer) is recorded too.
		if dup, err := s.PutBatch(ctx, Batch{ID: "empty"}); err != nil || dup {
			t.Fatalf("empty PutBatch = %v, %v", dup, err)
		}
		if dup, err := s.PutBatch(ctx, Batch{ID: "empty"}); err != nil || !dup {
			t.Fatalf("empty PutBatch again = %v, %v; want duplicate", dup, err)
		}
		// Unidentified batches are never duplicates.
		if dup, err := s.PutBatch(ctx, Batch{Exchanges: []*reprisev1.Exchange{newEx("x", 0)}}); err != nil || dup {
			t.Fatalf("PutBatch without ID = %v, %v", dup, err)
		}
	})
}

// TestPruneForgetsBatches checks that batch IDs are kept no longer than the
// retention age.
func TestPruneForgetsBatches(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		if _, err := s.PutBatch(ctx, batchOf("b1", 3)); err != nil {
			t.Fatal(err)
		}
		// Within the age: remembered.
		if _, err := s.Prune(ctx, Retention{MaxAge: time.Hour}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if dup, err := s.PutBatch(ctx, batchOf("b1", 3)); err != nil || !dup {
			t.Fatalf("PutBatch after prune within age = %v, %v; want duplicate", dup, err)
		}
		if _, err := s.Prune(ctx, Retention{MaxAge: time.Hour}, time.Now().Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if dup, err := s.PutBatch(ctx, batchOf("b1", 3)); err != nil || dup {
			t.Fatalf("PutBatch after the ID expired = %v, %v; want stored", dup, err)
		}
	})
}

// TestSameBatchInOneGroupCommit checks that a batch twice in one SQLite
// transaction is stored once and reported once as a duplicate.
func TestSameBatchInOneGroupCommit(t *testing.T) {
	s, _ := openTemp(t)
	rows, blobs, err := encodeRows(batchOf("b1", 5).Exchanges)
	if err != nil {
		t.Fatal(err)
	}
	req := func(batchID string) *putRequest {
		return &putRequest{ctx: context.Background(), batchID: batchID, rows: rows, blobs: blobs}
	}
	dups, err := s.in.insert([]*putRequest{req("b1"), req("b1"), req("")})
	if err != nil {
		t.Fatal(err)
	}
	if !(!dups[0] && dups[1] && !dups[2]) {
		t.Errorf("duplicates = %v, want only the second", dups)
	}
	if n, err := s.Count(context.Background(), nil); err != nil || n != 5 {
		t.Errorf("Count = %d, %v; want 5", n, err)
	}
}

// TestTwoCollectors has two stores on one database, as two collector
// replicas, write the same batches at once (an agent resending to the other
// replica after a reconnect): each batch is stored once, with a duplicate
// reported for the other, and both read everything.
func TestTwoCollectors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		stores := []Store{b.open(t), b.open(t)}
		const batches, size = 40, 25
		var wg sync.WaitGroup
		dups := make([][]bool, len(stores))
		errs := make([]error, len(stores))
		for k, s := range stores {
			dups[k] = make([]bool, batches)
			wg.Go(func() {
				for i := range batches {
					// Both in the same order, so they contend on each batch.
					dup, err := s.PutBatch(ctx, batchOf(fmt.Sprintf("b%02d", i), size))
					if err != nil {
						errs[k] = err
						return
					}
					dups[k][i] = dup
				}
			})
		}
		wg.Wait()
		for k, err := range errs {
			if err != nil {
				t.Fatalf("collector %d: %v", k, err)
			}
		}
		for i := range batches {
			if dups[0][i] == dups[1][i] {
				t.Errorf("batch %d: duplicate %v and %v, want exactly one duplicate", i, dups[0][i], dups[1][i])
			}
		}
		for k, s := range stores {
			n, err := s.Count(ctx, nil)
			if err != nil || n != batches*size {
				t.Errorf("collector %d: Count = %d, %v; want %d", k, n, err, batches*size)
			}
			seen := map[string]bool{}
			err = s.Stream(ctx, nil, "", 0, func(ex *reprisev1.Exchange, _ string) error {
				if seen[ex.GetId()] {
					return fmt.Errorf("%s streamed twice", ex.GetId())
				}
				seen[ex.GetId()] = true
				return nil
			})
			if err != nil || len(seen) != batches*size {
				t.Errorf("collector %d: streamed %d, %v", k, len(seen), err)
			}
		}
	})
}

// TestBatchIDsPerAgent checks that batch IDs are scoped to their agent:
// node-b's batch "shared-1" after node-a's is stored, while each agent's
// own resend is still a duplicate.
func TestBatchIDsPerAgent(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		a := batchOf("shared-1", 3)
		a.AgentID = "node-a"
		b := Batch{ID: "shared-1", AgentID: "node-b"}
		for i := range 4 {
			b.Exchanges = append(b.Exchanges, newEx(fmt.Sprintf("node-b-%d", i), time.Duration(i)*time.Millisecond))
		}
		for _, tt := range []struct {
			b       Batch
			wantDup bool
		}{{a, false}, {b, false}, {a, true}, {b, true}} {
			if dup, err := s.PutBatch(ctx, tt.b); err != nil || dup != tt.wantDup {
				t.Fatalf("PutBatch(%s of %s) = %v, %v; want duplicate %v", tt.b.ID, tt.b.AgentID, dup, err, tt.wantDup)
			}
		}
		if n, err := s.Count(ctx, nil); err != nil || n != 7 {
			t.Errorf("Count = %d, %v; want 7 (both agents' batches)", n, err)
		}
	})
}
