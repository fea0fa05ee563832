package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"time"
)

// insertRows is the most rows one INSERT statement writes. A statement
// keeps its B-tree cursors open from row to row, so a row that goes right
// after the previous one in a B-tree (time order, UUIDv7 ids, one busy
// endpoint) is placed without a search from the root, and the statement is
// set up once for all its rows: SQLite runs 0.52× the instructions per
// exchange of one row per statement there, 0.92× with rows spread over
// many endpoints (BenchmarkPutBatch).
const (
	insertRowsLog = 7
	insertRows    = 1 << insertRowsLog
)

// inserter writes the exchanges of the writer goroutine. It holds a
// connection of its own, so its statements are prepared once instead of
// at every transaction, and its page cache stays warm: in WAL mode a
// connection drops its cache when another one wrote since it last read,
// which a pooled connection serving queries in between would do.
type inserter struct {
	conn *sql.Conn
	// rows[k] inserts 1<<k exchanges, prepared on first use; a Put's rows
	// go in chunks of decreasing powers of two.
	rows  [insertRowsLog + 1]*sql.Stmt
	batch *sql.Stmt
	args  []any
}

func newInserter(ctx context.Context, db *sql.DB) (*inserter, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("writer connection: %w", err)
	}
	// Seen by the transaction too, so a batch twice in one group is stored
	// once.
	batch, err := conn.PrepareContext(ctx, `INSERT INTO batches (id, agent_id, committed_at) VALUES (?, ?, ?)
		ON CONFLICT (agent_id, id) DO NOTHING`)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("prepare put: %w", err)
	}
	return &inserter{conn: conn, batch: batch}, nil
}

func (in *inserter) close() {
	for _, st := range in.rows {
		if st != nil {
			st.Close()
		}
	}
	in.batch.Close()
	in.conn.Close()
}

// insert writes the Puts in one transaction and reports which were
// duplicate batches. It runs on the writer's context, not a caller's: the
// transaction is shared.
func (in *inserter) insert(reqs []*putRequest) (dups []bool, err error) {
	ctx := context.Background()
	if _, err := in.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return nil, fmt.Errorf("begin put: %w", err)
	}
	defer func() {
		if err != nil {
			if _, rerr := in.conn.ExecContext(ctx, "ROLLBACK"); rerr != nil {
				err = errors.Join(err, fmt.Errorf("roll back put: %w", rerr))
			}
		}
	}()
	dups = make([]bool, len(reqs))
	now := time.Now().UnixNano()
	for k, req := range reqs {
		if req.batchID != "" {
			res, err := in.batch.ExecContext(ctx, req.batchID, req.agentID, now)
			if err != nil {
				return nil, fmt.Errorf("record batch %s: %w", req.batchID, err)
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				dups[k] = true
				continue
			}
		}
		for i := 0; i < len(req.rows); {
			n := 1 << (bits.Len(uint(min(len(req.rows)-i, insertRows))) - 1)
			if err := in.insertChunk(ctx, req.rows[i:i+n], req.blobs[i:i+n]); err != nil {
				return nil, err
			}
			i += n
		}
	}
	if _, err := in.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return nil, fmt.Errorf("commit put: %w", err)
	}
	return dups, nil
}

// insertChunk inserts len(rows), a power of two, exchanges in one statement.
func (in *inserter) insertChunk(ctx context.Context, rows []row, blobs [][]byte) error {
	k := bits.Len(uint(len(rows))) - 1
	if in.rows[k] == nil {
		st, err := in.conn.PrepareContext(ctx, insertSQL(len(rows)))
		if err != nil {
			return fmt.Errorf("prepare put: %w", err)
		}
		in.rows[k] = st
	}
	args := in.args[:0]
	for i, r := range rows {
		args = append(args, r.id, r.startTime, r.durationNs, r.service, r.direction, r.method,
			r.path, r.endpoint, r.statusCode, r.host, r.agentID, blobEncoding, blobs[i])
	}
	_, err := in.rows[k].ExecContext(ctx, args...)
	clear(args) // the blobs are not kept alive until the next chunk
	in.args = args
	if err != nil {
		return fmt.Errorf("insert exchanges %s…%s: %w", rows[0].id, rows[len(rows)-1].id, err)
	}
	return nil
}

// insertSQL is the INSERT of n exchanges. An id already stored is skipped.
// OR IGNORE rather than ON CONFLICT DO NOTHING: an id is the only
// constraint a row can break (no value is ever NULL), and with no conflict
// left that could abort it, a statement of many rows needs no statement
// journal. That journal copies every page the statement changes, 64 KiB
// each, which made scattered inserts (random ids, many endpoints) 4× as
// costly as one row per statement. Any other failure rolls back the whole
// transaction.
func insertSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT OR IGNORE INTO exchanges
		(id, start_time, duration_ns, service, direction, method, path, endpoint, status_code, host, agent_id, encoding, exchange)
		VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?,?)")
	}
	return b.String()
}
