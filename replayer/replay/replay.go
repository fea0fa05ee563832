// Package replay sends recorded inbound requests to the targets of a run
// and checks each response against the recorded one.
//
// Requests of one recorded connection keep their recorded order, each
// waiting for the previous one's response, so a sequence that changes
// state, such as create then read, replays in the order it happened;
// different connections replay in parallel, paced by a load model.
package replay

import (
	"context"
	"fmt"
	"iter"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reprise-dev/reprise/internal/endpoint"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
	"github.com/reprise-dev/reprise/replayer/compare"
	"github.com/reprise-dev/reprise/replayer/reqtarget"
)

// RunHeader marks every replayed request with the run id, so the target's
// logs and any downstream service can tell replayed traffic from real.
const RunHeader = "X-Reprise-Replay"

// DefaultTimeout bounds one request, from sending it to the end of the body.
const DefaultTimeout = 10 * time.Second

// maxResponseBody bounds how much of a replayed response is kept; beyond it
// the response is marked truncated and only the prefix is compared.
const maxResponseBody = 32 << 20

// Result is the outcome of replaying one exchange.
type Result struct {
	ID     string
	Method string
	// Target is the recorded request-target (path and query).
	Target string
	// Endpoint is the recorded path with identifiers replaced, e.g.
	// /orders/{id}, for grouping.
	Endpoint       string
	Service        string
	RecordedStatus int
	// ReplayedStatus is 0 when no response came back (error or skip).
	ReplayedStatus int
	Recorded       *reprisev1.Exchange
	// Replayed is nil when no response came back.
	Replayed    *reprisev1.HttpResponse
	Differences []compare.Difference
	// Err is why the exchange could not be replayed (target unreachable,
	// timeout); the replay goes on with the next exchange.
	Err error
	// Skipped says why the exchange was not sent; empty when it was.
	Skipped string
	// NeedsCredentials is set when the replay got 401 or 403 while the
	// request carried a credential the sanitizer had removed at record
	// time: the location of that credential (request.headers.Authorization).
	// The exchange is neither passed nor failed: it needs an auth transform.
	NeedsCredentials string
	// Partial says what of the recorded response was compared when the
	// recording is incomplete; empty when all of it was.
	Partial string
	// Dropped is set, with Skipped, when the send was due but the bound of
	// requests in flight was reached (open-model load only).
	Dropped         bool
	RecordedLatency time.Duration
	// Latency runs from the scheduled start to the end of the response
	// body, so time spent waiting behind slow requests counts (no
	// coordinated omission).
	Latency time.Duration
	// Late is how long after its scheduled start the request was sent.
	Late time.Duration
}

// Passed reports whether the exchange was replayed and matched.
func (r Result) Passed() bool {
	return r.Err == nil && r.Skipped == "" && r.NeedsCredentials == "" && len(r.Differences) == 0
}

// Checker compares a replayed response with the recorded exchange in the
// context of its replay (see compare.Context).
type Checker interface {
	Check(rec *reprisev1.Exchange, got *reprisev1.HttpResponse, c compare.Context) []compare.Difference
}

// NoiseLearner learns which fields vary on their own from the reference
// build's two answers a and b to the request of rec: what differs between
// the recording and a (in the context recA), and between a and b (in the
// context ab, a taken as the recorded side).
type NoiseLearner interface {
	Learn(rec *reprisev1.Exchange, a, b *reprisev1.HttpResponse, recA, ab compare.Context)
}

// Transformer rewrites recorded requests before they are sent and learns
// from the responses; session is the recorded connection.
type Transformer interface {
	Request(session string, ex *reprisev1.Exchange) (*reprisev1.HttpRequest, error)
	Learn(session string, rec, got *reprisev1.HttpResponse)
}

// Options configure a Replayer.
type Options struct {
	Targets *Targets
	RunID   string
	Timeout time.Duration
	Safety  Safety
	Load    Load
	// Transform is applied to every request; nil sends them as recorded.
	Transform Transformer
	// Checker compares responses; nil compares with compare.CompareIn.
	Checker Checker
	// References, with Learner, are the known-good build: each request is
	// sent twice first (to the one reference, or once to each of two) and
	// Learner is told both responses, to compare with the recording and
	// with each other.
	References []*url.URL
	Learner    NoiseLearner
}

// Stats count what a run did so far.
type Stats struct {
	Selected, Sent, Skipped, Dropped, Late, Errors, Failed int64
	// FirstSend and LastSend bound the send starts, for the achieved rate.
	FirstSend, LastSend time.Time
}

// Rate is the achieved send rate in requests per second, measured as
// vegeta does: sends over the time between the first and the last.
func (s Stats) Rate() float64 {
	d := s.LastSend.Sub(s.FirstSend).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(s.Sent) / d
}

// Replayer sends recorded requests to the targets of a run.
type Replayer struct {
	opts   Options
	client *wireClient

	selected, sent, skipped, dropped, late, errors, failed atomic.Int64

	mu                  sync.Mutex // guards the send bounds
	firstSend, lastSend time.Time
}

// New checks the options and returns a Replayer.
func New(opts Options) (*Replayer, error) {
	if opts.Targets == nil {
		return nil, fmt.Errorf("no targets")
	}
	if opts.Timeout <= 0 {
		return nil, fmt.Errorf("timeout must be positive, got %s", opts.Timeout)
	}
	if opts.RunID == "" {
		return nil, fmt.Errorf("run id must not be empty")
	}
	if opts.Load.MaxInFlight == 0 {
		opts.Load.MaxInFlight = DefaultMaxInFlight
	}
	if opts.Load.Model == Fastest && opts.Load.Workers == 0 {
		opts.Load.Workers = 1
	}
	if err := opts.Load.validate(); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if err := opts.Safety.Validate(); err != nil {
		return nil, err
	}
	if (len(opts.References) == 0) != (opts.Learner == nil) || len(opts.References) > 2 {
		return nil, fmt.Errorf("noise learning needs both a reference URL and a learner")
	}
	if opts.Checker == nil {
		opts.Checker = compareChecker{}
	}
	conns := opts.Load.MaxInFlight
	if opts.Load.Model == Fastest {
		conns = opts.Load.Workers
	}
	return &Replayer{opts: opts, client: newWireClient(conns)}, nil
}

type compareChecker struct{}

func (compareChecker) Check(rec *reprisev1.Exchange, got *reprisev1.HttpResponse, c compare.Context) []compare.Difference {
	return compare.CompareIn(c, rec.GetResponse(), got)
}

// Stats returns the counts so far; safe to call while Run runs.
func (r *Replayer) Stats() Stats {
	r.mu.Lock()
	first, last := r.firstSend, r.lastSend
	r.mu.Unlock()
	return Stats{
		Selected: r.selected.Load(), Sent: r.sent.Load(), Skipped: r.skipped.Load(),
		Dropped: r.dropped.Load(), Late: r.late.Load(), Errors: r.errors.Load(), Failed: r.failed.Load(),
		FirstSend: first, LastSend: last,
	}
}

// ParseTarget checks that target is an absolute http or https URL without
// query or fragment, usable as the base of replayed requests.
func ParseTarget(target string) (*url.URL, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("parse target URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("target URL %q: scheme must be http or https", target)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("target URL %q: no host", target)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("target URL %q: must not have a query, fragment or user info", target)
	}
	return u, nil
}

// job is one request handed to a worker.
type job struct {
	res        Result
	session    string
	prev, done chan struct{}
	due        time.Time // zero for a closed model: due when sent
}

// Run replays the exchanges paced by the load model, calling report with
// each result (never concurrently). It stops at the first error of the
// sequence itself (e.g. the collector stream broke) or when ctx is done,
// waits for the requests in flight, and returns that error.
func (r *Replayer) Run(ctx context.Context, exchanges iter.Seq2[*reprisev1.Exchange, error], report func(Result)) error {
	var reportMu sync.Mutex
	emit := func(res Result) {
		r.count(res)
		reportMu.Lock()
		defer reportMu.Unlock()
		report(res)
	}
	load := r.opts.Load
	slots := load.MaxInFlight
	if load.Model == Fastest {
		slots = load.Workers
	}
	// A fixed pool of workers, one per slot: a slot is taken before a job
	// is handed over, so a free worker always takes it at once, and no
	// goroutine is started (and its stack grown) per request.
	inFlight := make(chan struct{}, slots)
	jobs := make(chan *job)
	sessions := newSessions()
	var wg sync.WaitGroup
	for range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				r.work(ctx, sessions, j)
				<-inFlight
				emit(j.res)
			}
		}()
	}
	defer wg.Wait()
	defer close(jobs)

	sched := &schedule{load: load}
	begin := time.Now()
	for ex, err := range prefetch(ctx, exchanges) {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		r.selected.Add(1)
		j := &job{res: r.newResult(ex), session: ex.GetConnectionId()}
		if j.res.Skipped != "" {
			emit(j.res)
			continue
		}
		offset, paced := sched.next(ex)
		if paced {
			j.due = begin.Add(offset)
			if err := sleepUntil(ctx, j.due); err != nil {
				return err
			}
			select {
			case inFlight <- struct{}{}:
			default:
				j.res.Skipped = fmt.Sprintf("dropped: %d requests in flight when it was due", slots)
				j.res.Dropped = true
				emit(j.res)
				continue
			}
		} else {
			select {
			case inFlight <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		j.prev, j.done = sessions.enter(j.session)
		jobs <- j
	}
	return ctx.Err()
}

// work waits for the previous request of the job's session, then sends it.
func (r *Replayer) work(ctx context.Context, sessions *sessions, j *job) {
	if j.prev != nil {
		select {
		case <-j.prev:
		case <-ctx.Done():
		}
	}
	r.replay(ctx, &j.res, j.session, j.due)
	sessions.leave(j.session, j.done)
}

// prefetch reads the sequence ahead on its own goroutine, so decoding
// recorded exchanges overlaps with sending them.
func prefetch(ctx context.Context, seq iter.Seq2[*reprisev1.Exchange, error]) iter.Seq2[*reprisev1.Exchange, error] {
	type item struct {
		ex  *reprisev1.Exchange
		err error
	}
	return func(yield func(*reprisev1.Exchange, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		items := make(chan item, 1024)
		go func() {
			defer close(items)
			for ex, err := range seq {
				select {
				case items <- item{ex, err}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}()
		for it := range items {
			if !yield(it.ex, it.err) {
				return
			}
		}
	}
}

func (r *Replayer) count(res Result) {
	switch {
	case res.Dropped:
		r.dropped.Add(1)
	case res.Skipped != "":
		r.skipped.Add(1)
	case res.Err != nil:
		r.errors.Add(1)
	case len(res.Differences) > 0:
		r.failed.Add(1)
	}
}

// sleepUntil waits for t; a timer woken late is made up for by sending the
// requests due meanwhile at once, so the rate over the run stays exact.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sessions chains the requests of each recorded connection: each waits for
// the previous one to be done.
type sessions struct {
	mu   sync.Mutex
	last map[string]chan struct{}
}

func newSessions() *sessions { return &sessions{last: map[string]chan struct{}{}} }

// enter returns the done channel of the session's previous request (nil if
// none is pending) and a new one for this request. Exchanges without a
// connection are independent.
func (s *sessions) enter(session string) (prev, done chan struct{}) {
	done = make(chan struct{})
	if session == "" {
		return nil, done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev = s.last[session]
	s.last[session] = done
	return prev, done
}

func (s *sessions) leave(session string, done chan struct{}) {
	close(done)
	if session == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last[session] == done {
		delete(s.last, session)
	}
}

// newResult describes ex and says whether it must be skipped.
func (r *Replayer) newResult(ex *reprisev1.Exchange) Result {
	rec := ex.GetRequest()
	res := Result{
		ID:              ex.GetId(),
		Method:          rec.GetMethod(),
		Target:          rec.GetTarget(),
		Endpoint:        endpoint.Normalize(rec.GetTarget()),
		Service:         ex.GetService(),
		RecordedStatus:  int(ex.GetResponse().GetStatusCode()),
		Recorded:        ex,
		RecordedLatency: ex.GetDuration().AsDuration(),
	}
	res.Skipped = skipReason(ex)
	_, targetErr := reqtarget.Parse(rec.GetTarget())
	switch {
	case res.Skipped != "":
	case targetErr != nil:
		res.Skipped = "refused, not sent: " + targetErr.Error()
	case r.opts.Targets.For(ex) == nil:
		res.Skipped = fmt.Sprintf("no target for service %q or host %q", ex.GetService(), rec.GetHost())
	case !r.opts.Safety.allows(rec.GetMethod(), rec.GetTarget()):
		res.Skipped = rec.GetMethod() + " is not idempotent: replayed only with --allow-writes or a safety route"
	}
	return res
}

// Replay sends one recorded request now and checks the response; it is Run
// for a single exchange, without pacing.
func (r *Replayer) Replay(ctx context.Context, ex *reprisev1.Exchange) Result {
	res := r.newResult(ex)
	if res.Skipped == "" {
		r.replay(ctx, &res, ex.GetConnectionId(), time.Time{})
	}
	r.count(res)
	return res
}

// replay fills res with the outcome of sending its exchange, scheduled at
// due (zero: unscheduled, due when sent).
func (r *Replayer) replay(ctx context.Context, res *Result, session string, due time.Time) {
	ex := res.Recorded
	req := ex.GetRequest()
	if r.opts.Transform != nil {
		var err error
		if req, err = r.opts.Transform.Request(session, ex); err != nil {
			res.Err = fmt.Errorf("transform request: %w", err)
			return
		}
	}
	if r.opts.Learner != nil {
		refs := r.opts.References
		a, errA := r.send(ctx, refs[0], req)
		b, errB := r.send(ctx, refs[len(refs)-1], req)
		if errA != nil || errB != nil {
			res.Err = fmt.Errorf("reference: %w", firstErr(errA, errB))
			return
		}
		ab := compare.Context{
			Own: []string{RunHeader}, RecordedAt: a.at, ReplayedAt: b.at, Tolerance: a.took + b.took,
			Replace: changes(&reprisev1.HttpRequest{Host: refs[0].Host}, req, refs[len(refs)-1]),
		}
		r.opts.Learner.Learn(ex, a.resp, b.resp, comparison(ex, req, refs[0], a), ab)
		// The reference's time is not the target's latency.
		if now := time.Now(); !due.IsZero() && now.After(due) {
			due = now
		}
	}
	start := time.Now()
	if due.IsZero() {
		due = start
	}
	r.markSend(start)
	if res.Late = start.Sub(due); res.Late >= LateThreshold {
		r.late.Add(1)
	}
	base := r.opts.Targets.For(ex)
	a, err := r.send(ctx, base, req)
	res.Latency = time.Since(due)
	if err != nil {
		res.Err = err
		return
	}
	got := a.resp
	res.Replayed = got
	res.ReplayedStatus = int(got.GetStatusCode())
	if r.opts.Transform != nil {
		r.opts.Transform.Learn(session, ex.GetResponse(), got)
	}
	c := comparison(ex, req, base, a)
	res.Partial = partial(ex, c)
	res.Differences = r.opts.Checker.Check(ex, got, c)
	if deny := got.GetStatusCode() == 401 || got.GetStatusCode() == 403; deny && res.RecordedStatus != int(got.GetStatusCode()) {
		res.NeedsCredentials = missingCredential(ex, req)
	}
}

// partial says what of the recorded response c compares, when not all.
func partial(ex *reprisev1.Exchange, c compare.Context) string {
	switch {
	case c.NoBody:
		return "recorded response body not captured: compared status and headers only"
	case c.Partial:
		return fmt.Sprintf("recorded response incomplete: compared status, headers and the first %d of %d body bytes",
			len(ex.GetResponse().GetBody()), max(ex.GetResponse().GetBodySize(), int64(len(ex.GetResponse().GetBody()))))
	}
	return ""
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *Replayer) markSend(t time.Time) {
	r.sent.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.firstSend.IsZero() || t.Before(r.firstSend) {
		r.firstSend = t
	}
	if t.After(r.lastSend) {
		r.lastSend = t
	}
}

// skipReason says why an exchange cannot be replayed faithfully, or "".
func skipReason(ex *reprisev1.Exchange) string {
	req := ex.GetRequest()
	switch {
	case ex.GetDirection() == reprisev1.Direction_DIRECTION_OUTBOUND:
		return "outbound exchange: only inbound requests are replayed"
	case req.GetMethod() == "":
		return "no recorded request"
	case ex.GetResponse().GetStatusCode() == 0:
		return "no recorded response"
	case req.GetBodyTruncated():
		return fmt.Sprintf("recorded request body truncated (%d of %d bytes kept)", len(req.GetBody()), req.GetBodySize())
	case ex.GetCapture().GetRequestIncomplete():
		return "recorded request incomplete"
	}
	return ""
}

// send sends rec to base and reads the response. Redirects are not
// followed: a redirect is a response to compare, not a hop to take.
func (r *Replayer) send(ctx context.Context, base *url.URL, rec *reprisev1.HttpRequest) (answer, error) {
	u, err := requestURL(base, rec.GetTarget())
	if err != nil {
		return answer{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	headers := wireHeaders(rec, base.Host, r.opts.RunID)
	at := time.Now()
	resp, err := r.client.do(ctx, base, rec.GetMethod(), strings.TrimPrefix(u, base.Scheme+"://"+base.Host), headers, rec.GetBody(), maxResponseBody)
	if err != nil {
		return answer{}, fmt.Errorf("send %s %s: %w", rec.GetMethod(), u, err)
	}
	out := &reprisev1.HttpResponse{StatusCode: int32(resp.status), Proto: resp.proto, Body: resp.body, BodyTruncated: resp.truncated}
	for name, values := range resp.header {
		for _, v := range values {
			out.Headers = append(out.Headers, &reprisev1.Header{Name: name, Value: v})
		}
	}
	return answer{resp: out, at: at, took: time.Since(at)}, nil
}

// notSent are the recorded headers the replayer cannot send as recorded
// (docs/replay.md lists every change): Host and Content-Length are those
// of the new request (set by wireHeaders), the body goes with a
// Content-Length rather than chunked, and a protocol upgrade or trailers
// are not replayed.
var notSent = map[string]bool{
	"Transfer-Encoding": true,
	"Te":                true,
	"Upgrade":           true,
	"Content-Length":    true,
	"Host":              true,
}

// wireHeaders are the header fields sent for rec, in recorded order with
// their names as recorded: Host (the target's authority) and
// Content-Length (of the body sent) in the place of the recorded ones, the
// run header last. Connection and Keep-Alive go as recorded, unless
// Connection names other headers (an upgrade): then it and they are left
// out. Proxy-* headers were meant for a proxy and are left out too.
func wireHeaders(rec *reprisev1.HttpRequest, host, runID string) []*reprisev1.Header {
	skip := map[string]bool{textproto.CanonicalMIMEHeaderKey(RunHeader): true}
	for _, h := range rec.GetHeaders() {
		if textproto.CanonicalMIMEHeaderKey(h.GetName()) != "Connection" {
			continue
		}
		names := strings.Split(h.GetValue(), ",")
		for i, name := range names {
			names[i] = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))
		}
		if slices.ContainsFunc(names, func(n string) bool { return n != "Keep-Alive" && n != "Close" }) {
			skip["Connection"] = true
			for _, n := range names {
				skip[n] = true
			}
		}
	}
	length, hasLength := contentLength(rec)
	out := []*reprisev1.Header{{Name: "Host", Value: host}}
	hostAt := -1
	for _, h := range rec.GetHeaders() {
		name := textproto.CanonicalMIMEHeaderKey(h.GetName())
		switch {
		case name == "Host" && hostAt < 0:
			hostAt = len(out)
			out = append(out, &reprisev1.Header{Name: h.GetName(), Value: host})
		case name == "Content-Length" && hasLength:
			out = append(out, &reprisev1.Header{Name: h.GetName(), Value: length.GetValue()})
			hasLength = false
		case notSent[name] || skip[name] || strings.HasPrefix(name, "Proxy-"):
		default:
			out = append(out, h)
		}
	}
	if hostAt >= 0 {
		out = out[1:] // the recorded Host took its place
	}
	if hasLength {
		out = append(out, length)
	}
	return append(out, &reprisev1.Header{Name: RunHeader, Value: runID})
}
