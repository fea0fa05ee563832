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

// Stats implements Store. The query walks the stats index in group order.
func (s *SQLite) Stats(ctx context.Context, filter *reprisev1.ExchangeFilter) ([]*reprisev1.EndpointStats, error) {
	q := statsQuery(sqliteSQL, filter)
	rows, err := s.db.QueryContext(ctx, q.sql.String(), q.args...)
	if err != nil {
		return nil, fmt.Errorf("query stats: %w", err)
	}
	defer rows.Close()
	return scanStats(rows)
}

// Services implements Store.
func (s *SQLite) Services(ctx context.Context, start, end *timestamppb.Timestamp) ([]*reprisev1.ServiceSummary, error) {
	q := servicesQuery(sqliteSQL, start, end)
	rows, err := s.db.QueryContext(ctx, q.sql.String(), q.args...)
	if err != nil {
		return nil, fmt.Errorf("query services: %w", err)
	}
	defer rows.Close()
	return scanServices(rows)
}
