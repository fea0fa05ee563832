package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/timestamppb"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// pgMigrations[i] brings a PostgreSQL schema to version i+1. Append only.
//
// exchanges is partitioned by day of start time, so retention by age drops
// whole partitions instead of deleting rows. A unique key must contain the
// partition key, so exchanges are unique by (start_time, id): a resent
// exchange carries its start time, and the id index serves Get. Text
// columns compare bytewise (COLLATE "C"), as SQLite does, so both stores
// order ids and paths alike. The indexes are the SQLite store's: time
// order, and the selective filters (service, path) carrying status and
// duration; the other filters are residual predicates on those ranges.
var pgMigrations = [][]string{
	{
		`CREATE TABLE exchanges (
			start_time  bigint NOT NULL, -- unix nanoseconds
			id          text COLLATE "C" NOT NULL,
			duration_ns bigint NOT NULL,
			service     text COLLATE "C" NOT NULL,
			direction   integer NOT NULL,
			method      text COLLATE "C" NOT NULL, -- upper case
			path        text COLLATE "C" NOT NULL, -- request-target without query
			endpoint    text COLLATE "C" NOT NULL,
			status_code integer NOT NULL,
			host        text COLLATE "C" NOT NULL,
			agent_id    text COLLATE "C" NOT NULL,
			encoding    smallint NOT NULL,
			exchange    bytea NOT NULL,
			PRIMARY KEY (start_time, id)
		) PARTITION BY RANGE (start_time)`,
		`CREATE INDEX exchanges_id ON exchanges (id)`,
		`CREATE INDEX exchanges_service ON exchanges (service, start_time, id) INCLUDE (status_code, duration_ns)`,
		`CREATE INDEX exchanges_path ON exchanges (path, start_time, id) INCLUDE (status_code, duration_ns)`,
		`CREATE TABLE batches (
			id           text PRIMARY KEY,
			agent_id     text NOT NULL,
			committed_at bigint NOT NULL -- unix nanoseconds
		)`,
		`CREATE INDEX batches_committed_at ON batches (committed_at)`,
	},
	// 2: exchanges are now written s2-compressed (encoding 2); like SQLite's
	// version 5 it changes no table, it makes older collectors refuse the
	// database instead of failing on reads.
	{},
	// 3: batch IDs are unique per agent (SQLite's version 6).
	{
		`ALTER TABLE batches DROP CONSTRAINT batches_pkey`,
		`ALTER TABLE batches ADD PRIMARY KEY (agent_id, id)`,
	},
}

// Advisory lock keys: migrations and partition changes of one database are
// serialised across collectors.
const (
	lockMigrate    = 0x7265707269736501
	lockPartitions = 0x7265707269736502
)

// openTimeout bounds connecting and migrating at open.
const openTimeout = 30 * time.Second

// partitionSpan is the time range of one exchanges partition.
const partitionSpan = int64(24 * time.Hour)

// Postgres is the shared store: any number of collectors write to and read
// from one PostgreSQL database at once.
type Postgres struct {
	pool *pgxpool.Pool
	// parts holds the first nanosecond of each partition known to exist.
	parts  sync.Map
	closed atomic.Bool
	// batchesPruned is when old batch IDs were last forgotten (unix ns).
	batchesPruned atomic.Int64
}

var _ Store = (*Postgres)(nil)

// OpenPostgres connects to the database at url (postgres://…) and brings its
// schema up to date.
func OpenPostgres(ctx context.Context, url string) (*Postgres, error) {
	// Errors here never quote url: it may hold a password.
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, errors.New("open store: invalid PostgreSQL URL")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Postgres{pool: pool}
	// Bounded, so a collector started against an unreachable server says so.
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

func (s *Postgres) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Another collector may be migrating the same database right now.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockMigrate)); err != nil {
			return fmt.Errorf("lock migrations: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			applied_at bigint NOT NULL
		)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var version int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&version); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if version > len(pgMigrations) {
			return fmt.Errorf("schema version %d is newer than this collector knows (%d)", version, len(pgMigrations))
		}
		for v := version + 1; v <= len(pgMigrations); v++ {
			for _, stmt := range pgMigrations[v-1] {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("migration %d: %w", v, err)
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, v, time.Now().UnixNano()); err != nil {
				return fmt.Errorf("record migration %d: %w", v, err)
			}
		}
		return nil
	})
}

// partitionStart is the first nanosecond of the partition holding t.
func partitionStart(t int64) int64 {
	lo := t - t%partitionSpan
	if t < 0 && t%partitionSpan != 0 {
		lo -= partitionSpan
	}
	return lo
}

// ensurePartitions creates the partitions that rows go to, and the one
// after today's ahead of time, unless known to exist.
func (s *Postgres) ensurePartitions(ctx context.Context, rows []row) error {
	need := []int64{partitionStart(time.Now().UnixNano()) + partitionSpan}
	for _, r := range rows {
		need = append(need, partitionStart(r.startTime))
	}
	slices.Sort(need)
	need = slices.Compact(need)
	need = slices.DeleteFunc(need, func(lo int64) bool { _, ok := s.parts.Load(lo); return ok })
	if len(need) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// IF NOT EXISTS alone races: two creators can both miss the table.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockPartitions)); err != nil {
			return fmt.Errorf("lock partitions: %w", err)
		}
		for _, lo := range need {
			name := pgx.Identifier{"exchanges_" + time.Unix(0, lo).UTC().Format("20060102")}.Sanitize()
			if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF exchanges FOR VALUES FROM (%d) TO (%d)`,
				name, lo, lo+partitionSpan)); err != nil {
				return fmt.Errorf("create partition %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, lo := range need {
		s.parts.Store(lo, struct{}{})
	}
	return nil
}

// Put implements Store.
func (s *Postgres) Put(ctx context.Context, exchanges []*reprisev1.Exchange) error {
	_, err := s.PutBatch(ctx, Batch{Exchanges: exchanges})
	return err
}

// PutBatch implements Store. Each batch is its own transaction: the server
// folds concurrent commits into one WAL flush itself.
func (s *Postgres) PutBatch(ctx context.Context, b Batch) (bool, error) {
	if s.closed.Load() {
		return false, fmt.Errorf("put: %w", errClosed)
	}
	if len(b.Exchanges) == 0 && b.ID == "" {
		return false, nil
	}
	rows, blobs, err := encodeRows(b.Exchanges)
	if err != nil {
		return false, err
	}
	rows, blobs = firstOfEachID(rows, blobs)
	if err := s.ensurePartitions(ctx, rows); err != nil {
		return false, err
	}
	dup, err := s.insert(ctx, b, rows, blobs)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23514" {
		// No partition for a row: another collector's retention dropped
		// one this collector knew. Learn the partitions again, once.
		s.parts.Clear()
		if err := s.ensurePartitions(ctx, rows); err != nil {
			return false, err
		}
		dup, err = s.insert(ctx, b, rows, blobs)
	}
	if err != nil {
		return false, err
	}
	if last := s.batchesPruned.Load(); time.Since(time.Unix(0, last)) > time.Hour && s.batchesPruned.CompareAndSwap(last, time.Now().UnixNano()) {
		// The batch is committed: a failure here must not fail its ack.
		if err := s.pruneBatches(ctx, batchCutoff(Retention{}, time.Now())); err != nil {
			slog.Warn("forget old batch ids", "component", "store", "err", err)
		}
	}
	return dup, nil
}

// firstOfEachID keeps the first exchange of each id, as SQLite's primary key
// on id does within a batch.
func firstOfEachID(rows []row, blobs [][]byte) ([]row, [][]byte) {
	seen := make(map[string]bool, len(rows))
	outRows, outBlobs := rows[:0:0], blobs[:0:0]
	for i, r := range rows {
		if seen[r.id] {
			continue
		}
		seen[r.id] = true
		outRows, outBlobs = append(outRows, r), append(outBlobs, blobs[i])
	}
	return outRows, outBlobs
}

// insert records the batch ID and writes the rows in one transaction, unless
// the ID was recorded before. A concurrent insert of the same ID by another
// collector waits on the key until that one commits or rolls back.
func (s *Postgres) insert(ctx context.Context, b Batch, rows []row, blobs [][]byte) (bool, error) {
	d := postgresSQL
	n := len(rows)
	var (
		starts, durations                               = make([]int64, n), make([]int64, n)
		ids, services, methods, paths, endpoints, hosts = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		agents                                          = make([]string, n)
		directions, statuses                            = make([]int32, n), make([]int32, n)
		encodings                                       = make([]int16, n)
	)
	for i, r := range rows {
		starts[i], durations[i] = r.startTime, r.durationNs
		ids[i], services[i], methods[i], paths[i] = d.text(r.id), d.text(r.service), d.text(r.method), d.text(r.path)
		endpoints[i], hosts[i], agents[i] = d.text(r.endpoint), d.text(r.host), d.text(r.agentID)
		directions[i], statuses[i], encodings[i] = r.direction, r.statusCode, blobEncoding
	}
	dup := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if b.ID != "" {
			tag, err := tx.Exec(ctx, `INSERT INTO batches (id, agent_id, committed_at) VALUES ($1, $2, $3) ON CONFLICT (agent_id, id) DO NOTHING`,
				d.text(b.ID), d.text(b.AgentID), time.Now().UnixNano())
			if err != nil {
				return fmt.Errorf("record batch %s: %w", b.ID, err)
			}
			if dup = tag.RowsAffected() == 0; dup {
				return nil
			}
		}
		if n == 0 {
			return nil
		}
		// One statement with a column array each: one round trip per batch.
		_, err := tx.Exec(ctx, `INSERT INTO exchanges
			(start_time, id, duration_ns, service, direction, method, path, endpoint, status_code, host, agent_id, encoding, exchange)
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::integer[], $6::text[], $7::text[],
				$8::text[], $9::integer[], $10::text[], $11::text[], $12::smallint[], $13::bytea[])
			ON CONFLICT DO NOTHING`,
			starts, ids, durations, services, directions, methods, paths, endpoints, statuses, hosts, agents, encodings, blobs)
		if err != nil {
			return fmt.Errorf("insert exchanges: %w", err)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("put: %w", err)
	}
	return dup, nil
}

// Get implements Store.
func (s *Postgres) Get(ctx context.Context, id string) (*reprisev1.Exchange, error) {
	var enc int
	var b []byte
	err := s.pool.QueryRow(ctx, `SELECT encoding, exchange FROM exchanges WHERE id = $1 ORDER BY start_time LIMIT 1`,
		postgresSQL.text(id)).Scan(&enc, &b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get exchange %s: %w", id, err)
	}
	return decode(id, enc, b)
}

// List implements Store.
func (s *Postgres) List(ctx context.Context, filter *reprisev1.ExchangeFilter, pageSize int, token string) ([]*reprisev1.Exchange, string, error) {
	return list(ctx, s.page, filter, pageSize, token)
}

// Count implements Store.
func (s *Postgres) Count(ctx context.Context, filter *reprisev1.ExchangeFilter) (int64, error) {
	q := countQuery(postgresSQL, filter)
	var n int64
	if err := s.pool.QueryRow(ctx, q.sql.String(), q.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count exchanges: %w", err)
	}
	return n, nil
}

// Stream implements Store.
func (s *Postgres) Stream(ctx context.Context, filter *reprisev1.ExchangeFilter, afterCursor string, limit int, fn func(*reprisev1.Exchange, string) error) error {
	return stream(ctx, s.page, filter, afterCursor, limit, fn)
}

func (s *Postgres) page(ctx context.Context, filter *reprisev1.ExchangeFilter, after *position, n int) ([]*reprisev1.Exchange, bool, error) {
	q := pageQuery(postgresSQL, filter, after, n)
	rows, err := s.pool.Query(ctx, q.sql.String(), q.args...)
	if err != nil {
		return nil, false, fmt.Errorf("query exchanges: %w", err)
	}
	defer rows.Close()
	return scanPage(rows)
}

// Stats implements Store.
func (s *Postgres) Stats(ctx context.Context, filter *reprisev1.ExchangeFilter) ([]*reprisev1.EndpointStats, error) {
	q := statsQuery(postgresSQL, filter)
	rows, err := s.pool.Query(ctx, q.sql.String(), q.args...)
	if err != nil {
		return nil, fmt.Errorf("query stats: %w", err)
	}
	defer rows.Close()
	return scanStats(rows)
}

// Services implements Store.
func (s *Postgres) Services(ctx context.Context, start, end *timestamppb.Timestamp) ([]*reprisev1.ServiceSummary, error) {
	q := servicesQuery(postgresSQL, start, end)
	rows, err := s.pool.Query(ctx, q.sql.String(), q.args...)
	if err != nil {
		return nil, fmt.Errorf("query services: %w", err)
	}
	defer rows.Close()
	return scanServices(rows)
}

// Ping implements Store: it reads the schema table, so it fails when the
// database is unreachable or not the collector's.
func (s *Postgres) Ping(ctx context.Context) error {
	var v int
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

// Close implements Store. It waits for the queries in progress.
func (s *Postgres) Close() error {
	s.closed.Store(true)
	s.pool.Close()
	return nil
}
