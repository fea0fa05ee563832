package faults

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/agent/export"
	"github.com/reprise-dev/reprise/agent/spool"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// collectorBin is the real collector, built once for all tests.
var collectorBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "faults")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	collectorBin = filepath.Join(dir, "collector")
	if out, err := exec.Command("go", "build", "-o", collectorBin, "../collector").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build collector: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// collector is a "collector serve" process with a SQLite store, restarted
// on the same address and store.
type collector struct {
	t     *testing.T
	addr  string
	store string
	cmd   *exec.Cmd
}

func newCollector(t *testing.T) *collector {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{t: t, addr: lis.Addr().String(), store: filepath.Join(t.TempDir(), "reprise.db")}
	lis.Close()
	c.start()
	t.Cleanup(func() {
		if c.cmd != nil {
			c.cmd.Process.Kill()
			c.cmd.Wait()
		}
	})
	return c
}

// start runs the collector and returns once it serves.
func (c *collector) start() {
	c.t.Helper()
	cmd := exec.Command(collectorBin, "serve", "--grpc-listen", c.addr, "--http-listen", "127.0.0.1:0", "--store", c.store)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	serving := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var log []string
		for sc.Scan() {
			if strings.Contains(sc.Text(), "msg=serving") {
				serving <- true
				io.Copy(io.Discard, stderr)
				return
			}
			log = append(log, sc.Text())
		}
		fmt.Fprintf(os.Stderr, "collector exited before serving:\n%s\n", strings.Join(log, "\n"))
		serving <- false
	}()
	select {
	case ok := <-serving:
		if !ok {
			cmd.Wait()
			c.t.Fatal("collector did not start")
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		c.t.Fatal("collector did not serve within 30s")
	}
	c.cmd = cmd
}

// stop sends sig and waits for the process to end.
func (c *collector) stop(sig os.Signal) {
	c.cmd.Process.Signal(sig)
	c.cmd.Wait()
	c.cmd = nil
}

// stored returns how many times the store holds each exchange id with the
// prefix, read back through QueryService.
func (c *collector) stored(prefix string) map[string]int {
	c.t.Helper()
	conn := dial(c.t, c.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	qs, err := reprisev1.NewQueryServiceClient(conn).StreamExchanges(ctx, &reprisev1.StreamExchangesRequest{})
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[string]int{}
	for {
		resp, err := qs.Recv()
		if err == io.EOF {
			return out
		}
		if err != nil {
			c.t.Fatal(err)
		}
		if id := resp.GetExchange().GetId(); strings.HasPrefix(id, prefix+"-") {
			out[id]++
		}
	}
}

// dial connects as the agent does.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append(export.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

type running struct {
	e    *export.Exporter
	done chan error
}

// run starts an exporter as the agent does; ctx is its drain deadline.
func run(ctx context.Context, conn *grpc.ClientConn, cfg export.Config) *running {
	r := &running{e: export.New(conn, cfg), done: make(chan error, 1)}
	go func() { r.done <- r.e.Run(ctx) }()
	return r
}

func id(prefix string, i int) string { return fmt.Sprintf("%s-%05d", prefix, i) }

func exchange(prefix string, i int, body []byte) *reprisev1.Exchange {
	if body == nil {
		body = []byte(`{"sku":"A-1","qty":2}`)
	}
	return &reprisev1.Exchange{
		Id:        id(prefix, i),
		StartTime: timestamppb.Now(),
		Service:   "orders",
		Request: &reprisev1.HttpRequest{Method: "POST", Target: fmt.Sprintf("/orders/%d", i),
			Headers: []*reprisev1.Header{{Name: "Content-Type", Value: "application/json"}}, Body: body},
		Response: &reprisev1.HttpResponse{StatusCode: 201, Body: fmt.Appendf(nil, `{"id":%d}`, i)},
	}
}

// producer adds exchanges at a fixed rate, as capture would, and keeps the
// longest time one Add took.
type producer struct {
	every time.Duration
	body  func() []byte
	worst atomic.Int64
	// check runs after each Add (bounds the test watches).
	check func()
}

// agent is an exporter and the id prefix of what it captures.
type agent struct {
	prefix string
	e      *export.Exporter
}

// produce adds exchanges from up to to, one per tick, to every agent.
func (p *producer) produce(from, to int, agents ...agent) {
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	for i := from; i < to; i++ {
		<-tick.C
		for _, a := range agents {
			var body []byte
			if p.body != nil {
				body = p.body()
			}
			ex := exchange(a.prefix, i, body)
			start := time.Now()
			a.e.Add(ex)
			if d := int64(time.Since(start)); d > p.worst.Load() {
				p.worst.Store(d)
			}
			if p.check != nil {
				p.check()
			}
		}
	}
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exactlyOnce checks that the store holds each id of want once and nothing
// else with the prefix.
func exactlyOnce(t *testing.T, stored map[string]int, want map[string]bool) {
	t.Helper()
	missing, twice, extra := 0, 0, 0
	for id := range want {
		switch stored[id] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	for id := range stored {
		if !want[id] {
			extra++
		}
	}
	if missing+twice+extra > 0 {
		t.Fatalf("store: %d of %d expected exchanges missing, %d stored more than once, %d unexpected", missing, len(want), twice, extra)
	}
}

func ids(prefix string, from, to int) map[string]bool {
	out := map[string]bool{}
	for i := from; i < to; i++ {
		out[id(prefix, i)] = true
	}
	return out
}

// TestCollectorKilledMidStream: kill -9 while batches flow, restart on
// the same store; every exchange is acked and stored exactly once.
func TestCollectorKilledMidStream(t *testing.T) {
	t.Parallel()
	c := newCollector(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := run(ctx, dial(t, c.addr), export.Config{AgentID: "kill9", BatchSize: 50, Backoff: 50 * time.Millisecond})
	const n = 3000
	p := &producer{every: time.Millisecond}
	produced := make(chan struct{})
	go func() { p.produce(0, n, agent{"kill9", r.e}); close(produced) }()

	waitFor(t, "1000 acked", 30*time.Second, func() bool { return r.e.Stats().Acked >= 1000 })
	c.stop(syscall.SIGKILL)
	ackedAtKill, pendingAtKill := r.e.Stats().Acked, r.e.Pending()
	time.Sleep(time.Second)
	c.start()
	<-produced
	r.e.Close()
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
	st := r.e.Stats()
	stored := c.stored("kill9")
	t.Logf("kill -9 mid-stream: %d produced, %d acked before the kill with %d in memory, %d acked in all, %d stored once, %d dropped, %d reconnects",
		n, ackedAtKill, pendingAtKill, st.Acked, len(stored), st.Dropped, st.Retries)
	if st.Acked != n || st.Dropped != 0 || st.Retries == 0 {
		t.Fatalf("exporter: %d acked, %d dropped, %d retries; want %d acked, none dropped, a reconnect", st.Acked, st.Dropped, st.Retries, n)
	}
	exactlyOnce(t, stored, ids("kill9", 0, n))
}

// TestCollectorDown30Seconds: two agents, one with a spool and one
// without, produce through a 30-second outage. With the spool everything
// arrives; without it the store lacks exactly the exchanges the drop
// counter counts, the oldest of the outage.
func TestCollectorDown30Seconds(t *testing.T) {
	t.Parallel()
	c := newCollector(t)
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const bound = 200
	spooled := run(ctx, dial(t, c.addr), export.Config{AgentID: "spool", MaxPending: bound, Spool: sp})
	memory := run(ctx, dial(t, c.addr), export.Config{AgentID: "memory", MaxPending: bound})
	agents := []agent{{"spool", spooled.e}, {"memory", memory.e}}
	drained := func() bool { return spooled.e.Pending() == 0 && memory.e.Pending() == 0 }

	// 20 exchanges a second: 2 s, then 30 s with the collector stopped,
	// then 2 s once both agents have caught up (so the drops are exact).
	const before, outage, after = 40, 600, 40
	p := &producer{every: 50 * time.Millisecond}
	p.produce(0, before, agents...)
	waitFor(t, "both agents to drain", 10*time.Second, drained)
	c.stop(syscall.SIGTERM)
	down := time.Now()
	p.produce(before, before+outage, agents...)
	downFor := time.Since(down)
	c.start()
	waitFor(t, "both agents to reconnect and drain", 30*time.Second, drained)
	t.Logf("caught up %v after the restart; longest Add %v", time.Since(down)-downFor, time.Duration(p.worst.Load()))
	p.produce(before+outage, before+outage+after, agents...)
	spooled.e.Close()
	memory.e.Close()
	for _, r := range []*running{spooled, memory} {
		if err := <-r.done; err != nil {
			t.Fatal(err)
		}
	}
	const n = before + outage + after
	ss, ms := spooled.e.Stats(), memory.e.Stats()
	storedSpool, storedMemory := c.stored("spool"), c.stored("memory")
	t.Logf("%v outage at 20/s, memory bound %d: with spool %d produced, %d spooled, %d acked, %d stored once, %d dropped; "+
		"without spool %d produced, %d acked, %d stored once, %d dropped (%v)",
		downFor.Round(time.Second), bound, n, ss.Spooled, ss.Acked, len(storedSpool), ss.Dropped, n, ms.Acked, len(storedMemory), ms.Dropped, ms.Drops)
	if ss.Acked != n || ss.Dropped != 0 || ss.SpoolFiles != 0 || ss.Spooled < outage-bound {
		t.Fatalf("with spool: %+v; want %d acked, none dropped, at least %d spooled, spool empty", ss, n, outage-bound)
	}
	exactlyOnce(t, storedSpool, ids("spool", 0, n))
	if ms.Acked+ms.Dropped != n || ms.Dropped != ms.Drops[export.DropBacklogFull] || ms.Dropped != outage-bound {
		t.Fatalf("without spool: %+v; want acked + dropped = %d, %d dropped as backlog_full", ms, n, outage-bound)
	}
	// Dropped: the oldest of the outage.
	want := ids("memory", 0, before)
	for k := range ids("memory", before+outage-bound, n) {
		want[k] = true
	}
	exactlyOnce(t, storedMemory, want)
}

// throttle forwards loopback TCP to upstream, client to server at most
// bps bytes a second: a collector slower than the traffic.
func throttle(t *testing.T, upstream string, bps int) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			cc, err := lis.Accept()
			if err != nil {
				return
			}
			sc, err := net.Dial("tcp", upstream)
			if err != nil {
				cc.Close()
				continue
			}
			go func() {
				io.Copy(cc, sc)
				cc.Close()
			}()
			go func() {
				defer sc.Close()
				buf := make([]byte, 4096)
				for {
					n, err := cc.Read(buf)
					if n > 0 {
						time.Sleep(time.Duration(n) * time.Second / time.Duration(bps))
						if _, err := sc.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return lis.Addr().String()
}

// TestCollectorSlowerThanTraffic: the link to the collector carries less
// than capture produces. Add never waits, memory stays within its bound,
// and every exchange is either stored once or counted as dropped.
func TestCollectorSlowerThanTraffic(t *testing.T) {
	t.Parallel()
	c := newCollector(t)
	const rate = 256 << 10 // bytes a second to the collector
	proxy := throttle(t, c.addr, rate)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const bound = 1 << 20
	r := run(ctx, dial(t, proxy), export.Config{AgentID: "slow", MaxPendingBytes: bound, BatchSize: 64, Compression: "none"})
	var maxPending atomic.Int64
	p := &producer{
		every: 2 * time.Millisecond,
		// Incompressible 2 KiB bodies: about 1.5 MB/s offered for 256 KiB/s.
		body: func() []byte {
			b := make([]byte, 2048)
			rand.Read(b)
			return b
		},
		check: func() {
			if b := r.e.PendingBytes(); b > maxPending.Load() {
				maxPending.Store(b)
			}
		},
	}
	const n = 2000
	start := time.Now()
	p.produce(0, n, agent{"slow", r.e})
	took := time.Since(start)
	r.e.Close()
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
	st := r.e.Stats()
	stored := c.stored("slow")
	worst := time.Duration(p.worst.Load())
	t.Logf("%d exchanges of 2 KiB in %v through %d KiB/s: %d acked, %d stored once, %d dropped (%d backlog_full); "+
		"largest backlog %d of %d bytes; longest Add %v",
		n, took.Round(time.Millisecond), rate>>10, st.Acked, len(stored), st.Dropped, st.Drops[export.DropBacklogFull], maxPending.Load(), bound, worst)
	if st.Acked+st.Dropped != n || st.Dropped != st.Drops[export.DropBacklogFull] || st.Dropped == 0 {
		t.Fatalf("%+v: want acked + dropped = %d, all drops backlog_full, and some (the link is slower)", st, n)
	}
	if maxPending.Load() > bound {
		t.Fatalf("backlog reached %d bytes, bound %d", maxPending.Load(), bound)
	}
	// Generous: a scheduling hiccup on a loaded machine, not a wait on the collector.
	if worst > 100*time.Millisecond {
		t.Fatalf("an Add took %v", worst)
	}
	// No stream broke, so what is stored is exactly what was acked.
	if len(stored) != int(st.Acked) {
		t.Fatalf("%d stored, %d acked", len(stored), st.Acked)
	}
	exactlyOnce(t, stored, subset(ids("slow", 0, n), stored))
}

// subset returns the ids of want that are in stored.
func subset(want map[string]bool, stored map[string]int) map[string]bool {
	out := map[string]bool{}
	for id := range want {
		if stored[id] > 0 {
			out[id] = true
		}
	}
	return out
}

// TestAgentRestartedWithPendingBatches: the collector freezes (SIGSTOP)
// with batches on the wire; the agent shuts down, spools what was not
// acked in its drain time, and a new agent on the same spool delivers it
// once the collector is back, each exchange exactly once although the
// frozen collector may still commit what it had received.
func TestAgentRestartedWithPendingBatches(t *testing.T) {
	t.Parallel()
	c := newCollector(t)
	dir := filepath.Join(t.TempDir(), "spool")
	sp1, err := spool.Open(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	ctx1, drainTimeout := context.WithCancel(context.Background())
	defer drainTimeout()
	r1 := run(ctx1, dial(t, c.addr), export.Config{AgentID: "restart", BatchSize: 50, Spool: sp1})
	const n = 1000
	p := &producer{every: time.Millisecond}
	p.produce(0, n/2, agent{"restart", r1.e})
	c.cmd.Process.Signal(syscall.SIGSTOP)
	t.Cleanup(func() {
		if c.cmd != nil {
			c.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	p.produce(n/2, n, agent{"restart", r1.e})
	// SIGTERM: capture stopped, the drain time passes without acks.
	r1.e.Close()
	time.AfterFunc(time.Second, drainTimeout)
	if err := <-r1.done; err == nil {
		t.Fatal("first agent: Run returned nil with the collector frozen")
	}
	st1 := r1.e.Stats()
	sp1.Close()
	if st1.Dropped != 0 || st1.Acked+uint64(st1.SpoolExchanges) != n || st1.SpoolExchanges == 0 {
		t.Fatalf("first agent: %+v; want acked + spooled = %d, none dropped", st1, n)
	}

	c.cmd.Process.Signal(syscall.SIGCONT)
	sp2, err := spool.Open(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer sp2.Close()
	ctx2, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r2 := run(ctx2, dial(t, c.addr), export.Config{AgentID: "restart", Spool: sp2})
	r2.e.Close()
	if err := <-r2.done; err != nil {
		t.Fatal(err)
	}
	st2 := r2.e.Stats()
	stored := c.stored("restart")
	t.Logf("agent restarted: first run %d acked, %d spooled at shutdown; second run %d acked from the spool; %d stored once, %d dropped",
		st1.Acked, st1.SpoolExchanges, st2.Acked, len(stored), st1.Dropped+st2.Dropped)
	if st2.Acked != uint64(st1.SpoolExchanges) || st2.Dropped != 0 || st2.SpoolFiles != 0 {
		t.Fatalf("second agent: %+v; want the %d spooled exchanges acked, none dropped, spool empty", st2, st1.SpoolExchanges)
	}
	exactlyOnce(t, stored, ids("restart", 0, n))
}
