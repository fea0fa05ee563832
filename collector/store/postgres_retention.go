package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgPartition is one partition of the exchanges table.
type pgPartition struct {
	name   string
	lo, hi int64 // start times in [lo, hi)
	bytes  int64 // table, indexes and TOAST
}

// Prune implements Store. Age drops the partitions wholly older than the
// cutoff and deletes the older rows of the one it falls in. Size drops the
// oldest partitions while the data takes more than MaxBytes, but never the
// one holding the newest exchange: deleted rows do not shrink a PostgreSQL
// table, a dropped partition does, so size is kept one day at a time.
func (s *Postgres) Prune(ctx context.Context, policy Retention, now time.Time) (int64, error) {
	if err := s.pruneBatches(ctx, batchCutoff(policy, now)); err != nil {
		return 0, err
	}
	var deleted int64
	if policy.MaxAge > 0 {
		cutoff := now.Add(-policy.MaxAge).UnixNano()
		n, err := s.dropPartitions(ctx, func(parts []pgPartition, _ int64) []pgPartition {
			return slices.DeleteFunc(parts, func(p pgPartition) bool { return p.hi > cutoff })
		})
		deleted += n
		if err != nil {
			return deleted, err
		}
		tag, err := s.pool.Exec(ctx, `DELETE FROM exchanges WHERE start_time < $1`, cutoff)
		if err != nil {
			return deleted, fmt.Errorf("prune exchanges: %w", err)
		}
		deleted += tag.RowsAffected()
	}
	if policy.MaxBytes > 0 {
		n, err := s.dropPartitions(ctx, func(parts []pgPartition, newest int64) []pgPartition {
			var total int64
			for _, p := range parts {
				total += p.bytes
			}
			var drop []pgPartition
			for _, p := range parts {
				if total <= policy.MaxBytes || p.hi > newest {
					break
				}
				drop = append(drop, p)
				total -= p.bytes
			}
			return drop
		})
		deleted += n
		if err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// dropPartitions drops the partitions pick chooses from all of them, oldest
// first, given the start time of the newest exchange, and returns how many
// exchanges they held.
func (s *Postgres) dropPartitions(ctx context.Context, pick func(parts []pgPartition, newest int64) []pgPartition) (int64, error) {
	var deleted int64
	var dropped []pgPartition
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockPartitions)); err != nil {
			return fmt.Errorf("lock partitions: %w", err)
		}
		parts, err := partitions(ctx, tx)
		if err != nil {
			return err
		}
		var newest int64
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(start_time), 0) FROM exchanges`).Scan(&newest); err != nil {
			return fmt.Errorf("read newest exchange: %w", err)
		}
		for _, p := range pick(parts, newest) {
			// Counted for the pruned metric; a row another collector adds
			// between count and drop (only an import of old traffic would)
			// goes uncounted.
			var n int64
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+p.name).Scan(&n); err != nil {
				return fmt.Errorf("count partition %s: %w", p.name, err)
			}
			if _, err := tx.Exec(ctx, `DROP TABLE `+p.name); err != nil {
				return fmt.Errorf("drop partition %s: %w", p.name, err)
			}
			deleted += n
			dropped = append(dropped, p)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune exchanges: %w", err)
	}
	for _, p := range dropped {
		s.parts.Delete(p.lo)
	}
	return deleted, nil
}

// partitions lists the partitions of exchanges, oldest first.
func partitions(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) ([]pgPartition, error) {
	rows, err := q.Query(ctx, `SELECT c.oid::regclass::text, pg_get_expr(c.relpartbound, c.oid), pg_total_relation_size(c.oid)
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'exchanges'::regclass`)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	defer rows.Close()
	var parts []pgPartition
	for rows.Next() {
		var p pgPartition
		var bound string
		if err := rows.Scan(&p.name, &bound, &p.bytes); err != nil {
			return nil, fmt.Errorf("list partitions: %w", err)
		}
		if _, err := fmt.Sscanf(strings.ReplaceAll(bound, "'", ""), "FOR VALUES FROM (%d) TO (%d)", &p.lo, &p.hi); err != nil {
			return nil, fmt.Errorf("partition %s has bound %q: %w", p.name, bound, err)
		}
		parts = append(parts, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	slices.SortFunc(parts, func(a, b pgPartition) int { return cmp.Compare(a.lo, b.lo) })
	return parts, nil
}

// pruneBatches forgets the IDs of batches committed before cutoff.
func (s *Postgres) pruneBatches(ctx context.Context, cutoff int64) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM batches WHERE committed_at < $1`, cutoff); err != nil {
		return fmt.Errorf("prune batch ids: %w", err)
	}
	return nil
}
