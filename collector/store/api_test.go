package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func TestPageTokenBoundToFilter(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		putMany(t, s, 10)
		f := &reprisev1.ExchangeFilter{Service: "orders"}
		_, next, err := s.List(ctx, f, 3, "")
		if err != nil || next == "" {
			t.Fatalf("first page: next %q, err %v", next, err)
		}
		if _, _, err := s.List(ctx, &reprisev1.ExchangeFilter{Service: "orders", Method: "GET"}, 3, next); !errors.Is(err, ErrInvalidPageToken) {
			t.Errorf("token with another filter: err %v, want ErrInvalidPageToken", err)
		}
		if _, _, err := s.List(ctx, f, 3, next); err != nil {
			t.Errorf("token with its own filter: %v", err)
		}
		// A stream cursor is not a page token, nor the other way round.
		if _, _, err := s.List(ctx, f, 3, Cursor(newEx("x", 0))); !errors.Is(err, ErrInvalidPageToken) {
			t.Errorf("cursor as page token: err %v", err)
		}
		if err := s.Stream(ctx, f, next, 0, func(*reprisev1.Exchange, string) error { return nil }); !errors.Is(err, ErrInvalidCursor) {
			t.Errorf("page token as cursor: err %v", err)
		}
	})
}

func TestStreamResumesFromCursor(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		want := putMany(t, s, streamChunk+20)
		var got []string
		var last string
		// Interrupt after 100, then resume from the last cursor seen.
		err := s.Stream(ctx, nil, "", 100, func(ex *reprisev1.Exchange, c string) error {
			got, last = append(got, ex.GetId()), c
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Stream(ctx, nil, last, 0, func(ex *reprisev1.Exchange, _ string) error {
			got = append(got, ex.GetId())
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("resumed stream: %d exchanges, want all %d once in order", len(got), len(want))
		}
	})
}

func TestStats(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		var exs []*reprisev1.Exchange
		// /orders/{id}: 100 GETs taking 1..100 ms, every 10th a 500 and every 20th a 404.
		for i := 1; i <= 100; i++ {
			status := int32(200)
			switch {
			case i%20 == 0:
				status = 404
			case i%10 == 0:
				status = 500
			}
			exs = append(exs, newEx(fmt.Sprint("o", i), time.Duration(i)*time.Second, func(ex *reprisev1.Exchange) {
				ex.Request.Target = fmt.Sprintf("/orders/%d?x=1", 1000+i)
				ex.Duration = durationpb.New(time.Duration(101-i) * time.Millisecond)
				ex.Response.StatusCode = status
			}))
		}
		exs = append(exs,
			newEx("b1", 0, func(ex *reprisev1.Exchange) {
				ex.Service, ex.Request.Method, ex.Request.Target = "billing", "POST", "/invoices/3f2b9c1e-8a4d-4e1f-9b2a-7c6d5e4f3a21"
				ex.Duration = durationpb.New(7 * time.Millisecond)
			}))
		if err := s.Put(ctx, exs); err != nil {
			t.Fatal(err)
		}
		got, err := s.Stats(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		ms := func(n int) *durationpb.Duration { return durationpb.New(time.Duration(n) * time.Millisecond) }
		want := []*reprisev1.EndpointStats{
			{Service: "billing", Endpoint: "/invoices/{id}", Method: "POST", Stats: &reprisev1.Stats{Count: 1, P50: ms(7), P95: ms(7), P99: ms(7)}},
			{Service: "orders", Endpoint: "/orders/{id}", Method: "GET", Stats: &reprisev1.Stats{
				Count: 100, ClientErrors: 5, ServerErrors: 5, ErrorRate: 0.05, P50: ms(50), P95: ms(95), P99: ms(99)}},
		}
		if len(got) != len(want) {
			t.Fatalf("Stats = %v, want %v", got, want)
		}
		for i := range want {
			if !proto.Equal(got[i], want[i]) {
				t.Errorf("Stats[%d] = %v, want %v", i, got[i], want[i])
			}
		}
		// Filters apply before grouping.
		got, err = s.Stats(ctx, &reprisev1.ExchangeFilter{StatusClass: 5})
		if err != nil || len(got) != 1 || got[0].GetStats().GetCount() != 5 || got[0].GetStats().GetErrorRate() != 1 {
			t.Errorf("Stats(5xx) = %v, %v; want one group of 5 all errors", got, err)
		}

		svcs, err := s.Services(ctx, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(svcs) != 2 || svcs[0].GetService() != "billing" || svcs[1].GetService() != "orders" {
			t.Fatalf("Services = %v", svcs)
		}
		o := svcs[1]
		if o.GetStats().GetCount() != 100 || o.GetStats().GetP99().AsDuration() != 99*time.Millisecond ||
			!o.GetFirstSeen().AsTime().Equal(t0.Add(time.Second)) || !o.GetLastSeen().AsTime().Equal(t0.Add(100*time.Second)) {
			t.Errorf("Services[orders] = %v", o)
		}
	})
}

// TestMigrateFromV1 opens a file written by schema version 1 (uncompressed
// protobuf, no duration or endpoint columns) and checks that its exchanges
// are readable, filterable by the new columns and counted in stats.
func TestMigrateFromV1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	ex := newEx("old", 0, func(ex *reprisev1.Exchange) {
		ex.Request.Target = "/orders/77"
		ex.Duration = durationpb.New(3 * time.Second)
	})
	b, err := proto.Marshal(ex)
	if err != nil {
		t.Fatal(err)
	}
	stmts := append([]string{`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`},
		migrations[0].stmts...)
	for _, stmt := range stmts {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations VALUES (1, 0)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO exchanges (id, start_time, service, direction, method, path, status_code, host, agent_id, exchange)
		VALUES (?, ?, 'orders', 1, 'GET', '/orders/77', 200, 'orders.local', 'agent-a', ?)`, ex.GetId(), t0.UnixNano(), b); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	got, err := s.Get(ctx, "old")
	if err != nil || !proto.Equal(got, ex) {
		t.Fatalf("Get after migration = %v, %v", got, err)
	}
	if n, err := s.Count(ctx, &reprisev1.ExchangeFilter{MinDuration: durationpb.New(2 * time.Second)}); err != nil || n != 1 {
		t.Errorf("Count(min duration) after migration = %d, %v; want 1", n, err)
	}
	st, err := s.Stats(ctx, nil)
	if err != nil || len(st) != 1 || st[0].GetEndpoint() != "/orders/{id}" {
		t.Errorf("Stats after migration = %v, %v", st, err)
	}
	var enc, version int
	if err := s.db.QueryRow(`SELECT encoding FROM exchanges`).Scan(&enc); err != nil || enc != encodingZstdProto {
		t.Errorf("encoding after migration = %d, %v; want compressed", enc, err)
	}
	if err := s.db.QueryRow(`SELECT max(version) FROM schema_migrations`).Scan(&version); err != nil || version != len(migrations) {
		t.Errorf("schema version = %d, %v", version, err)
	}
}

func TestCompressed(t *testing.T) {
	s, _ := openTemp(t)
	body := []byte(`{"items":[` + string(slices.Repeat([]byte(`{"sku":"A-1","qty":1},`), 200)) + `{}]}`)
	ex := newEx("big", 0, func(ex *reprisev1.Exchange) { ex.Response.Body = body })
	if err := s.Put(context.Background(), []*reprisev1.Exchange{ex}); err != nil {
		t.Fatal(err)
	}
	var stored int
	if err := s.db.QueryRow(`SELECT length(exchange) FROM exchanges`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored*4 > len(body) {
		t.Errorf("stored %d bytes for a %d-byte repetitive body, want it compressed", stored, len(body))
	}
}

// TestReadsEveryEncoding rewrites a stored exchange in each encoding older
// versions wrote: all must read back the same, and a corrupt blob must fail
// Get with an error.
func TestReadsEveryEncoding(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	ex := newEx("a", 0)
	if err := s.Put(ctx, []*reprisev1.Exchange{ex}); err != nil {
		t.Fatal(err)
	}
	var enc int
	if err := s.db.QueryRow(`SELECT encoding FROM exchanges`).Scan(&enc); err != nil || enc != blobEncoding {
		t.Fatalf("stored encoding = %d, %v; want %d", enc, err, blobEncoding)
	}
	raw, err := proto.Marshal(ex)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		enc  int
		blob []byte
	}{
		{encodingProto, raw},
		{encodingZstdProto, zstdEncoder.EncodeAll(raw, nil)},
		{encodingS2Proto, raw[:len(raw)/2]},                     // not s2
		{encodingZstdProto, raw},                                // not zstd
		{encodingS2Proto, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}}, // claims 4 GiB
		{7, raw},
	} {
		if _, err := s.db.Exec(`UPDATE exchanges SET encoding = ?, exchange = ?`, tc.enc, tc.blob); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, "a")
		if tc.enc == encodingProto || tc.enc == encodingZstdProto && len(tc.blob) != len(raw) {
			if err != nil || !proto.Equal(got, ex) {
				t.Errorf("encoding %d: Get = %v, %v; want the exchange", tc.enc, got, err)
			}
		} else if err == nil {
			t.Errorf("encoding %d, corrupt blob: Get = %v; want an error", tc.enc, got)
		}
	}
}

func TestPruneByAge(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		want := putMany(t, s, 3*pruneChunk) // start times t0 .. t0+2s
		// Keep what started at or after t0+1s.
		n, err := s.Prune(ctx, Retention{MaxAge: time.Hour}, t0.Add(time.Hour+time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Count(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		kept, err := s.Count(ctx, &reprisev1.ExchangeFilter{StartTime: newEx("", time.Second).StartTime})
		if err != nil {
			t.Fatal(err)
		}
		if n+got != int64(len(want)) || got != kept || got == 0 || n == 0 {
			t.Errorf("Prune deleted %d, %d left of which %d recent; want only the old ones deleted", n, got, kept)
		}
	})
}

// sizer is how a test sees the bytes a store's retention measures.
type sizer interface {
	usedBytes(ctx context.Context) (int64, error)
}

func TestPruneBySize(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		body := make([]byte, 4096)
		for i := range body {
			body[i] = byte(i*7919>>3) ^ byte(i) // poorly compressible
		}
		// Three days of traffic: PostgreSQL keeps size a day (partition) at
		// a time, SQLite an exchange at a time.
		for batch := range 12 {
			var exs []*reprisev1.Exchange
			for i := range 100 {
				at := time.Duration(batch/4)*24*time.Hour + time.Duration(batch*100+i)*time.Millisecond
				exs = append(exs, newEx(fmt.Sprintf("e%02d-%03d", batch, i), at,
					func(ex *reprisev1.Exchange) { ex.Response.Body = body }))
			}
			if err := s.Put(ctx, exs); err != nil {
				t.Fatal(err)
			}
		}
		before, err := s.(sizer).usedBytes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		limit := before / 2
		n, err := s.Prune(ctx, Retention{MaxBytes: limit}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		after, err := s.(sizer).usedBytes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after > limit || n == 0 {
			t.Errorf("Prune to %d bytes: %d used after deleting %d (was %d)", limit, after, n, before)
		}
		if left, err := s.Count(ctx, nil); err != nil || left+n != 1200 {
			t.Errorf("Count after pruning %d = %d, %v; want the rest of 1200", n, left, err)
		}
		// The oldest went first: the newest exchange is still there.
		if _, err := s.Get(ctx, "e11-099"); err != nil {
			t.Errorf("newest exchange after prune: %v", err)
		}
		if _, err := s.Get(ctx, "e00-000"); !errors.Is(err, ErrNotFound) {
			t.Errorf("oldest exchange after prune: %v, want ErrNotFound", err)
		}
	})
}

// TestPruneByAgeAcrossDays checks age retention where PostgreSQL drops
// whole partitions and trims the one the cutoff falls in.
func TestPruneByAgeAcrossDays(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		var exs []*reprisev1.Exchange
		for day := range 4 {
			for h := range 24 {
				exs = append(exs, newEx(fmt.Sprintf("d%d-h%02d", day, h), time.Duration(day*24+h)*time.Hour))
			}
		}
		if err := s.Put(ctx, exs); err != nil {
			t.Fatal(err)
		}
		// Keep from day 2, 06:00 on: 2 days and 6 hours are older.
		now := t0.Add(3*24*time.Hour + 23*time.Hour + 30*time.Minute)
		n, err := s.Prune(ctx, Retention{MaxAge: 41*time.Hour + 30*time.Minute}, now)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := s.List(ctx, nil, 100, "")
		if err != nil {
			t.Fatal(err)
		}
		if n != 2*24+6 || int64(len(got)) != 96-n || got[0].GetId() != "d2-h06" {
			t.Errorf("Prune deleted %d, kept %d from %v; want 54 deleted and d2-h06 first", n, len(got), ids(got[:1]))
		}
		// New exchanges in a pruned day still go in.
		if err := s.Put(ctx, []*reprisev1.Exchange{newEx("late", time.Hour)}); err != nil {
			t.Fatalf("Put into a pruned day: %v", err)
		}
	})
}

// TestPagesBoundedByBytes checks that a page of large exchanges stops at
// PageBytes with a token for the rest, and that paging and streaming still
// return every exchange once, in order.
func TestPagesBoundedByBytes(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		const n, bodySize = 40, 1 << 20
		var want []string
		var exs []*reprisev1.Exchange
		for i := range n {
			ex := newEx(fmt.Sprintf("big-%02d", i), time.Duration(i)*time.Millisecond)
			// Random-looking bytes: the store's compression must not hide the size.
			ex.Response.Body = make([]byte, bodySize)
			for j := range ex.Response.Body {
				ex.Response.Body[j] = byte(j*7 + i*j>>3)
			}
			exs, want = append(exs, ex), append(want, ex.Id)
		}
		if err := s.Put(ctx, exs); err != nil {
			t.Fatal(err)
		}
		var got []string
		token, pages := "", 0
		for {
			page, next, err := s.List(ctx, nil, 1000, token)
			if err != nil {
				t.Fatal(err)
			}
			size := 0
			for _, ex := range page {
				size += proto.Size(ex)
				got = append(got, ex.GetId())
			}
			if size > PageBytes {
				t.Errorf("page %d holds %d bytes, over PageBytes %d", pages, size, PageBytes)
			}
			if pages++; next == "" {
				break
			}
			token = next
		}
		if !slices.Equal(got, want) || pages < n*bodySize/PageBytes {
			t.Errorf("listed %d exchanges in %d pages, want all %d in order in at least %d pages", len(got), pages, n, n*bodySize/PageBytes)
		}
		got = got[:0]
		err := s.Stream(ctx, nil, "", 0, func(ex *reprisev1.Exchange, _ string) error {
			got = append(got, ex.GetId())
			return nil
		})
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("streamed %d exchanges, %v; want all %d in order", len(got), err, n)
		}
	})
}
