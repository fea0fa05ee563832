package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// streamChunk is how many exchanges Stream reads per query. Reading in short
// keyset-paged queries keeps memory bounded and never holds a read
// transaction open while a slow client drains the stream, which would stop
// WAL checkpoints.
const streamChunk = 256

// migrations[i] brings the schema to version i+1. Append only: a released
// migration never changes.
var migrations = [][]string{
	{
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
	},
}

// SQLite is the embedded store: one local file.
type SQLite struct {
	db *sql.DB
}

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
	dsn := path + "?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=10000&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &SQLite{db: db}
	if err := s.migrate(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
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
		for _, stmt := range migrations[v-1] {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
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
	if len(exchanges) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin put: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO exchanges
		(id, start_time, service, direction, method, path, status_code, host, agent_id, exchange)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`)
	if err != nil {
		return fmt.Errorf("prepare put: %w", err)
	}
	defer stmt.Close()
	for _, ex := range exchanges {
		if ex.GetId() == "" {
			return errors.New("put exchange: empty id")
		}
		b, err := proto.Marshal(ex)
		if err != nil {
			return fmt.Errorf("marshal exchange %s: %w", ex.GetId(), err)
		}
		r := rowOf(ex)
		if _, err := stmt.ExecContext(ctx, r.id, r.startTime, r.service, r.direction, r.method,
			r.path, r.statusCode, r.host, r.agentID, b); err != nil {
			return fmt.Errorf("insert exchange %s: %w", r.id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit put: %w", err)
	}
	return nil
}

// Get implements Store.
func (s *SQLite) Get(ctx context.Context, id string) (*reprisev1.Exchange, error) {
	var b []byte
	err := s.db.QueryRowContext(ctx, `SELECT exchange FROM exchanges WHERE id = ?`, id).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get exchange %s: %w", id, err)
	}
	return unmarshal(id, b)
}

// List implements Store.
func (s *SQLite) List(ctx context.Context, filter *reprisev1.ExchangeFilter, pageSize int, pageToken string) ([]*reprisev1.Exchange, string, error) {
	if pageSize <= 0 {
		return nil, "", fmt.Errorf("list exchanges: page size %d must be positive", pageSize)
	}
	after, ok, err := parseToken(pageToken)
	if err != nil {
		return nil, "", err
	}
	var afterp *cursor
	if ok {
		afterp = &after
	}
	// One row more than the page tells whether another page follows.
	page, err := s.page(ctx, filter, afterp, pageSize+1)
	if err != nil {
		return nil, "", err
	}
	if len(page) <= pageSize {
		return page, "", nil
	}
	page = page[:pageSize]
	return page, cursorOf(page[len(page)-1]).token(), nil
}

// Stream implements Store.
func (s *SQLite) Stream(ctx context.Context, filter *reprisev1.ExchangeFilter, limit int, fn func(*reprisev1.Exchange) error) error {
	var after *cursor
	sent := 0
	for {
		n := streamChunk
		if limit > 0 && limit-sent < n {
			n = limit - sent
		}
		if n == 0 {
			return nil
		}
		page, err := s.page(ctx, filter, after, n)
		if err != nil {
			return err
		}
		for _, ex := range page {
			if err := fn(ex); err != nil {
				return err
			}
		}
		sent += len(page)
		if len(page) < n {
			return nil
		}
		c := cursorOf(page[len(page)-1])
		after = &c
	}
}

// page returns up to n matching exchanges after the cursor, in order.
func (s *SQLite) page(ctx context.Context, filter *reprisev1.ExchangeFilter, after *cursor, n int) ([]*reprisev1.Exchange, error) {
	where, args := whereClause(filter, after)
	args = append(args, n)
	rows, err := s.db.QueryContext(ctx, `SELECT id, exchange FROM exchanges`+where+
		` ORDER BY start_time, id LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("query exchanges: %w", err)
	}
	defer rows.Close()
	var out []*reprisev1.Exchange
	for rows.Next() {
		var id string
		var b []byte
		if err := rows.Scan(&id, &b); err != nil {
			return nil, fmt.Errorf("scan exchange: %w", err)
		}
		ex, err := unmarshal(id, b)
		if err != nil {
			return nil, err
		}
		out = append(out, ex)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query exchanges: %w", err)
	}
	return out, nil
}

func whereClause(f *reprisev1.ExchangeFilter, after *cursor) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, a ...any) {
		conds = append(conds, cond)
		args = append(args, a...)
	}
	if f.GetStartTime() != nil {
		add("start_time >= ?", f.GetStartTime().AsTime().UnixNano())
	}
	if f.GetEndTime() != nil {
		add("start_time < ?", f.GetEndTime().AsTime().UnixNano())
	}
	if f.GetService() != "" {
		add("service = ?", f.GetService())
	}
	if f.GetDirection() != reprisev1.Direction_DIRECTION_UNSPECIFIED {
		add("direction = ?", int32(f.GetDirection()))
	}
	if f.GetMethod() != "" {
		add("method = ?", strings.ToUpper(f.GetMethod()))
	}
	if p := f.GetPathPrefix(); p != "" {
		// The range bound lets SQLite use the path index; substr makes it exact
		// without LIKE's case folding and wildcards.
		add("path >= ? AND substr(path, 1, length(?)) = ?", p, p, p)
	}
	if f.GetStatusCode() != 0 {
		add("status_code = ?", f.GetStatusCode())
	}
	if f.GetHost() != "" {
		add("host = ?", f.GetHost())
	}
	if f.GetAgentId() != "" {
		add("agent_id = ?", f.GetAgentId())
	}
	if after != nil {
		add("(start_time, id) > (?, ?)", after.startTime, after.id)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

func unmarshal(id string, b []byte) (*reprisev1.Exchange, error) {
	ex := &reprisev1.Exchange{}
	if err := proto.Unmarshal(b, ex); err != nil {
		return nil, fmt.Errorf("unmarshal exchange %s: %w", id, err)
	}
	return ex, nil
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

// Close implements Store.
func (s *SQLite) Close() error {
	return s.db.Close()
}
