package export

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/reprise-dev/reprise/agent/spool"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// heldCollector records every batch; it acks only once release is closed,
// and refuses (InvalidArgument) a batch holding an exchange with id "bad".
type heldCollector struct {
	reprisev1.UnimplementedIngestServiceServer
	release chan struct{}

	mu  sync.Mutex
	ids map[string]int
}

func newHeld(acking bool) *heldCollector {
	h := &heldCollector{release: make(chan struct{}), ids: map[string]int{}}
	if acking {
		close(h.release)
	}
	return h
}

func (h *heldCollector) Ingest(stream reprisev1.IngestService_IngestServer) error {
	// Batches are received as they come, acked in order once released.
	received := make(chan string, 1000)
	go func() {
		defer close(received)
		for {
			req, err := stream.Recv()
			if err != nil {
				return
			}
			h.mu.Lock()
			bad := false
			for _, ex := range req.Exchanges {
				h.ids[ex.Id]++
				bad = bad || ex.Id == "bad"
			}
			h.mu.Unlock()
			if bad {
				received <- ""
				return
			}
			received <- req.BatchId
		}
	}()
	select {
	case <-h.release:
	case <-stream.Context().Done():
		return nil
	}
	for id := range received {
		if id == "" {
			return status.Error(codes.InvalidArgument, "exchange id bad")
		}
		if err := stream.Send(&reprisev1.IngestResponse{BatchId: id}); err != nil {
			return err
		}
	}
	return nil
}

func (h *heldCollector) received() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for k, v := range h.ids {
		out[k] = v
	}
	return out
}

// downConn is a connection to a collector that is never there.
func downConn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///down",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return nil, fmt.Errorf("collector down") }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func ids(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k, n := range m {
		if n != 1 {
			out = append(out, fmt.Sprintf("%s×%d", k, n))
			continue
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func wantIDs(t *testing.T, got map[string]int, want []string) {
	t.Helper()
	sort.Strings(want)
	if g := sortedKeys(got); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("collector received %d distinct exchanges %v,\nwant each of %d once: %v", len(got), g, len(want), want)
	}
}

func TestDropsOldestAndKeepsBatchesOnTheWire(t *testing.T) {
	hc := newHeld(false)
	e := New(dial(t, hc), Config{BatchSize: 10, MaxPending: 100, MaxInFlight: 2, FlushInterval: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	for i := range 20 {
		e.Add(&reprisev1.Exchange{Id: fmt.Sprint("ex-", i)})
	}
	waitFor(t, "two batches on the wire", func() bool { return len(hc.received()) == 20 })
	// The collector holds its acks: 20 exchanges on the wire, room for 80
	// more; of the next 200 the 120 oldest go.
	for i := 20; i < 220; i++ {
		e.Add(&reprisev1.Exchange{Id: fmt.Sprint("ex-", i)})
	}
	if st := e.Stats(); st.Drops[DropBacklogFull] != 120 || e.Pending() != 100 {
		t.Fatalf("drops %v, pending %d; want 120 backlog_full, 100 pending", st.Drops, e.Pending())
	}
	close(hc.release)
	e.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wantIDs(t, hc.received(), append(ids("ex-", 0, 20), ids("ex-", 140, 220)...))
	if st := e.Stats(); st.Acked != 100 || st.Dropped != 120 {
		t.Fatalf("stats %+v, want 100 acked, 120 dropped", st)
	}
}

func TestRejectedBatchIsDroppedNotResent(t *testing.T) {
	hc := newHeld(true)
	e := New(dial(t, hc), Config{BatchSize: 5, MaxInFlight: 1, Backoff: time.Millisecond})
	var want []string
	for i := range 15 {
		id := fmt.Sprint("ex-", i)
		if i == 7 {
			id = "bad"
		}
		if i < 5 || i >= 10 {
			want = append(want, id)
		}
		e.Add(&reprisev1.Exchange{Id: id})
	}
	e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Run(ctx); err != nil {
		t.Fatal(err)
	}
	got := hc.received()
	// The refused batch reached the collector once and was not resent.
	for _, id := range ids("ex-", 5, 10) {
		if id != "ex-7" && got[id] != 1 {
			t.Fatalf("%s received %d times, want once", id, got[id])
		}
		delete(got, id)
	}
	if got["bad"] != 1 {
		t.Fatalf("bad batch received %d times", got["bad"])
	}
	delete(got, "bad")
	wantIDs(t, got, want)
	if st := e.Stats(); st.Acked != 10 || st.Drops[DropRejected] != 5 || st.Dropped != 5 {
		t.Fatalf("stats %+v, want 10 acked, 5 rejected", st)
	}
}

// wireStats records what the server's transport saw of each message.
type wireStats struct {
	mu          sync.Mutex
	compression []string
	length      int // payload bytes
	wire        int // bytes on the wire
}

func (w *wireStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (w *wireStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (w *wireStats) HandleConn(context.Context, stats.ConnStats) {}
func (w *wireStats) HandleRPC(_ context.Context, s stats.RPCStats) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch s := s.(type) {
	case *stats.InHeader:
		w.compression = append(w.compression, s.Compression)
	case *stats.InPayload:
		w.length += s.Length
		w.wire += s.WireLength
	}
}

// ackingServer serves an acking collector on an in-memory listener, ws
// counting what reaches it, and returns a connection to it.
func ackingServer(tb testing.TB, opts ...grpc.ServerOption) (*grpc.ClientConn, *wireStats) {
	tb.Helper()
	ws := &wireStats{}
	lis := bufconn.Listen(4 << 20)
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.StatsHandler(ws)}, opts...)...)
	reprisev1.RegisterIngestServiceServer(srv, newHeld(true))
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		conn.Close()
		srv.Stop()
	})
	return conn, ws
}

// sendOne delivers one compressible exchange through an exporter on conn.
func sendOne(t *testing.T, conn *grpc.ClientConn, cfg Config) *Exporter {
	t.Helper()
	e := New(conn, cfg)
	e.Add(&reprisev1.Exchange{Id: "a", Response: &reprisev1.HttpResponse{Body: bytes.Repeat([]byte("x"), 4096)}})
	e.Close()
	if err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestCompressionOnTheWire(t *testing.T) {
	for _, c := range Compressions {
		conn, ws := ackingServer(t)
		e := sendOne(t, conn, Config{Compression: c})
		ws.mu.Lock()
		want := map[string]string{"s2": "[s2]", "gzip": "[gzip]", "none": "[]"}[c]
		if got := fmt.Sprint(ws.compression); got != want || e.Stats().Acked != 1 {
			t.Fatalf("compression %s: stream encoding %s, %d acked; want %s, 1", c, got, e.Stats().Acked, want)
		}
		if compressed := ws.wire < ws.length/4; compressed != (c != "none") {
			t.Fatalf("compression %s: %d payload bytes took %d on the wire", c, ws.length, ws.wire)
		}
		ws.mu.Unlock()
	}
}

// A collector that does not know the agent's compression (an older one)
// refuses every stream with Unimplemented, as gRPC does for a compressor it
// has not registered; the exporter falls back to the next one and delivers.
func TestCompressionFallsBack(t *testing.T) {
	refuseS2 := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if ts, ok := grpc.ServerTransportStreamFromContext(ss.Context()).(interface{ RecvCompress() string }); ok && ts.RecvCompress() == "s2" {
			return status.Error(codes.Unimplemented, `grpc: Decompressor is not installed for grpc-encoding "s2"`)
		}
		return handler(srv, ss)
	}
	conn, ws := ackingServer(t, grpc.StreamInterceptor(refuseS2))
	e := sendOne(t, conn, Config{Compression: "s2", Backoff: time.Millisecond})
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if got := fmt.Sprint(ws.compression); got != "[s2 gzip]" || e.Stats().Acked != 1 {
		t.Fatalf("stream encodings %s, %d acked; want [s2 gzip] (refused, then the fallback), 1", got, e.Stats().Acked)
	}
}

func openSpool(t *testing.T, dir string, max int64) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// secretExchange carries a bearer token and a password the built-in rules
// remove.
func secretExchange(id string) *reprisev1.Exchange {
	return &reprisev1.Exchange{Id: id, Request: &reprisev1.HttpRequest{
		Method: "POST", Target: "/login",
		Headers: []*reprisev1.Header{{Name: "Authorization", Value: "Bearer s3cr3t-t0ken-" + id}},
		Body:    []byte(`{"user":"ann","password":"hunter2-` + id + `"}`),
	}}
}

// TestSpoolAcrossRestart: with the collector down, the memory bound is
// kept by spooling; at shutdown the rest is spooled too; a new exporter on
// the same spool (the agent restarted) delivers every exchange once.
func TestSpoolAcrossRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	sp := openSpool(t, dir, 1<<30)
	e := New(downConn(t), Config{BatchSize: 5, MaxPending: 20, Backoff: time.Millisecond, Spool: sp})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	for i := range 100 {
		// Producing no faster than the spool writes keeps this exact.
		waitFor(t, "the spiller", func() bool { return e.Pending() < 15 })
		e.Add(secretExchange(fmt.Sprint("ex-", i)))
		if e.Pending() > 20 {
			t.Fatalf("%d pending, bound is 20", e.Pending())
		}
	}
	e.Close()
	cancel() // the drain timeout: the collector never came back
	if err := <-done; err == nil {
		t.Fatal("Run returned nil with the collector down")
	}
	st := e.Stats()
	if st.Spooled != 100 || st.Dropped != 0 || st.SpoolExchanges != 100 || e.Pending() != 0 {
		t.Fatalf("stats %+v, pending %d; want 100 spooled, none dropped or pending", st, e.Pending())
	}
	sp.Close()

	// Nothing unsanitized reached the disk.
	entries, _ := os.ReadDir(dir)
	for _, de := range entries {
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("s3cr3t")) || bytes.Contains(b, []byte("hunter2")) {
			t.Fatalf("spool file %s holds a secret", de.Name())
		}
	}

	hc := newHeld(true)
	sp2 := openSpool(t, dir, 1<<30)
	defer sp2.Close()
	e2 := New(dial(t, hc), Config{Spool: sp2})
	e2.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer rcancel()
	if err := e2.Run(rctx); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, hc.received(), ids("ex-", 0, 100))
	if st := e2.Stats(); st.Acked != 100 || st.SpoolFiles != 0 || st.Dropped != 0 {
		t.Fatalf("after restart: %+v; want 100 acked, spool empty", st)
	}
}

func TestSpoolBoundAndCorruptFilesAreCounted(t *testing.T) {
	dir := t.TempDir()
	probe := &reprisev1.IngestRequest{BatchId: "00000000-0000-0000-0000-000000000000", AgentId: "a"}
	for i := range 5 {
		probe.Exchanges = append(probe.Exchanges, &reprisev1.Exchange{Id: fmt.Sprintf("ex-%02d", i), Capture: &reprisev1.Capture{AgentId: "a"}})
	}
	one, _ := spool.Encode(probe)
	// Room for four batches of five.
	sp := openSpool(t, dir, 4*int64(len(one)))
	e := New(downConn(t), Config{AgentID: "a", BatchSize: 5, Spool: sp})
	for i := range 40 {
		e.Add(&reprisev1.Exchange{Id: fmt.Sprintf("ex-%02d", i)})
	}
	// Shutdown with the collector down: eight batches for four places, the
	// four oldest files make room for the newer.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.Close()
	if err := e.Run(ctx); err == nil {
		t.Fatal("Run returned nil with the collector down")
	}
	st := e.Stats()
	if st.Spooled != 40 || st.Drops[DropSpoolFull] != 20 || st.Dropped != 20 || st.SpoolExchanges != 20 {
		t.Fatalf("stats %+v: want 40 spooled, 20 spool_full, 20 in the spool", st)
	}
	sp.Close()

	// Damage the oldest file left; its five exchanges are counted, the rest delivered.
	entries, _ := os.ReadDir(dir)
	var files []string
	for _, de := range entries {
		if filepath.Ext(de.Name()) == ".batch" {
			files = append(files, de.Name())
		}
	}
	sort.Strings(files)
	if err := os.WriteFile(filepath.Join(dir, files[0]), []byte("RPS\x01garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	hc := newHeld(true)
	sp2 := openSpool(t, dir, 1<<20)
	defer sp2.Close()
	e2 := New(dial(t, hc), Config{Spool: sp2})
	e2.Close()
	if err := e2.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := e2.Stats(); st.Acked != 15 || st.Drops[DropSpoolCorrupt] != 5 || len(hc.received()) != 15 || st.SpoolFiles != 0 {
		t.Fatalf("after restart: %+v, %d received; want 15 acked, 5 spool_corrupt", st, len(hc.received()))
	}
}
