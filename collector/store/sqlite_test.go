package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type exOpt func(*reprisev1.Exchange)

func newEx(id string, at time.Duration, opts ...exOpt) *reprisev1.Exchange {
	ex := &reprisev1.Exchange{
		Id:        id,
		StartTime: timestamppb.New(t0.Add(at)),
		Direction: reprisev1.Direction_DIRECTION_INBOUND,
		Service:   "orders",
		Request:   &reprisev1.HttpRequest{Method: "GET", Target: "/orders?page=1", Host: "orders.local"},
		Response:  &reprisev1.HttpResponse{StatusCode: 200},
		Capture:   &reprisev1.Capture{AgentId: "agent-a"},
	}
	for _, o := range opts {
		o(ex)
	}
	return ex
}

func openTemp(t *testing.T) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nested", "reprise.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func ids(exs []*reprisev1.Exchange) []string {
	var out []string
	for _, ex := range exs {
		out = append(out, ex.GetId())
	}
	return out
}

func TestPutGet(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		want := newEx("a", 0, func(ex *reprisev1.Exchange) {
			ex.Request.Headers = []*reprisev1.Header{{Name: "Accept", Value: "*/*"}}
			ex.Response.Body = []byte(`{"ok":true}`)
		})
		if err := s.Put(ctx, []*reprisev1.Exchange{want}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("Get = %v, want %v", got, want)
		}
		if _, err := s.Get(ctx, "missing"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(missing) error = %v, want ErrNotFound", err)
		}
	})
}

func TestPutIsAtomic(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		err := s.Put(ctx, []*reprisev1.Exchange{newEx("good", 0), newEx("", time.Second)})
		if err == nil {
			t.Fatal("Put with an empty id succeeded")
		}
		if _, err := s.Get(ctx, "good"); !errors.Is(err, ErrNotFound) {
			t.Errorf("exchange of a failed batch is stored (err %v)", err)
		}
	})
}

// TestConcurrentPuts checks group commit: Puts from many goroutines are
// folded into shared transactions, and each is durable when it returns.
func TestConcurrentPuts(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		const writers, batches, size = 8, 5, 50
		errs := make(chan error, writers)
		for w := range writers {
			go func() {
				for b := range batches {
					batch := make([]*reprisev1.Exchange, size)
					for i := range batch {
						batch[i] = newEx(fmt.Sprintf("w%d-b%d-%d", w, b, i), time.Duration(i)*time.Millisecond)
					}
					if err := s.Put(ctx, batch); err != nil {
						errs <- err
						return
					}
					// Returned means committed: readable now.
					if _, err := s.Get(ctx, batch[size-1].GetId()); err != nil {
						errs <- fmt.Errorf("get after put: %w", err)
						return
					}
				}
				errs <- nil
			}()
		}
		for range writers {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if n, err := s.Count(ctx, nil); err != nil || n != writers*batches*size {
			t.Errorf("Count = %d, %v; want %d", n, err, writers*batches*size)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, []*reprisev1.Exchange{newEx("late", 0)}); !errors.Is(err, errClosed) {
			t.Errorf("Put after Close = %v, want errClosed", err)
		}
	})
}

func TestListFilters(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		all := []*reprisev1.Exchange{
			newEx("1", 1*time.Second),
			newEx("2", 2*time.Second, func(ex *reprisev1.Exchange) { ex.Service = "billing" }),
			newEx("3", 3*time.Second, func(ex *reprisev1.Exchange) { ex.Direction = reprisev1.Direction_DIRECTION_OUTBOUND }),
			newEx("4", 4*time.Second, func(ex *reprisev1.Exchange) { ex.Request.Method = "post" }),
			newEx("5", 5*time.Second, func(ex *reprisev1.Exchange) { ex.Request.Target = "/orders/42/items?x=1" }),
			newEx("6", 6*time.Second, func(ex *reprisev1.Exchange) { ex.Response.StatusCode = 503 }),
			newEx("7", 7*time.Second, func(ex *reprisev1.Exchange) { ex.Request.Host = "billing.local" }),
			newEx("8", 8*time.Second, func(ex *reprisev1.Exchange) { ex.Capture.AgentId = "agent-b" }),
			newEx("9", 9*time.Second, func(ex *reprisev1.Exchange) { ex.Request.Target = "http://proxy.example/users?id=1" }),
			newEx("10", 10*time.Second, func(ex *reprisev1.Exchange) { ex.Request.Target = "/Orders%2F_x" }),
			newEx("11", 11*time.Second, func(ex *reprisev1.Exchange) { ex.Duration = durationpb.New(2 * time.Second) }),
			newEx("12", 12*time.Second, func(ex *reprisev1.Exchange) { ex.Response.StatusCode = 404 }),
			newEx("13", 13*time.Second, func(ex *reprisev1.Exchange) { ex.Request.Target = "/orders/7/items/[x]" }),
		}
		if err := s.Put(ctx, all); err != nil {
			t.Fatal(err)
		}
		ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(t0.Add(d)) }
		tests := []struct {
			name   string
			filter *reprisev1.ExchangeFilter
			want   []string
		}{
			{"nil filter", nil, []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13"}},
			{"start inclusive", &reprisev1.ExchangeFilter{StartTime: ts(9 * time.Second), EndTime: ts(11 * time.Second)}, []string{"9", "10"}},
			{"end exclusive", &reprisev1.ExchangeFilter{EndTime: ts(3 * time.Second)}, []string{"1", "2"}},
			{"time window", &reprisev1.ExchangeFilter{StartTime: ts(4 * time.Second), EndTime: ts(6 * time.Second)}, []string{"4", "5"}},
			{"service", &reprisev1.ExchangeFilter{Service: "billing"}, []string{"2"}},
			{"direction", &reprisev1.ExchangeFilter{Direction: reprisev1.Direction_DIRECTION_OUTBOUND}, []string{"3"}},
			{"method any case", &reprisev1.ExchangeFilter{Method: "Post"}, []string{"4"}},
			{"path prefix ignores query", &reprisev1.ExchangeFilter{PathPrefix: "/orders/"}, []string{"5", "13"}},
			{"path prefix whole path", &reprisev1.ExchangeFilter{PathPrefix: "/orders", Method: "GET", StatusCode: 200, Host: "orders.local", AgentId: "agent-a", Service: "orders"}, []string{"1", "3", "5", "11", "13"}},
			{"path prefix is case-sensitive and literal", &reprisev1.ExchangeFilter{PathPrefix: "/Orders%2F_"}, []string{"10"}},
			{"path of absolute-form target", &reprisev1.ExchangeFilter{PathPrefix: "/users"}, []string{"9"}},
			{"status code", &reprisev1.ExchangeFilter{StatusCode: 503}, []string{"6"}},
			{"host", &reprisev1.ExchangeFilter{Host: "billing.local"}, []string{"7"}},
			{"agent", &reprisev1.ExchangeFilter{AgentId: "agent-b"}, []string{"8"}},
			{"status class", &reprisev1.ExchangeFilter{StatusClass: 4}, []string{"12"}},
			{"status class and code", &reprisev1.ExchangeFilter{StatusClass: 5, StatusCode: 404}, nil},
			{"min duration", &reprisev1.ExchangeFilter{MinDuration: durationpb.New(time.Second)}, []string{"11"}},
			{"glob star spans slashes", &reprisev1.ExchangeFilter{PathGlob: "/orders/*/items"}, []string{"5"}},
			{"glob whole path", &reprisev1.ExchangeFilter{PathGlob: "/orders/*"}, []string{"5", "13"}},
			{"glob question mark", &reprisev1.ExchangeFilter{PathGlob: "/order?"}, []string{"1", "2", "3", "4", "6", "7", "8", "11", "12"}},
			{"glob set", &reprisev1.ExchangeFilter{PathGlob: "/[uU]sers"}, []string{"9"}},
			{"glob negated set", &reprisev1.ExchangeFilter{PathGlob: "/[^o]*"}, []string{"9", "10"}},
			{"glob literal bracket", &reprisev1.ExchangeFilter{PathGlob: "/orders/7/items/[[]x]"}, []string{"13"}},
			{"glob and prefix", &reprisev1.ExchangeFilter{PathGlob: "*items*", PathPrefix: "/orders/4"}, []string{"5"}},
			{"no match", &reprisev1.ExchangeFilter{Service: "nope"}, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, next, err := s.List(ctx, tt.filter, 100, "")
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(ids(got), tt.want) || next != "" {
					t.Errorf("List = %v (next %q), want %v", ids(got), next, tt.want)
				}
				var streamed []*reprisev1.Exchange
				err = s.Stream(ctx, tt.filter, "", 0, func(ex *reprisev1.Exchange, _ string) error {
					streamed = append(streamed, ex)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(ids(streamed), tt.want) {
					t.Errorf("Stream = %v, want %v", ids(streamed), tt.want)
				}
				n, err := s.Count(ctx, tt.filter)
				if err != nil || n != int64(len(tt.want)) {
					t.Errorf("Count = %d, %v; want %d", n, err, len(tt.want))
				}
				// Tail matches in memory: it must select exactly what SQL does.
				m, err := NewMatcher(tt.filter)
				if err != nil {
					t.Fatal(err)
				}
				var matched []*reprisev1.Exchange
				for _, ex := range all {
					if m.Match(ex) {
						matched = append(matched, ex)
					}
				}
				if !slices.Equal(ids(matched), tt.want) {
					t.Errorf("Matcher = %v, want %v", ids(matched), tt.want)
				}
			})
		}
	})
}

// putMany stores n exchanges, three per start time so that order depends on
// the id tie-break too, and returns their ids in store order.
func putMany(t *testing.T, s Store, n int) []string {
	t.Helper()
	var exs []*reprisev1.Exchange
	for i := range n {
		// Inserted out of order on purpose.
		exs = append(exs, newEx(fmt.Sprintf("ex-%04d", n-1-i), time.Duration((n-1-i)/3)*time.Millisecond))
	}
	if err := s.Put(context.Background(), exs); err != nil {
		t.Fatal(err)
	}
	want := ids(exs)
	slices.Sort(want)
	return want
}

func TestListPagination(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		want := putMany(t, s, 25)
		for _, size := range []int{1, 2, 3, 7, 24, 25, 26, 1000} {
			t.Run(fmt.Sprint(size), func(t *testing.T) {
				var got []string
				token := ""
				for pages := 0; ; pages++ {
					if pages > len(want) {
						t.Fatal("pagination does not end")
					}
					page, next, err := s.List(ctx, nil, size, token)
					if err != nil {
						t.Fatal(err)
					}
					if len(page) > size {
						t.Fatalf("page of %d, size %d", len(page), size)
					}
					// The same token gives the same page.
					again, againNext, err := s.List(ctx, nil, size, token)
					if err != nil || !slices.Equal(ids(again), ids(page)) || againNext != next {
						t.Fatalf("token %q not stable: %v/%q then %v/%q (%v)", token, ids(page), next, ids(again), againNext, err)
					}
					got = append(got, ids(page)...)
					if next == "" {
						break
					}
					token = next
				}
				if !slices.Equal(got, want) {
					t.Errorf("pages = %v, want %v", got, want)
				}
			})
		}
	})
}

func TestListInvalidToken(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		for _, tok := range []string{"!!not base64!!", base64.RawURLEncoding.EncodeToString([]byte("short")), "A"} {
			if _, _, err := s.List(context.Background(), nil, 10, tok); !errors.Is(err, ErrInvalidPageToken) {
				t.Errorf("List(token %q) error = %v, want ErrInvalidPageToken", tok, err)
			}
		}
	})
}

func TestStream(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		// More than one chunk, so the keyset paging between chunks is exercised.
		want := putMany(t, s, 2*streamChunk+10)
		tests := []struct {
			limit int
			want  []string
		}{
			{0, want},
			{1, want[:1]},
			{streamChunk, want[:streamChunk]},
			{streamChunk + 1, want[:streamChunk+1]},
			{len(want) + 5, want},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
				var got []string
				err := s.Stream(ctx, nil, "", tt.limit, func(ex *reprisev1.Exchange, _ string) error {
					got = append(got, ex.GetId())
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("Stream(limit %d) got %d exchanges, want %d in order", tt.limit, len(got), len(tt.want))
				}
			})
		}

		stop := errors.New("stop")
		n := 0
		err := s.Stream(ctx, nil, "", 0, func(*reprisev1.Exchange, string) error {
			n++
			if n == 3 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || n != 3 {
			t.Errorf("Stream after fn error: err %v after %d calls, want stop after 3", err, n)
		}
	})
}

func TestReopen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.open(t)
		if err := s.Put(ctx, []*reprisev1.Exchange{newEx("kept", 0)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s2 := b.open(t)
		if _, err := s2.Get(ctx, "kept"); err != nil {
			t.Errorf("Get after reopen: %v", err)
		}
		if err := s2.Ping(ctx); err != nil {
			t.Errorf("Ping: %v", err)
		}
		var versions, want int
		var err error
		switch s2 := s2.(type) {
		case *SQLite:
			want, err = len(migrations), s2.db.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&versions)
		case *Postgres:
			want, err = len(pgMigrations), s2.pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&versions)
		}
		if err != nil {
			t.Fatal(err)
		}
		if versions != want {
			t.Errorf("schema_migrations has %d rows, want %d", versions, want)
		}
	})
}

func TestDuplicateIDs(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		first := newEx("dup", 0)
		second := newEx("dup", time.Hour, func(ex *reprisev1.Exchange) { ex.Service = "other" })
		if err := s.Put(ctx, []*reprisev1.Exchange{first, second}); err != nil {
			t.Fatal(err)
		}
		// Resent, as after a lost ack.
		if err := s.Put(ctx, []*reprisev1.Exchange{first}); err != nil {
			t.Fatal(err)
		}
		got, _, err := s.List(ctx, nil, 10, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !proto.Equal(got[0], first) {
			t.Errorf("after duplicates List = %v, want only the first", got)
		}
	})
	// SQLite keys exchanges by id alone, so even an id reused with another
	// start time in a later batch is ignored. PostgreSQL keys them by start
	// time and id (the partition key must be in the key).
	s, _ := openTemp(t)
	ctx := context.Background()
	if err := s.Put(ctx, []*reprisev1.Exchange{newEx("dup", 0)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, []*reprisev1.Exchange{newEx("dup", time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count(ctx, nil); err != nil || n != 1 {
		t.Errorf("Count = %d, %v; want 1", n, err)
	}
}

func TestDurabilitySettings(t *testing.T) {
	s, _ := openTemp(t)
	var mode string
	var sync int
	if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRow(`PRAGMA synchronous`).Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || sync != 2 {
		t.Errorf("journal_mode %q synchronous %d, want wal and 2 (FULL)", mode, sync)
	}
}

func TestPageSize(t *testing.T) {
	s, _ := openTemp(t)
	var size int
	if err := s.db.QueryRow(`PRAGMA page_size`).Scan(&size); err != nil || size != 65536 {
		t.Errorf("new store page_size = %d, %v; want 65536", size, err)
	}
	// A file made with another page size keeps it and works as before.
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", path+"?_pragma=page_size(4096)&_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE t (x)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	old, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	ex := newEx("a", 0)
	if err := old.Put(context.Background(), []*reprisev1.Exchange{ex}); err != nil {
		t.Fatal(err)
	}
	if got, err := old.Get(context.Background(), "a"); err != nil || !proto.Equal(got, ex) {
		t.Errorf("Get = %v, %v; want the exchange", got, err)
	}
	if err := old.db.QueryRow(`PRAGMA page_size`).Scan(&size); err != nil || size != 4096 {
		t.Errorf("existing store page_size = %d, %v; want 4096 kept", size, err)
	}
}

func TestRequestPath(t *testing.T) {
	tests := []struct{ target, want string }{
		{"/a/b?c=d", "/a/b"},
		{"/a#frag", "/a"},
		{"/", "/"},
		{"*", "*"},
		{"http://h:8080/x/y?z", "/x/y"},
		{"https://h", "/"},
	}
	for _, tt := range tests {
		if got := requestPath(tt.target); got != tt.want {
			t.Errorf("requestPath(%q) = %q, want %q", tt.target, got, tt.want)
		}
	}
}
