// Package auth checks who calls the collector's gRPC services: bearer tokens
// for ingest (agents) and for queries (users, the replayer), or, with a list
// of known agents, a token or a client certificate per agent.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Tokens say who may call what. An empty token with no Agents leaves its
// service open.
type Tokens struct {
	Ingest string
	Query  string
	// Agents, when set, replaces Ingest: only the agents it lists may
	// ingest, each under its own id.
	Agents *Agents
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
			if _, err := t.check(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			agent, err := t.check(ss.Context(), info.FullMethod)
			if err != nil {
				return err
			}
			if agent != "" {
				ss = &agentStream{ServerStream: ss, agent: agent, ctx: context.WithValue(ss.Context(), agentKey{}, agent)}
			}
			return handler(srv, ss)
		}),
	}
}

// check authorises a call to method; for ingest with Agents it returns the
// caller's agent id.
func (t Tokens) check(ctx context.Context, method string) (string, error) {
	var want string
	switch {
	case strings.HasPrefix(method, ingestPrefix):
		if t.Agents != nil {
			return t.Agents.identify(ctx)
		}
		want = t.Ingest
	case strings.HasPrefix(method, queryPrefix):
		want = t.Query
	}
	if want == "" {
		return "", nil
	}
	got, err := bearerToken(ctx)
	if err != nil {
		return "", err
	}
	// Digests of equal length: the compare's time says nothing of the
	// token's length or of how much of a guess was right.
	gotSum, wantSum := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	if got == "" || subtle.ConstantTimeCompare(gotSum[:], wantSum[:]) != 1 {
		return "", status.Error(codes.Unauthenticated, "missing or wrong bearer token in the authorization metadata")
	}
	return "", nil
}

// bearerToken returns the token of the call's one "authorization: Bearer"
// metadata value, "" when there is none. Several values are refused, so one
// call cannot try several guesses; the scheme is case-insensitive (RFC 9110).
func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch {
	case len(vals) == 0:
		return "", nil
	case len(vals) > 1:
		return "", status.Errorf(codes.Unauthenticated, "%d authorization metadata values; send exactly one", len(vals))
	}
	scheme, tok, _ := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", status.Error(codes.Unauthenticated, "authorization metadata: want the Bearer scheme")
	}
	return strings.TrimLeft(tok, " "), nil
}

// agentStream holds an authenticated agent to its own id: a batch, or an
// exchange in it, that names another agent ends the stream, so one node's
// credentials cannot write traffic in another node's name.
type agentStream struct {
	grpc.ServerStream
	agent string
	ctx   context.Context
}

func (s *agentStream) Context() context.Context { return s.ctx }

type agentKey struct{}

// Agent returns the agent a call authenticated as with Agents, "" without.
func Agent(ctx context.Context) string {
	id, _ := ctx.Value(agentKey{}).(string)
	return id
}

func (s *agentStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	req, ok := m.(*reprisev1.IngestRequest)
	if !ok {
		return nil
	}
	if req.GetAgentId() != s.agent {
		return status.Errorf(codes.PermissionDenied, "authenticated as agent %q, but batch %s says agent_id %q", s.agent, req.GetBatchId(), req.GetAgentId())
	}
	for i, ex := range req.GetExchanges() {
		if id := ex.GetCapture().GetAgentId(); id != "" && id != s.agent {
			return status.Errorf(codes.PermissionDenied, "authenticated as agent %q, but batch %s exchanges[%d] says agent_id %q", s.agent, req.GetBatchId(), i, id)
		}
	}
	return nil
}
