// Package replay sends recorded inbound requests to a target and compares
// each response with the recorded one.
//
// Requests go one at a time in the order given (the collector streams them in
// time order), so a sequence that changes state, such as create then read,
// replays in the order it happened.
package replay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
	"github.com/reprise-dev/reprise/replayer/compare"
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
	Target         string
	RecordedStatus int
	// ReplayedStatus is 0 when no response came back (error or skip).
	ReplayedStatus int
	Differences    []compare.Difference
	// Err is why the exchange could not be replayed (target unreachable,
	// timeout); the replay goes on with the next exchange.
	Err error
	// Skipped says why the exchange was not sent; empty when it was.
	Skipped string
}

// Passed reports whether the exchange was replayed and matched.
func (r Result) Passed() bool {
	return r.Err == nil && r.Skipped == "" && len(r.Differences) == 0
}

// Replayer sends recorded requests to one target.
type Replayer struct {
	base    *url.URL
	runID   string
	timeout time.Duration
	client  *http.Client
}

// New returns a Replayer for the target base URL; its path, if any, is a
// prefix for every replayed request-target.
func New(target, runID string, timeout time.Duration) (*Replayer, error) {
	base, err := ParseTarget(target)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("timeout must be positive, got %s", timeout)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Send Accept-Encoding only when the recording had it, and keep the
	// response encoded as it came, like the recorded one.
	transport.DisableCompression = true
	return &Replayer{
		base:    base,
		runID:   runID,
		timeout: timeout,
		client: &http.Client{
			Transport: transport,
			// A redirect is a response to compare, not a hop to take.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
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

// Run replays the exchanges in order, calling report with each result. It
// stops at the first error of the sequence itself (e.g. the collector stream
// broke) or when ctx is done, and returns that error.
func (r *Replayer) Run(ctx context.Context, exchanges iter.Seq2[*reprisev1.Exchange, error], report func(Result)) error {
	for ex, err := range exchanges {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		report(r.Replay(ctx, ex))
	}
	return ctx.Err()
}

// Replay sends one recorded request and compares the response.
func (r *Replayer) Replay(ctx context.Context, ex *reprisev1.Exchange) Result {
	rec := ex.GetRequest()
	res := Result{
		ID:             ex.GetId(),
		Method:         rec.GetMethod(),
		Target:         rec.GetTarget(),
		RecordedStatus: int(ex.GetResponse().GetStatusCode()),
	}
	if res.Skipped = skipReason(ex); res.Skipped != "" {
		return res
	}
	replayed, err := r.send(ctx, rec)
	if err != nil {
		res.Err = err
		return res
	}
	res.ReplayedStatus = int(replayed.GetStatusCode())
	res.Differences = compare.Compare(ex.GetResponse(), replayed)
	return res
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

func (r *Replayer) send(ctx context.Context, rec *reprisev1.HttpRequest) (*reprisev1.HttpResponse, error) {
	u, err := r.requestURL(rec.GetTarget())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, rec.GetMethod(), u, bytes.NewReader(rec.GetBody()))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if len(rec.GetBody()) == 0 {
		req.Body = http.NoBody
	}
	copyHeaders(req.Header, rec.GetHeaders())
	req.Header.Set(RunHeader, r.runID)

	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("send %s %s: %w", rec.GetMethod(), u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return nil, fmt.Errorf("read response of %s %s: %w", rec.GetMethod(), u, err)
	}
	out := &reprisev1.HttpResponse{StatusCode: int32(resp.StatusCode), Proto: resp.Proto, Body: body}
	if len(body) > maxResponseBody {
		out.Body, out.BodyTruncated = body[:maxResponseBody], true
	}
	for name, values := range resp.Header {
		for _, v := range values {
			out.Headers = append(out.Headers, &reprisev1.Header{Name: name, Value: v})
		}
	}
	return out, nil
}

// requestURL joins the base URL and a recorded request-target, keeping the
// target's escaping as recorded.
func (r *Replayer) requestURL(target string) (string, error) {
	if !strings.HasPrefix(target, "/") {
		// Absolute form, as sent to a proxy: keep its path and query.
		t, err := url.Parse(target)
		if err != nil || !t.IsAbs() {
			return "", fmt.Errorf("unsupported request-target %q", target)
		}
		target = t.RequestURI()
	}
	base := *r.base
	base.Path, base.RawPath = "", ""
	return base.String() + strings.TrimSuffix(r.base.EscapedPath(), "/") + target, nil
}

// hopByHop are the headers that belong to one connection, not to the
// request; Content-Length and Host are set for the new request instead.
var hopByHop = map[string]bool{
	"Connection":        true,
	"Keep-Alive":        true,
	"Transfer-Encoding": true,
	"Te":                true,
	"Upgrade":           true,
	"Content-Length":    true,
	"Host":              true,
}

// copyHeaders adds the recorded headers in recorded order, leaving out the
// hop-by-hop ones and those the Connection header names as hop-by-hop.
func copyHeaders(dst http.Header, recorded []*reprisev1.Header) {
	skip := map[string]bool{}
	for _, h := range recorded {
		if textproto.CanonicalMIMEHeaderKey(h.GetName()) == "Connection" {
			for _, name := range strings.Split(h.GetValue(), ",") {
				skip[textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))] = true
			}
		}
	}
	for _, h := range recorded {
		name := textproto.CanonicalMIMEHeaderKey(h.GetName())
		if hopByHop[name] || skip[name] || strings.HasPrefix(name, "Proxy-") {
			continue
		}
		dst.Add(name, h.GetValue())
	}
}
