// Package store keeps sanitized exchanges and reads them back in time order.
// Every implementation keeps the same semantics, so the collector and its
// tests do not care which one is behind the Store interface.
package store

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

var (
	// ErrNotFound is returned by Get when no exchange has the id.
	ErrNotFound = errors.New("exchange not found")
	// ErrInvalidPageToken is returned by List for a token it did not issue.
	ErrInvalidPageToken = errors.New("invalid page token")
)

// Store is where the collector keeps exchanges. Exchanges are ordered by
// (start time, id) ascending everywhere.
type Store interface {
	// Put stores the exchanges in one transaction: when it returns nil they
	// are durable. An exchange whose id is already stored is ignored.
	Put(ctx context.Context, exchanges []*reprisev1.Exchange) error
	// Get returns the exchange with the id, or ErrNotFound.
	Get(ctx context.Context, id string) (*reprisev1.Exchange, error)
	// List returns up to pageSize matching exchanges after pageToken, and the
	// token of the next page ("" when there is none).
	List(ctx context.Context, filter *reprisev1.ExchangeFilter, pageSize int, pageToken string) ([]*reprisev1.Exchange, string, error)
	// Stream calls fn for each matching exchange, at most limit of them
	// (0: no limit), without holding them all in memory. An error from fn
	// stops the stream and is returned.
	Stream(ctx context.Context, filter *reprisev1.ExchangeFilter, limit int, fn func(*reprisev1.Exchange) error) error
	// Ping reports whether the store can serve requests.
	Ping(ctx context.Context) error
	Close() error
}

// cursor is the position of the last exchange a page returned.
type cursor struct {
	startTime int64 // unix nanoseconds
	id        string
}

func (c cursor) token() string {
	b := binary.BigEndian.AppendUint64(nil, uint64(c.startTime))
	return base64.RawURLEncoding.EncodeToString(append(b, c.id...))
}

// parseToken decodes a page token; "" is the start and gives ok=false.
func parseToken(tok string) (c cursor, ok bool, err error) {
	if tok == "" {
		return cursor{}, false, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) <= 8 {
		return cursor{}, false, ErrInvalidPageToken
	}
	return cursor{startTime: int64(binary.BigEndian.Uint64(b)), id: string(b[8:])}, true, nil
}

// row holds the indexed columns of one exchange, as every store derives them.
type row struct {
	id         string
	startTime  int64
	service    string
	direction  int32
	method     string
	path       string
	statusCode int32
	host       string
	agentID    string
}

func rowOf(ex *reprisev1.Exchange) row {
	return row{
		id:         ex.GetId(),
		startTime:  startNanos(ex),
		service:    ex.GetService(),
		direction:  int32(ex.GetDirection()),
		method:     strings.ToUpper(ex.GetRequest().GetMethod()),
		path:       requestPath(ex.GetRequest().GetTarget()),
		statusCode: ex.GetResponse().GetStatusCode(),
		host:       ex.GetRequest().GetHost(),
		agentID:    ex.GetCapture().GetAgentId(),
	}
}

// startNanos is the exchange's start time in unix nanoseconds; 0 when unset.
func startNanos(ex *reprisev1.Exchange) int64 {
	if ex.GetStartTime() == nil {
		return 0
	}
	return ex.GetStartTime().AsTime().UnixNano()
}

func cursorOf(ex *reprisev1.Exchange) cursor {
	return cursor{startTime: startNanos(ex), id: ex.GetId()}
}

// requestPath is the path of a request-target: no query, and no scheme or
// authority when the target is in absolute form (requests to a proxy).
func requestPath(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	for _, scheme := range []string{"http://", "https://"} {
		if rest, ok := strings.CutPrefix(target, scheme); ok {
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				return rest[i:]
			}
			return "/"
		}
	}
	return target
}
