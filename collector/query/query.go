// Package query implements QueryService over a store.
package query

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/store"
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
	metrics metrics.Metrics
	log     *slog.Logger
}

// New returns the query service reading from st.
func New(st store.Store, m metrics.Metrics) *Service {
	return &Service{store: st, metrics: m, log: slog.With("component", "query")}
}

// ListExchanges implements reprisev1.QueryServiceServer.
func (s *Service) ListExchanges(ctx context.Context, req *reprisev1.ListExchangesRequest) (*reprisev1.ListExchangesResponse, error) {
	if err := validateFilter(req.GetFilter()); err != nil {
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
	ctx := stream.Context()
	// Send errors are already status errors; keep them apart from store errors.
	var sendErr error
	err := s.store.Stream(ctx, req.GetFilter(), int(req.GetLimit()), func(ex *reprisev1.Exchange) error {
		sendErr = stream.Send(&reprisev1.StreamExchangesResponse{Exchange: ex})
		return sendErr
	})
	if sendErr != nil {
		return sendErr
	}
	if err != nil {
		return s.storeError(ctx, "stream", err)
	}
	return nil
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

func validateFilter(f *reprisev1.ExchangeFilter) error {
	if f == nil {
		return nil
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
	return nil
}
