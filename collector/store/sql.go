package store

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// dialect is what differs between the SQL the two stores speak; everything
// else about a query (which columns, which conditions, which order) is
// built once, here.
type dialect int

const (
	sqliteSQL dialect = iota
	postgresSQL
)

// text is how a string goes into an indexed column or a condition on one.
// PostgreSQL text cannot hold NUL, which a captured request may carry; the
// exchange blob keeps the original.
func (d dialect) text(s string) string {
	if d == postgresSQL && strings.IndexByte(s, 0) >= 0 {
		return strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	return s
}

// query accumulates a statement and its arguments; "?" in a fragment is
// the next argument's placeholder in the dialect.
type query struct {
	d    dialect
	sql  strings.Builder
	args []any
}

func (q *query) add(fragment string, args ...any) {
	for _, a := range args {
		i := strings.IndexByte(fragment, '?')
		q.sql.WriteString(fragment[:i])
		q.args = append(q.args, a)
		if q.d == postgresSQL {
			fmt.Fprintf(&q.sql, "$%d", len(q.args))
		} else {
			q.sql.WriteByte('?')
		}
		fragment = fragment[i+1:]
	}
	q.sql.WriteString(fragment)
}

// where appends the conditions that select what filter matches after the
// position (nil: from the start).
func (q *query) where(f *reprisev1.ExchangeFilter, after *position) {
	n := 0
	cond := func(c string, args ...any) {
		if n == 0 {
			q.add(" WHERE ")
		} else {
			q.add(" AND ")
		}
		n++
		q.add(c, args...)
	}
	str := q.d.text
	prefix := func(p string) {
		// The range bound lets the store use the path index; substr makes it
		// exact without LIKE's case folding and wildcards.
		cond("path >= ? AND substr(path, 1, ?) = ?", str(p), utf8.RuneCountInString(str(p)), str(p))
	}
	if f.GetStartTime() != nil {
		cond("start_time >= ?", f.GetStartTime().AsTime().UnixNano())
	}
	if f.GetEndTime() != nil {
		cond("start_time < ?", f.GetEndTime().AsTime().UnixNano())
	}
	if f.GetService() != "" {
		cond("service = ?", str(f.GetService()))
	}
	if f.GetDirection() != reprisev1.Direction_DIRECTION_UNSPECIFIED {
		cond("direction = ?", int32(f.GetDirection()))
	}
	if f.GetMethod() != "" {
		cond("method = ?", str(strings.ToUpper(f.GetMethod())))
	}
	if p := f.GetPathPrefix(); p != "" {
		prefix(p)
	}
	if g := f.GetPathGlob(); g != "" {
		if p := globPrefix(g); p != "" {
			prefix(p)
		}
		if q.d == postgresSQL {
			// PostgreSQL has no GLOB: match the regular expression the
			// Matcher uses, which is also valid in PostgreSQL's syntax.
			re, err := globRegexp(g)
			if err != nil {
				// Validated by the API; a malformed glob selects nothing.
				cond("false")
				return
			}
			cond("path ~ ?", str(re.String()))
		} else {
			cond("path GLOB ?", g)
		}
	}
	if f.GetStatusCode() != 0 {
		cond("status_code = ?", f.GetStatusCode())
	}
	if c := f.GetStatusClass(); c != 0 {
		cond("status_code >= ? AND status_code < ?", c*100, c*100+100)
	}
	if f.GetMinDuration() != nil {
		cond("duration_ns >= ?", f.GetMinDuration().AsDuration().Nanoseconds())
	}
	if f.GetHost() != "" {
		cond("host = ?", str(f.GetHost()))
	}
	if f.GetAgentId() != "" {
		cond("agent_id = ?", str(f.GetAgentId()))
	}
	if after != nil {
		cond("(start_time, id) > (?, ?)", after.startTime, str(after.id))
	}
}

// The statements both stores run, with the filter's conditions.

func pageQuery(d dialect, f *reprisev1.ExchangeFilter, after *position, n int) *query {
	q := &query{d: d}
	q.add("SELECT id, encoding, exchange FROM exchanges")
	q.where(f, after)
	q.add(" ORDER BY start_time, id LIMIT ?", n)
	return q
}

func countQuery(d dialect, f *reprisev1.ExchangeFilter) *query {
	q := &query{d: d}
	q.add("SELECT count(*) FROM exchanges")
	q.where(f, nil)
	return q
}

func statsQuery(d dialect, f *reprisev1.ExchangeFilter) *query {
	q := &query{d: d}
	q.add("SELECT service, endpoint, method, duration_ns, status_code FROM exchanges")
	q.where(f, nil)
	q.add(" ORDER BY service, endpoint, method, duration_ns")
	return q
}

func servicesQuery(d dialect, start, end *timestamppb.Timestamp) *query {
	q := &query{d: d}
	q.add("SELECT service, duration_ns, status_code, start_time FROM exchanges")
	q.where(&reprisev1.ExchangeFilter{StartTime: start, EndTime: end}, nil)
	q.add(" ORDER BY service")
	return q
}

// rowScanner is what database/sql and pgx result sets have in common.
type rowScanner interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// scanPage decodes the exchanges of a pageQuery, up to PageBytes of them
// (and always the first); full reports that it stopped there with rows left.
func scanPage(rows rowScanner) (out []*reprisev1.Exchange, full bool, err error) {
	total := 0
	for rows.Next() {
		var id string
		var enc int
		var b []byte
		if err := rows.Scan(&id, &enc, &b); err != nil {
			return nil, false, fmt.Errorf("scan exchange: %w", err)
		}
		ex, err := decode(id, enc, b)
		if err != nil {
			return nil, false, err
		}
		size := proto.Size(ex)
		if len(out) > 0 && total+size > PageBytes {
			return out, true, nil
		}
		out, total = append(out, ex), total+size
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("query exchanges: %w", err)
	}
	return out, false, nil
}

// scanStats groups the rows of a statsQuery. They come in group order, so
// each group is finished as soon as the next one starts and only one
// group's durations are in memory at a time.
func scanStats(rows rowScanner) ([]*reprisev1.EndpointStats, error) {
	var out []*reprisev1.EndpointStats
	var cur *reprisev1.EndpointStats
	g := &group{}
	flush := func() {
		if cur != nil {
			cur.Stats = g.stats()
			out = append(out, cur)
		}
		g = &group{}
	}
	for rows.Next() {
		var service, ep, method string
		var d int64
		var status int32
		if err := rows.Scan(&service, &ep, &method, &d, &status); err != nil {
			return nil, fmt.Errorf("scan stats: %w", err)
		}
		if cur == nil || cur.Service != service || cur.Endpoint != ep || cur.Method != method {
			flush()
			cur = &reprisev1.EndpointStats{Service: service, Endpoint: ep, Method: method}
		}
		g.add(d, status, 0)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query stats: %w", err)
	}
	flush()
	return out, nil
}

// scanServices groups the rows of a servicesQuery.
func scanServices(rows rowScanner) ([]*reprisev1.ServiceSummary, error) {
	var out []*reprisev1.ServiceSummary
	var cur *reprisev1.ServiceSummary
	g := &group{}
	flush := func() {
		if cur != nil {
			cur.Stats = g.stats()
			cur.FirstSeen = timestamppb.New(time.Unix(0, g.first))
			cur.LastSeen = timestamppb.New(time.Unix(0, g.latest))
			out = append(out, cur)
		}
		g = &group{}
	}
	for rows.Next() {
		var service string
		var d, startNs int64
		var status int32
		if err := rows.Scan(&service, &d, &status, &startNs); err != nil {
			return nil, fmt.Errorf("scan services: %w", err)
		}
		if cur == nil || cur.Service != service {
			flush()
			cur = &reprisev1.ServiceSummary{Service: service}
		}
		g.add(d, status, startNs)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query services: %w", err)
	}
	flush()
	return out, nil
}
