package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// group accumulates the exchanges of one service or endpoint.
type group struct {
	durations     []int64
	clientErrors  int64
	serverErrors  int64
	first, latest int64
}

func (g *group) add(durationNs int64, status int32, start int64) {
	if len(g.durations) == 0 || start < g.first {
		g.first = start
	}
	g.latest = max(g.latest, start)
	g.durations = append(g.durations, durationNs)
	switch status / 100 {
	case 4:
		g.clientErrors++
	case 5:
		g.serverErrors++
	}
}

// stats computes exact nearest-rank percentiles. The stats index usually
// hands durations over sorted already, which makes the sort cheap.
func (g *group) stats() *reprisev1.Stats {
	slices.Sort(g.durations)
	n := int64(len(g.durations))
	pct := func(p int64) *durationpb.Duration {
		// Nearest rank: the smallest value with at least p% at or below it.
		rank := (p*n + 99) / 100
		return durationpb.New(time.Duration(g.durations[max(rank, 1)-1]))
	}
	return &reprisev1.Stats{
		Count:        n,
		ClientErrors: g.clientErrors,
		ServerErrors: g.serverErrors,
		ErrorRate:    float64(g.serverErrors) / float64(n),
		P50:          pct(50),
		P95:          pct(95),
		P99:          pct(99),
	}
}

// Stats implements Store. The query walks the stats index in group order,
// so each group is finished as soon as the next one starts and only one
// group's durations are in memory at a time.
func (s *SQLite) Stats(ctx context.Context, filter *reprisev1.ExchangeFilter) ([]*reprisev1.EndpointStats, error) {
	where, args := whereClause(filter, nil)
	rows, err := s.db.QueryContext(ctx, `SELECT service, endpoint, method, duration_ns, status_code FROM exchanges`+where+
		` ORDER BY service, endpoint, method, duration_ns`, args...)
	if err != nil {
		return nil, fmt.Errorf("query stats: %w", err)
	}
	defer rows.Close()
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

// Services implements Store.
func (s *SQLite) Services(ctx context.Context, start, end *timestamppb.Timestamp) ([]*reprisev1.ServiceSummary, error) {
	where, args := whereClause(&reprisev1.ExchangeFilter{StartTime: start, EndTime: end}, nil)
	rows, err := s.db.QueryContext(ctx, `SELECT service, duration_ns, status_code, start_time FROM exchanges`+where+
		` ORDER BY service`, args...)
	if err != nil {
		return nil, fmt.Errorf("query services: %w", err)
	}
	defer rows.Close()
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
