package store

import (
	"context"
	"fmt"
	"time"
)

// pruneChunk bounds one delete transaction, so ingest waits for the write
// lock at most that long while retention runs.
const pruneChunk = 2000

// Prune implements Store. Size is the pages in use (the file minus its free
// list): SQLite reuses freed pages for new exchanges, so the file settles
// near MaxBytes instead of shrinking.
func (s *SQLite) Prune(ctx context.Context, policy Retention, now time.Time) (int64, error) {
	if err := s.pruneBatches(ctx, batchCutoff(policy, now)); err != nil {
		return 0, err
	}
	var deleted int64
	if policy.MaxAge > 0 {
		cutoff := now.Add(-policy.MaxAge).UnixNano()
		for {
			n, err := s.deleteOldest(ctx, pruneChunk, `WHERE start_time < ?`, cutoff)
			deleted += n
			if err != nil {
				return deleted, err
			}
			if n < pruneChunk {
				break
			}
		}
	}
	if policy.MaxBytes > 0 {
		for {
			used, err := s.usedBytes(ctx)
			if err != nil {
				return deleted, err
			}
			if used <= policy.MaxBytes {
				break
			}
			count, err := s.Count(ctx, nil)
			if err != nil {
				return deleted, err
			}
			// Delete the share of rows the excess is of the data, a little
			// more each round than the estimate so the loop ends quickly.
			share := count*(used-policy.MaxBytes)/used + 1
			n, err := s.deleteOldest(ctx, min(share, pruneChunk), "")
			deleted += n
			if err != nil {
				return deleted, err
			}
			if n == 0 {
				break // nothing left to delete; the rest is schema and free pages
			}
		}
	}
	return deleted, nil
}

// deleteOldest deletes up to limit of the oldest exchanges matching where.
func (s *SQLite) deleteOldest(ctx context.Context, limit int64, where string, args ...any) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM exchanges WHERE rowid IN (
		SELECT rowid FROM exchanges `+where+` ORDER BY start_time, id LIMIT ?)`, append(args, limit)...)
	if err != nil {
		return 0, fmt.Errorf("prune exchanges: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune exchanges: %w", err)
	}
	return n, nil
}

func (s *SQLite) usedBytes(ctx context.Context) (int64, error) {
	var pages, free, size int64
	err := s.db.QueryRowContext(ctx, `SELECT p.page_count, f.freelist_count, s.page_size
		FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s`).Scan(&pages, &free, &size)
	if err != nil {
		return 0, fmt.Errorf("measure store size: %w", err)
	}
	return (pages - free) * size, nil
}

// pruneBatches forgets the IDs of batches committed before cutoff.
func (s *SQLite) pruneBatches(ctx context.Context, cutoff int64) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM batches WHERE committed_at < ?`, cutoff); err != nil {
		return fmt.Errorf("prune batch ids: %w", err)
	}
	return nil
}
