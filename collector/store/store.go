// Package store keeps sanitized exchanges and reads them back in time order.
// Every implementation keeps the same semantics, so the collector and its
// tests do not care which one is behind the Store interface.
package store

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/internal/endpoint"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

var (
	// ErrNotFound is returned by Get when no exchange has the id.
	ErrNotFound = errors.New("exchange not found")
	// ErrInvalidPageToken is returned by List for a token it did not issue,
	// or issued for another filter.
	ErrInvalidPageToken = errors.New("invalid page token")
	// ErrInvalidCursor is returned by Stream for a cursor it did not issue.
	ErrInvalidCursor = errors.New("invalid cursor")
)

// Store is where the collector keeps exchanges. Exchanges are ordered by
// (start time, id) ascending everywhere.
type Store interface {
	// Put stores the exchanges in one transaction: when it returns nil they
	// are durable. An exchange whose id is already stored is ignored.
	Put(ctx context.Context, exchanges []*reprisev1.Exchange) error
	// PutBatch stores the batch like Put, unless a batch of the same agent
	// with its ID was committed before: then it stores nothing and reports
	// a duplicate (IDs are the agent's own: another agent's batch with the
	// same ID is stored). The
	// ID is recorded in the transaction of the exchanges, so a batch resent
	// after a lost ack is never stored twice.
	PutBatch(ctx context.Context, b Batch) (duplicate bool, err error)
	// Get returns the exchange with the id, or ErrNotFound.
	Get(ctx context.Context, id string) (*reprisev1.Exchange, error)
	// List returns up to pageSize matching exchanges after pageToken, and the
	// token of the next page ("" when there is none). A token only works
	// with the filter it was issued for.
	List(ctx context.Context, filter *reprisev1.ExchangeFilter, pageSize int, pageToken string) ([]*reprisev1.Exchange, string, error)
	// Count returns how many exchanges match.
	Count(ctx context.Context, filter *reprisev1.ExchangeFilter) (int64, error)
	// Stream calls fn for each matching exchange after the cursor ("" for
	// the start) with the exchange's own cursor, at most limit of them (0:
	// no limit), without holding them all in memory. An error from fn stops
	// the stream and is returned.
	Stream(ctx context.Context, filter *reprisev1.ExchangeFilter, afterCursor string, limit int, fn func(ex *reprisev1.Exchange, cursor string) error) error
	// Services summarises each service with exchanges in [start, end); a nil
	// bound is open.
	Services(ctx context.Context, start, end *timestamppb.Timestamp) ([]*reprisev1.ServiceSummary, error)
	// Stats summarises the matching exchanges per service, endpoint and method.
	Stats(ctx context.Context, filter *reprisev1.ExchangeFilter) ([]*reprisev1.EndpointStats, error)
	// Prune deletes the oldest exchanges until the store keeps the policy,
	// and returns how many it deleted.
	Prune(ctx context.Context, policy Retention, now time.Time) (int64, error)
	// Ping reports whether the store can serve requests.
	Ping(ctx context.Context) error
	Close() error
}

// Batch is one batch an agent sent.
type Batch struct {
	// ID identifies the batch among AgentID's; "" stores it without a
	// duplicate check.
	ID        string
	AgentID   string
	Exchanges []*reprisev1.Exchange
}

// batchIDTTL is how long batch IDs are remembered (or the retention age, when
// shorter): far longer than an agent keeps a batch it could not deliver.
const batchIDTTL = 7 * 24 * time.Hour

// batchCutoff is when the oldest batch ID still remembered was committed.
func batchCutoff(policy Retention, now time.Time) int64 {
	ttl := batchIDTTL
	if policy.MaxAge > 0 {
		ttl = min(ttl, policy.MaxAge)
	}
	return now.Add(-ttl).UnixNano()
}

// Open opens the store spec names: a postgres:// or postgresql:// URL for
// PostgreSQL, else the file path of the embedded SQLite store.
func Open(ctx context.Context, spec string) (Store, error) {
	if strings.HasPrefix(spec, "postgres://") || strings.HasPrefix(spec, "postgresql://") {
		return OpenPostgres(ctx, spec)
	}
	return OpenSQLite(spec)
}

// Retention says how much the store keeps; zero fields keep everything.
type Retention struct {
	// MaxAge deletes exchanges that started longer ago than this.
	MaxAge time.Duration
	// MaxBytes deletes the oldest exchanges while the data takes more.
	MaxBytes int64
}

// position is where an exchange sits in the (start time, id) order.
type position struct {
	startTime int64 // unix nanoseconds
	id        string
}

// Tokens are opaque to clients: a kind byte, then for page tokens a hash of
// the filter (so a token cannot be replayed against another filter), then
// the position.
const (
	kindPage   = 'p'
	kindCursor = 'c'
)

func (p position) encode(kind byte, filterHash []byte) string {
	b := append([]byte{kind}, filterHash...)
	b = binary.BigEndian.AppendUint64(b, uint64(p.startTime))
	return base64.RawURLEncoding.EncodeToString(append(b, p.id...))
}

// decodePosition parses a token of the kind; "" is the start and gives nil.
func decodePosition(tok string, kind byte, filterHash []byte, bad error) (*position, error) {
	if tok == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	head := 1 + len(filterHash)
	if err != nil || len(b) <= head+8 || b[0] != kind || string(b[1:head]) != string(filterHash) {
		return nil, bad
	}
	return &position{startTime: int64(binary.BigEndian.Uint64(b[head:])), id: string(b[head+8:])}, nil
}

// pageToken and parsePageToken bind a page position to its filter.
func pageToken(p position, f *reprisev1.ExchangeFilter) string {
	return p.encode(kindPage, filterHash(f))
}

func parsePageToken(tok string, f *reprisev1.ExchangeFilter) (*position, error) {
	return decodePosition(tok, kindPage, filterHash(f), ErrInvalidPageToken)
}

// Cursor returns the stream cursor of an exchange: Stream resumes after it.
func Cursor(ex *reprisev1.Exchange) string {
	return positionOf(ex).encode(kindCursor, nil)
}

func parseCursor(tok string) (*position, error) {
	return decodePosition(tok, kindCursor, nil, ErrInvalidCursor)
}

func filterHash(f *reprisev1.ExchangeFilter) []byte {
	if f == nil {
		f = &reprisev1.ExchangeFilter{}
	}
	// Deterministic marshalling gives equal filters equal bytes.
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(f)
	h := fnv.New64a()
	h.Write(b)
	return h.Sum(nil)
}

// row holds the indexed columns of one exchange, as every store derives them.
type row struct {
	id         string
	startTime  int64
	durationNs int64
	service    string
	direction  int32
	method     string
	path       string
	endpoint   string
	statusCode int32
	host       string
	agentID    string
}

func rowOf(ex *reprisev1.Exchange) row {
	return row{
		id:         ex.GetId(),
		startTime:  startNanos(ex),
		durationNs: ex.GetDuration().AsDuration().Nanoseconds(),
		service:    ex.GetService(),
		direction:  int32(ex.GetDirection()),
		method:     strings.ToUpper(ex.GetRequest().GetMethod()),
		path:       requestPath(ex.GetRequest().GetTarget()),
		endpoint:   endpoint.Normalize(ex.GetRequest().GetTarget()),
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

func positionOf(ex *reprisev1.Exchange) position {
	return position{startTime: startNanos(ex), id: ex.GetId()}
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

// PageBytes bounds the encoded size of the exchanges of one List page and of
// one chunk Stream reads (a single larger exchange still goes alone): a page
// of large exchanges is cut short, with a token for the rest, instead of
// building a reply larger than a gRPC message may be, or holding a
// thousand large rows in memory at once. It is half of
// grpcclient.MaxMessageBytes (a test in query checks): what a page holds
// plus the reply's own fields stay under one message.
const PageBytes = 16 << 20

// pageFunc reads up to n exchanges matching filter after the position, in
// order, and at most PageBytes of them; full reports that it stopped on
// bytes with rows left. Each store implements it, and List and Stream page
// with it.
type pageFunc func(ctx context.Context, filter *reprisev1.ExchangeFilter, after *position, n int) (exs []*reprisev1.Exchange, full bool, err error)

// list implements Store.List on a store's page function.
func list(ctx context.Context, page pageFunc, filter *reprisev1.ExchangeFilter, pageSize int, token string) ([]*reprisev1.Exchange, string, error) {
	if pageSize <= 0 {
		return nil, "", fmt.Errorf("list exchanges: page size %d must be positive", pageSize)
	}
	after, err := parsePageToken(token, filter)
	if err != nil {
		return nil, "", err
	}
	// One row more than the page tells whether another page follows.
	exs, full, err := page(ctx, filter, after, pageSize+1)
	if err != nil {
		return nil, "", err
	}
	if len(exs) <= pageSize && !full {
		return exs, "", nil
	}
	exs = exs[:min(len(exs), pageSize)]
	return exs, pageToken(positionOf(exs[len(exs)-1]), filter), nil
}

// stream implements Store.Stream on a store's page function. Reading in
// short keyset-paged queries keeps memory bounded and holds no read
// transaction open while a slow client drains the stream.
func stream(ctx context.Context, page pageFunc, filter *reprisev1.ExchangeFilter, afterCursor string, limit int, fn func(*reprisev1.Exchange, string) error) error {
	after, err := parseCursor(afterCursor)
	if err != nil {
		return err
	}
	sent := 0
	for {
		n := streamChunk
		if limit > 0 && limit-sent < n {
			n = limit - sent
		}
		if n == 0 {
			return nil
		}
		exs, full, err := page(ctx, filter, after, n)
		if err != nil {
			return err
		}
		for _, ex := range exs {
			if err := fn(ex, Cursor(ex)); err != nil {
				return err
			}
		}
		sent += len(exs)
		if len(exs) < n && !full {
			return nil
		}
		p := positionOf(exs[len(exs)-1])
		after = &p
	}
}
