// Package source opens the recorded exchanges a replay or a mock works from:
// a collector's StreamExchanges or a file the collector exported (JSONL or
// HAR), selected by the same filter either way.
package source

import (
	"context"
	"errors"
	"fmt"
	"github.com/reprise-dev/reprise/internal/grpcclient"
	"io"
	"iter"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/reprise-dev/reprise/internal/exchfile"
	"github.com/reprise-dev/reprise/internal/pathglob"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Spec says where the exchanges come from and which of them to take.
type Spec struct {
	// Collector is the collector's gRPC address; exactly one of Collector
	// and File is set.
	Collector string
	// Dial connects to the collector; nil dials without TLS.
	Dial func(addr string) (*grpc.ClientConn, error)
	// File is a JSONL or HAR file exported by the collector.
	File   string
	Filter *reprisev1.ExchangeFilter
	// Limit caps the number of exchanges; 0 takes all.
	Limit int
}

// Open starts reading the exchanges the spec selects. The sequence stops at
// the first error, which it yields; stopping the iteration early closes the
// collector stream or the file.
func Open(ctx context.Context, s Spec) (iter.Seq2[*reprisev1.Exchange, error], error) {
	if (s.Collector == "") == (s.File == "") {
		return nil, errors.New("exactly one of a collector address and a file must be given")
	}
	if s.Limit < 0 {
		return nil, fmt.Errorf("limit must not be negative, got %d", s.Limit)
	}
	if s.File != "" {
		var glob *pathglob.Glob
		if g := s.Filter.GetPathGlob(); g != "" {
			var err error
			if glob, err = pathglob.Compile(g); err != nil {
				return nil, err
			}
		}
		return fromFile(s, glob), nil
	}
	return fromCollector(ctx, s)
}

func fromFile(s Spec, glob *pathglob.Glob) iter.Seq2[*reprisev1.Exchange, error] {
	return func(yield func(*reprisev1.Exchange, error) bool) {
		n := 0
		for ex, err := range exchfile.ReadFile(s.File) {
			if err != nil {
				yield(nil, fmt.Errorf("read exchanges from %s: %w", s.File, err))
				return
			}
			// The collector filters in its store; a file is filtered here
			// with the same meaning.
			if !match(s.Filter, glob, ex) {
				continue
			}
			if !yield(ex, nil) {
				return
			}
			if n++; s.Limit > 0 && n >= s.Limit {
				return
			}
		}
	}
}

func fromCollector(ctx context.Context, s Spec) (iter.Seq2[*reprisev1.Exchange, error], error) {
	dial := s.Dial
	if dial == nil {
		dial = func(addr string) (*grpc.ClientConn, error) {
			return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(grpcclient.MaxMessageBytes)))
		}
	}
	conn, err := dial(s.Collector)
	if err != nil {
		return nil, fmt.Errorf("collector %s: %w", s.Collector, err)
	}
	return func(yield func(*reprisev1.Exchange, error) bool) {
		defer conn.Close()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // ends the stream when the caller stops early
		stream, err := reprisev1.NewQueryServiceClient(conn).StreamExchanges(ctx, &reprisev1.StreamExchangesRequest{
			Filter: s.Filter,
			Limit:  int32(s.Limit),
		})
		if err != nil {
			yield(nil, fmt.Errorf("stream exchanges from collector %s: %w", s.Collector, err))
			return
		}
		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(nil, fmt.Errorf("receive exchanges from collector %s: %w", s.Collector, err))
				return
			}
			if !yield(msg.GetExchange(), nil) {
				return
			}
		}
	}, nil
}

// Match reports whether ex is selected by f, with the meaning the collector
// gives each field: empty fields match everything, times bound start_time
// (start inclusive, end exclusive).
func Match(f *reprisev1.ExchangeFilter, ex *reprisev1.Exchange) bool {
	var glob *pathglob.Glob
	if f.GetPathGlob() != "" {
		var err error
		if glob, err = pathglob.Compile(f.GetPathGlob()); err != nil {
			return false // the collector refuses such a filter
		}
	}
	return match(f, glob, ex)
}

// match is Match with the filter's path glob compiled.
func match(f *reprisev1.ExchangeFilter, glob *pathglob.Glob, ex *reprisev1.Exchange) bool {
	if f == nil {
		return true
	}
	req := ex.GetRequest()
	start := ex.GetStartTime().AsTime()
	switch {
	case f.GetStartTime() != nil && start.Before(f.GetStartTime().AsTime()):
		return false
	case f.GetEndTime() != nil && !start.Before(f.GetEndTime().AsTime()):
		return false
	case f.GetService() != "" && f.GetService() != ex.GetService():
		return false
	case f.GetDirection() != reprisev1.Direction_DIRECTION_UNSPECIFIED && f.GetDirection() != ex.GetDirection():
		return false
	case f.GetMethod() != "" && !strings.EqualFold(f.GetMethod(), req.GetMethod()):
		return false
	case f.GetPathPrefix() != "" && !strings.HasPrefix(pathOf(req.GetTarget()), f.GetPathPrefix()):
		return false
	case glob != nil && !glob.Match(pathOf(req.GetTarget())):
		return false
	case f.GetStatusCode() != 0 && f.GetStatusCode() != ex.GetResponse().GetStatusCode():
		return false
	case f.GetStatusClass() != 0 && ex.GetResponse().GetStatusCode()/100 != f.GetStatusClass():
		return false
	case f.GetMinDuration() != nil && ex.GetDuration().AsDuration() < f.GetMinDuration().AsDuration():
		return false
	case f.GetHost() != "" && f.GetHost() != req.GetHost():
		return false
	case f.GetAgentId() != "" && f.GetAgentId() != ex.GetCapture().GetAgentId():
		return false
	}
	return true
}

// pathOf is the path of a request-target, origin or absolute form.
func pathOf(target string) string {
	if i := strings.Index(target, "://"); i >= 0 {
		rest := target[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return "/"
		}
		target = rest[j:]
	}
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		return target[:i]
	}
	return target
}
