package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// streamChunk is how many exchanges Stream reads per query. Short queries
// never hold a read transaction open while a slow client drains the stream,
// which would stop WAL checkpoints.
const streamChunk = 256

// migration brings the schema to its version: statements, then an optional
// data step in the same transaction.
type migration struct {
	stmts []string
	data  func(ctx context.Context, tx *sql.Tx) error
}

// migrations[i] brings the schema to version i+1. Append only: a released
// migration never changes.
var migrations = []migration{
	{stmts: []string{
		`CREATE TABLE exchanges (
			id          TEXT PRIMARY KEY,
			start_time  INTEGER NOT NULL, -- unix nanoseconds
			service     TEXT NOT NULL,
			direction   INTEGER NOT NULL,
			method      TEXT NOT NULL,    -- upper case
			path        TEXT NOT NULL,    -- request-target without query
			status_code INTEGER NOT NULL,
			host        TEXT NOT NULL,
			agent_id    TEXT NOT NULL,
			exchange    BLOB NOT NULL     -- the whole reprise.v1.Exchange, protobuf
		)`,
		`CREATE INDEX exchanges_time ON exchanges (start_time, id)`,
		`CREATE INDEX exchanges_service ON exchanges (service, start_time, id)`,
		`CREATE INDEX exchanges_direction ON exchanges (direction, start_time, id)`,
		`CREATE INDEX exchanges_method ON exchanges (method, start_time, id)`,
		`CREATE INDEX exchanges_path ON exchanges (path, start_time, id)`,
		`CREATE INDEX exchanges_status_code ON exchanges (status_code, start_time, id)`,
		`CREATE INDEX exchanges_host ON exchanges (host, start_time, id)`,
		`CREATE INDEX exchanges_agent_id ON exchanges (agent_id, start_time, id)`,
	}},
	// 2: duration and normalised endpoint columns (min-duration filter,
	// stats as an index scan) and compressed exchanges.
	{stmts: []string{
		`ALTER TABLE exchanges ADD COLUMN duration_ns INTEGER NOT NULL DEFAULT 0`,
		`ALTER TABLE exchanges ADD COLUMN endpoint TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE exchanges ADD COLUMN encoding INTEGER NOT NULL DEFAULT 0`,
		`CREATE INDEX exchanges_duration ON exchanges (duration_ns, start_time, id)`,
		// Covers GetStats and ListServices: rows come grouped, durations sorted.
		`CREATE INDEX exchanges_stats ON exchanges (service, endpoint, method, duration_ns, status_code)`,
	}, data: backfillV2},
	// 3: index diet. Every index is a B-tree insert per exchange, and the
	// pure-Go engine spent half of ingest maintaining eleven of them. Kept:
	// the primary key, time order, the stats index, and the selective
	// filters (service, path). Direction, method, host and agent have a
	// handful of values each and status and duration are ranges, so they
	// are evaluated as residual predicates on the time, service or path
	// range instead. The service and path indexes carry status and
	// duration, so the usual "what failed / what was slow here" page checks
	// them in the index and reads only the rows it returns.
	{stmts: []string{
		`DROP INDEX exchanges_direction`,
		`DROP INDEX exchanges_method`,
		`DROP INDEX exchanges_status_code`,
		`DROP INDEX exchanges_host`,
		`DROP INDEX exchanges_agent_id`,
		`DROP INDEX exchanges_duration`,
		`DROP INDEX exchanges_service`,
		`DROP INDEX exchanges_path`,
		`CREATE INDEX exchanges_service_v3 ON exchanges (service, start_time, id, status_code, duration_ns)`,
		`CREATE INDEX exchanges_path_v3 ON exchanges (path, start_time, id, status_code, duration_ns)`,
	}},
	// 4: the IDs of committed batches, so a batch resent after a lost ack
	// is stored once.
	{stmts: []string{
		`CREATE TABLE batches (
			id           TEXT PRIMARY KEY,
			agent_id     TEXT NOT NULL,
			committed_at INTEGER NOT NULL -- unix nanoseconds
		)`,
		`CREATE INDEX batches_committed_at ON batches (committed_at)`,
	}},
	// 5: exchanges are now written s2-compressed (encoding 2). Nothing to
	// change in the file; the version makes an older collector, which
	// cannot read those blobs, refuse the file instead of failing on reads.
	{},
	// 6: batch IDs are unique per agent, not across agents: each agent
	// names its own batches, and one agent's ID must not make another's
	// batch a duplicate.
	{stmts: []string{
		`CREATE TABLE batches_v6 (
			agent_id     TEXT NOT NULL,
			id           TEXT NOT NULL,
			committed_at INTEGER NOT NULL, -- unix nanoseconds
			PRIMARY KEY (agent_id, id)
		)`,
		`INSERT INTO batches_v6 (agent_id, id, committed_at) SELECT agent_id, id, committed_at FROM batches`,
		`DROP TABLE batches`,
		`ALTER TABLE batches_v6 RENAME TO batches`,
		`CREATE INDEX batches_committed_at ON batches (committed_at)`,
	}},
}

// backfillV2 fills the version 2 columns of exchanges stored by version 1
// and compresses them.
func backfillV2(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT rowid, id, exchange FROM exchanges WHERE encoding = ?`, encodingProto)
	if err != nil {
		return fmt.Errorf("read v1 exchanges: %w", err)
	}
	type update struct {
		rowid int64
		r     row
		blob  []byte
	}
	var updates []update
	for rows.Next() {
		var u update
		var id string
		var b []byte
		if err := rows.Scan(&u.rowid, &id, &b); err != nil {
			rows.Close()
			return fmt.Errorf("scan v1 exchange: %w", err)
		}
		ex, err := decode(id, encodingProto, b)
		if err != nil {
			rows.Close()
			return err
		}
		u.r = rowOf(ex)
		u.blob = zstdEncoder.EncodeAll(b, nil)
		updates = append(updates, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read v1 exchanges: %w", err)
	}
	for _, u := range updates {
		if _, err := tx.ExecContext(ctx, `UPDATE exchanges SET duration_ns = ?, endpoint = ?, exchange = ?, encoding = ? WHERE rowid = ?`,
			u.r.durationNs, u.r.endpoint, u.blob, encodingZstdProto, u.rowid); err != nil {
			return fmt.Errorf("update exchange %s: %w", u.r.id, err)
		}
	}
	return nil
}

// maxGroupRows bounds the exchanges of one group commit, so one
// transaction (and the WAL it grows) stays short.
const maxGroupRows = 8192

// groupWait bounds how long the writer holds a group open for Puts still
// being encoded: one commit (fsync, WAL frames of the touched index pages)
// then serves several batches, at the cost of a few ms of ack latency.
const groupWait = 5 * time.Millisecond

// SQLite is the embedded store: one local file.
//
// Puts are committed by one writer goroutine: SQLite has a single writer
// anyway, and the writer folds every Put waiting while it committed into its
// next transaction (group commit), so concurrent streams share one fsync.
type SQLite struct {
	db        *sql.DB
	in        *inserter // used by the writer goroutine only
	puts      chan *putRequest
	quit      chan struct{}
	written   chan struct{} // closed when the writer has returned
	closeOnce sync.Once
	// encoding counts Puts encoding their rows, not yet handed to the writer.
	encoding atomic.Int32
	// batchesPruned is when the writer last forgot old batch IDs.
	batchesPruned time.Time
}

// putRequest is one Put handed to the writer, already encoded.
type putRequest struct {
	ctx     context.Context
	batchID string
	agentID string
	rows    []row
	blobs   [][]byte
	done    chan putResult // buffered: the writer never waits on a caller
}

type putResult struct {
	duplicate bool
	err       error
}

// errClosed is returned by Put after Close.
var errClosed = errors.New("store is closed")

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating it if needed) the store file at path and brings
// its schema up to date.
func OpenSQLite(path string) (*SQLite, error) {
	if path == "" || strings.Contains(path, "?") {
		return nil, fmt.Errorf("open store %q: path must be non-empty and contain no '?'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// Create the file ourselves so captured traffic is readable by the owner only.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	f.Close()

	// Set on every pooled connection: WAL lets readers run beside the writer,
	// synchronous=FULL makes a commit durable before Put returns (an ack must
	// never be lost), and immediate transactions take the write lock at BEGIN
	// so concurrent writers wait on the busy timeout instead of failing.
	// A new file gets 64 KiB pages (an existing one keeps its own): every
	// WAL frame and checkpointed page costs a few syscalls whatever its
	// size, and with 4 KiB pages those were half of the writer's CPU. The
	// driver applies _pragma in name order and _journal_mode after them, so
	// page_size comes before WAL fixes the page size. Each connection's page
	// cache is 16 MiB, outside the Go heap: with 64 MiB, the caches of the
	// writer and the readers filled with the overflow pages of large rows
	// took the collector past 600 MB under hostile ingest.
	dsn := path + "?_pragma=page_size(65536)&_journal_mode=WAL&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=cache_size(-16384)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &SQLite{db: db, puts: make(chan *putRequest), quit: make(chan struct{}), written: make(chan struct{})}
	if err := s.migrate(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if s.in, err = newInserter(context.Background(), db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	go s.writer()
	return s, nil
}

func (s *SQLite) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this collector knows (%d)", version, len(migrations))
	}
	for v := version + 1; v <= len(migrations); v++ {
		m := migrations[v-1]
		for _, stmt := range m.stmts {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
		}
		if m.data != nil {
			if err := m.data(ctx, tx); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, v, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("record migration %d: %w", v, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit migrations: %w", err)
	}
	return nil
}

// Put implements Store.
func (s *SQLite) Put(ctx context.Context, exchanges []*reprisev1.Exchange) error {
	_, err := s.PutBatch(ctx, Batch{Exchanges: exchanges})
	return err
}

// PutBatch implements Store.
func (s *SQLite) PutBatch(ctx context.Context, b Batch) (bool, error) {
	if len(b.Exchanges) == 0 && b.ID == "" {
		return false, nil
	}
	// Encode before taking the write lock, so compression of one batch runs
	// while another commits.
	s.encoding.Add(1)
	rows, blobs, err := encodeRows(b.Exchanges)
	if err != nil {
		s.encoding.Add(-1)
		return false, err
	}
	req := &putRequest{ctx: ctx, batchID: b.ID, agentID: b.AgentID, rows: rows, blobs: blobs, done: make(chan putResult, 1)}
	// Counted until the writer has it, so it never sees neither.
	err = nil
	select {
	case s.puts <- req:
	case <-ctx.Done():
		err = fmt.Errorf("put: %w", ctx.Err())
	case <-s.quit:
		err = fmt.Errorf("put: %w", errClosed)
	}
	s.encoding.Add(-1)
	if err != nil {
		return false, err
	}
	// Wait for the commit even if ctx ends meanwhile: it is one transaction,
	// and returning early would let the caller believe nothing was written.
	res := <-req.done
	return res.duplicate, res.err
}

// writer commits the Puts one group at a time until Close.
func (s *SQLite) writer() {
	defer close(s.written)
	defer s.in.close()
	for {
		var group []*putRequest
		select {
		case r := <-s.puts:
			group = append(group, r)
		case <-s.quit:
			return
		}
		// Every Put that arrived during the last commit is waiting on the
		// channel now: take them all into this transaction.
		n := len(group[0].rows)
	gather:
		for n < maxGroupRows {
			select {
			case r := <-s.puts:
				group = append(group, r)
				n += len(r.rows)
			default:
				break gather
			}
		}
		if n < maxGroupRows && s.encoding.Load() > 0 {
			// More batches are on their way: take them into this commit too.
			t := time.NewTimer(groupWait)
		wait:
			for n < maxGroupRows && s.encoding.Load() > 0 {
				select {
				case r := <-s.puts:
					group = append(group, r)
					n += len(r.rows)
				case <-t.C:
					break wait
				case <-s.quit:
					break wait
				}
			}
			t.Stop()
		}
		s.commitGroup(group)
		if time.Since(s.batchesPruned) > time.Hour {
			s.batchesPruned = time.Now()
			if err := s.pruneBatches(context.Background(), batchCutoff(Retention{}, s.batchesPruned)); err != nil {
				slog.Warn("forget old batch ids", "component", "store", "err", err)
			}
		}
	}
}

// commitGroup commits the group in one transaction and answers each Put.
func (s *SQLite) commitGroup(group []*putRequest) {
	live := group[:0]
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.done <- putResult{err: fmt.Errorf("put: %w", err)}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	dups, err := s.in.insert(live)
	if err != nil && len(live) > 1 {
		// One bad Put must not fail the others: commit each on its own.
		for _, r := range live {
			dups, err := s.in.insert([]*putRequest{r})
			r.done <- putResult{duplicate: err == nil && dups[0], err: err}
		}
		return
	}
	for i, r := range live {
		r.done <- putResult{duplicate: err == nil && dups[i], err: err}
	}
}

// Get implements Store.
func (s *SQLite) Get(ctx context.Context, id string) (*reprisev1.Exchange, error) {
	var enc int
	var b []byte
	err := s.db.QueryRowContext(ctx, `SELECT encoding, exchange FROM exchanges WHERE id = ?`, id).Scan(&enc, &b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get exchange %s: %w", id, err)
	}
	return decode(id, enc, b)
}

// List implements Store.
func (s *SQLite) List(ctx context.Context, filter *reprisev1.ExchangeFilter, pageSize int, token string) ([]*reprisev1.Exchange, string, error) {
	return list(ctx, s.page, filter, pageSize, token)
}

// Count implements Store.
func (s *SQLite) Count(ctx context.Context, filter *reprisev1.ExchangeFilter) (int64, error) {
	q := countQuery(sqliteSQL, filter)
	var n int64
	if err := s.db.QueryRowContext(ctx, q.sql.String(), q.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count exchanges: %w", err)
	}
	return n, nil
}

// Stream implements Store.
func (s *SQLite) Stream(ctx context.Context, filter *reprisev1.ExchangeFilter, afterCursor string, limit int, fn func(*reprisev1.Exchange, string) error) error {
	return stream(ctx, s.page, filter, afterCursor, limit, fn)
}

func (s *SQLite) page(ctx context.Context, filter *reprisev1.ExchangeFilter, after *position, n int) ([]*reprisev1.Exchange, bool, error) {
	q := pageQuery(sqliteSQL, filter, after, n)
	rows, err := s.db.QueryContext(ctx, q.sql.String(), q.args...)
	if err != nil {
		return nil, false, fmt.Errorf("query exchanges: %w", err)
	}
	defer rows.Close()
	return scanPage(rows)
}

// Ping implements Store: it reads the schema table, so it fails when the
// file is gone or unreadable, not just when the pool is closed.
func (s *SQLite) Ping(ctx context.Context) error {
	var v int
	if err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

// Close implements Store. It waits for the commit in progress, if any.
func (s *SQLite) Close() error {
	s.closeOnce.Do(func() { close(s.quit) })
	<-s.written
	return s.db.Close()
}
