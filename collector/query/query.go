// Package query implements QueryService over a store.
package query

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/store"
	"github.com/reprise-dev/reprise/collector/tail"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// Service implements reprisev1.QueryServiceServer.
type Service struct {
	reprisev1.UnimplementedQueryServiceServer
	store   store.Store
	hub     *tail.Hub
	metrics metrics.Metrics
	log     *slog.Logger
}

// New returns the query service reading from st; Tail follows hub.
func New(st store.Store, hub *tail.Hub, m metrics.Metrics) *Service {
	return &Service{store: st, hub: hub, metrics: m, log: slog.With("component", "query")}
}

// ListExchanges implements reprisev1.QueryServiceServer.
func (s *Service) ListExchanges(ctx context.Context, req *reprisev1.ListExchangesRequest) (*reprisev1.ListExchangesResponse, error) {
	if err := validateFilter(req.GetFilter()); err != nil {
		return nil, err
	}
	if err := validateString("page_token", req.GetPageToken()); err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, status.Errorf(codes.InvalidArgument, "page_size must not be negative, got %d", size)
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	exs, next, err := s.store.List(ctx, req.GetFilter(), size, req.GetPageToken())
	if errors.Is(err, store.ErrInvalidPageToken) {
		return nil, status.Errorf(codes.InvalidArgument, "page_token: %v", err)
	}
	if err != nil {
		return nil, s.storeError(ctx, "list", err)
	}
	return &reprisev1.ListExchangesResponse{Exchanges: exs, NextPageToken: next}, nil
}

// GetExchange implements reprisev1.QueryServiceServer.
func (s *Service) GetExchange(ctx context.Context, req *reprisev1.GetExchangeRequest) (*reprisev1.GetExchangeResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id must not be empty")
	}
	if err := validateString("id", req.GetId()); err != nil {
		return nil, err
	}
	ex, err := s.store.Get(ctx, req.GetId())
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "exchange %q not found", req.GetId())
	}
	if err != nil {
		return nil, s.storeError(ctx, "get", err)
	}
	return &reprisev1.GetExchangeResponse{Exchange: ex}, nil
}

// StreamExchanges implements reprisev1.QueryServiceServer.
func (s *Service) StreamExchanges(req *reprisev1.StreamExchangesRequest, stream reprisev1.QueryService_StreamExchangesServer) error {
	if err := validateFilter(req.GetFilter()); err != nil {
		return err
	}
	if req.GetLimit() < 0 {
		return status.Errorf(codes.InvalidArgument, "limit must not be negative, got %d", req.GetLimit())
	}
	if err := validateString("after_cursor", req.GetAfterCursor()); err != nil {
		return err
	}
	ctx := stream.Context()
	// Send errors are already status errors; keep them apart from store errors.
	var sendErr error
	err := s.store.Stream(ctx, req.GetFilter(), req.GetAfterCursor(), int(req.GetLimit()), func(ex *reprisev1.Exchange, cursor string) error {
		sendErr = stream.Send(&reprisev1.StreamExchangesResponse{Exchange: ex, Cursor: cursor})
		return sendErr
	})
	if sendErr != nil {
		return sendErr
	}
	if errors.Is(err, store.ErrInvalidCursor) {
		return status.Errorf(codes.InvalidArgument, "after_cursor: %v", err)
	}
	if err != nil {
		return s.storeError(ctx, "stream", err)
	}
	return nil
}

// CountExchanges implements reprisev1.QueryServiceServer.
func (s *Service) CountExchanges(ctx context.Context, req *reprisev1.CountExchangesRequest) (*reprisev1.CountExchangesResponse, error) {
	if err := validateFilter(req.GetFilter()); err != nil {
		return nil, err
	}
	n, err := s.store.Count(ctx, req.GetFilter())
	if err != nil {
		return nil, s.storeError(ctx, "count", err)
	}
	return &reprisev1.CountExchangesResponse{Count: n}, nil
}

// Tail implements reprisev1.QueryServiceServer. A client that reads slower
// than exchanges arrive is cut off with ResourceExhausted rather than
// silently missing some.
func (s *Service) Tail(req *reprisev1.TailRequest, stream reprisev1.QueryService_TailServer) error {
	if err := validateFilter(req.GetFilter()); err != nil {
		return err
	}
	m, err := store.NewMatcher(req.GetFilter())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "filter.path_glob: %v", err)
	}
	sub := s.hub.Subscribe(m)
	defer s.hub.Unsubscribe(sub)
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case ex, ok := <-sub.C():
			if !ok {
				return status.Error(codes.ResourceExhausted, "tail fell behind the ingest rate; narrow the filter or read faster")
			}
			if err := stream.Send(&reprisev1.TailResponse{Exchange: ex}); err != nil {
				return err
			}
		}
	}
}

// ListServices implements reprisev1.QueryServiceServer.
func (s *Service) ListServices(ctx context.Context, req *reprisev1.ListServicesRequest) (*reprisev1.ListServicesResponse, error) {
	for name, ts := range map[string]*timestamppb.Timestamp{"start_time": req.GetStartTime(), "end_time": req.GetEndTime()} {
		if ts != nil {
			if err := ts.CheckValid(); err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "%s: %v", name, err)
			}
		}
	}
	svcs, err := s.store.Services(ctx, req.GetStartTime(), req.GetEndTime())
	if err != nil {
		return nil, s.storeError(ctx, "services", err)
	}
	return &reprisev1.ListServicesResponse{Services: svcs}, nil
}

// GetStats implements reprisev1.QueryServiceServer.
func (s *Service) GetStats(ctx context.Context, req *reprisev1.GetStatsRequest) (*reprisev1.GetStatsResponse, error) {
	if err := validateFilter(req.GetFilter()); err != nil {
		return nil, err
	}
	eps, err := s.store.Stats(ctx, req.GetFilter())
	if err != nil {
		return nil, s.storeError(ctx, "stats", err)
	}
	return &reprisev1.GetStatsResponse{Endpoints: eps}, nil
}

// storeError maps a store failure to a status error, counting and logging it
// unless the client went away.
func (s *Service) storeError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	s.metrics.StoreError(op)
	s.log.Error("store "+op, "err", err)
	return status.Errorf(codes.Internal, "%s exchanges: %v", op, err)
}

// maxArgBytes bounds every string argument of a query (filter fields,
// page tokens, cursors, ids): what the collector issues or stores is far
// shorter, and a longer one is refused before any work is done on it (a
// million-character glob once cost 1.4 GB to reject).
const maxArgBytes = 1 << 10

// validateString refuses a string argument that is too long.
func validateString(field, v string) error {
	if len(v) > maxArgBytes {
		return status.Errorf(codes.InvalidArgument, "%s is %d bytes, longer than the %d allowed", field, len(v), maxArgBytes)
	}
	return nil
}

func validateFilter(f *reprisev1.ExchangeFilter) error {
	if f == nil {
		return nil
	}
	for field, v := range map[string]string{
		"filter.service": f.GetService(), "filter.method": f.GetMethod(), "filter.path_prefix": f.GetPathPrefix(),
		"filter.host": f.GetHost(), "filter.agent_id": f.GetAgentId(), "filter.path_glob": f.GetPathGlob(),
	} {
		if err := validateString(field, v); err != nil {
			return err
		}
	}
	if f.GetStartTime() != nil {
		if err := f.GetStartTime().CheckValid(); err != nil {
			return status.Errorf(codes.InvalidArgument, "filter.start_time: %v", err)
		}
	}
	if f.GetEndTime() != nil {
		if err := f.GetEndTime().CheckValid(); err != nil {
			return status.Errorf(codes.InvalidArgument, "filter.end_time: %v", err)
		}
	}
	if _, ok := reprisev1.Direction_name[int32(f.GetDirection())]; !ok {
		return status.Errorf(codes.InvalidArgument, "filter.direction: unknown value %d", f.GetDirection())
	}
	if f.GetStatusCode() < 0 {
		return status.Errorf(codes.InvalidArgument, "filter.status_code must not be negative, got %d", f.GetStatusCode())
	}
	if c := f.GetStatusClass(); c < 0 || c > 5 {
		return status.Errorf(codes.InvalidArgument, "filter.status_class must be 1 to 5 (1xx to 5xx), got %d", c)
	}
	if d := f.GetMinDuration(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return status.Errorf(codes.InvalidArgument, "filter.min_duration must be a valid non-negative duration, got %v", d.AsDuration())
		}
	}
	if err := store.ValidateGlob(f.GetPathGlob()); err != nil {
		return status.Errorf(codes.InvalidArgument, "filter.path_glob: %v", err)
	}
	return nil
}
