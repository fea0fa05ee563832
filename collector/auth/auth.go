// Package auth checks bearer tokens on the collector's gRPC services: one
// token for ingest (agents) and another for queries (users, the replayer).
package auth

import (
	"context"
	"crypto/subtle"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Tokens are the accepted tokens; an empty one leaves its service open.
type Tokens struct {
	Ingest string
	Query  string
}

// The services each token guards, by full method name prefix. Server
// reflection stays open: it describes the API, not the data.
const (
	ingestPrefix = "/reprise.v1.IngestService/"
	queryPrefix  = "/reprise.v1.QueryService/"
)

// ServerOptions returns the unary and stream interceptors that enforce t.
func (t Tokens) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := t.check(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if err := t.check(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return handler(srv, ss)
		}),
	}
}

func (t Tokens) check(ctx context.Context, method string) error {
	var want string
	switch {
	case strings.HasPrefix(method, ingestPrefix):
		want = t.Ingest
	case strings.HasPrefix(method, queryPrefix):
		want = t.Query
	}
	if want == "" {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		got, ok := strings.CutPrefix(v, "Bearer ")
		if ok && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 {
			return nil
		}
	}
	return status.Error(codes.Unauthenticated, "missing or wrong bearer token in the authorization metadata")
}
