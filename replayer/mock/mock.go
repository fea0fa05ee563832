// Package mock serves the recorded outbound exchanges of a service (its
// calls to payment providers, other services, APIs) as an HTTP server, so
// the service under test talks to a recording instead of the world.
//
// A call matches a recorded request on method, host, path, query and body
// (JSON structurally, with ignore rules). Identical calls are answered in
// recorded order; after the last recorded one, the last answer repeats,
// except in strict mode, where a call beyond the recorded count is
// unmatched. Strict mode answers every unmatched call with 502 and counts
// it; otherwise an unmatched call gets the response of the nearest recorded
// request with the same method and path, or 404. Either way the nearest
// recorded request and the differences are logged and listed at
// /__reprise/unmatched.
//
// The server works as a base URL (the Host header then only narrows the
// match when it names a recorded host) and as a plain-HTTP proxy
// (absolute-form request targets). HTTPS through the proxy (CONNECT) is
// refused: it would need a certificate the client trusts.
package mock

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/reprise-dev/reprise/internal/header"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
	"github.com/reprise-dev/reprise/replayer/compare"
	"github.com/reprise-dev/reprise/replayer/reqtarget"
)

// UnmatchedPath lists the unmatched calls as JSON.
const UnmatchedPath = "/__reprise/unmatched"

// Header marks every response of the mock with how it was chosen:
// matched, repeated, nearest or unmatched.
const Header = "X-Reprise-Mock"

// maxBody bounds the body of a call read for matching.
const maxBody = 32 << 20

// maxUnmatched bounds the unmatched calls kept for the listing; the count
// goes on.
const maxUnmatched = 1000

// Options configure the mock.
type Options struct {
	// Strict makes every call that matches no recorded request, or comes
	// more often than recorded, an error.
	Strict bool
	// Ignore lists what not to match on: query.NAME for a query
	// parameter, host, body, or a JSON path into the body ($.nonce,
	// $.items[*].ts).
	Ignore []string
	Log    *slog.Logger
}

// Unmatched is one call no recorded request answered.
type Unmatched struct {
	Method string `json:"method"`
	Host   string `json:"host"`
	Target string `json:"target"`
	Reason string `json:"reason"`
	// Nearest is the recorded request closest to the call; nil when
	// nothing was recorded.
	Nearest     *Recorded            `json:"nearest,omitempty"`
	Differences []compare.Difference `json:"differences"`
}

// Recorded identifies a recorded request.
type Recorded struct {
	ID     string `json:"id"`
	Method string `json:"method"`
	Host   string `json:"host"`
	Target string `json:"target"`
}

// Stats counts what the mock answered.
type Stats struct {
	Recorded  int `json:"recorded"`
	Matched   int `json:"matched"`
	Unmatched int `json:"unmatched"`
	// Skipped recorded exchanges had no request or no response.
	Skipped int `json:"skipped"`
	// Refused recorded exchanges had a request-target that is neither
	// origin form nor an absolute http URL: they are never served.
	Refused int `json:"refused"`
}

type entry struct {
	ex          *reprisev1.Exchange
	method      string
	host        string
	path        string
	query       url.Values
	contentType string
	used        bool
}

// Server answers calls from the recording; it is safe for concurrent use.
type Server struct {
	strict      bool
	ignoreHost  bool
	ignoreQuery map[string]bool
	body        *compare.Comparer
	log         *slog.Logger
	hosts       map[string]bool

	mu        sync.Mutex
	entries   []*entry
	stats     Stats
	unmatched []Unmatched
}

// New builds the mock from recorded exchanges, kept in the order given
// (the recorded order). Exchanges without a request or response are
// skipped and counted.
func New(exchanges []*reprisev1.Exchange, o Options) (*Server, error) {
	s := &Server{strict: o.Strict, ignoreQuery: map[string]bool{}, hosts: map[string]bool{}, log: o.Log}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "mock")
	var bodyIgnore []string
	for _, p := range o.Ignore {
		switch {
		case p == "host":
			s.ignoreHost = true
		case strings.HasPrefix(p, "query."):
			s.ignoreQuery[strings.TrimPrefix(p, "query.")] = true
		case p == "body" || strings.HasPrefix(p, "$"):
			bodyIgnore = append(bodyIgnore, p)
		default:
			return nil, fmt.Errorf("ignore %q: want host, query.NAME, body or a JSON path starting with $", p)
		}
	}
	c, err := compare.New(compare.Options{Ignore: bodyIgnore})
	if err != nil {
		return nil, fmt.Errorf("ignore: %w", err)
	}
	s.body = c
	for _, ex := range exchanges {
		req := ex.GetRequest()
		if req.GetMethod() == "" || ex.GetResponse().GetStatusCode() == 0 {
			s.stats.Skipped++
			continue
		}
		host, path, query, err := splitTarget(req.GetTarget(), req.GetHost())
		if err != nil {
			s.stats.Refused++
			s.log.Warn("recorded exchange refused", "id", ex.GetId(), "reason", err)
			continue
		}
		e := &entry{ex: ex, method: req.GetMethod(), host: host, path: path, query: query,
			contentType: header.Get(req.GetHeaders(), "Content-Type")}
		s.entries = append(s.entries, e)
		if host != "" {
			s.hosts[host] = true
		}
	}
	s.stats.Recorded = len(s.entries)
	return s, nil
}

// splitTarget takes host, path and query from a request-target in origin
// or absolute form (see reqtarget); the Host of an absolute target wins.
func splitTarget(target, host string) (string, string, url.Values, error) {
	t, err := reqtarget.Parse(target)
	if err != nil {
		return "", "", nil, err
	}
	scheme := "http"
	if t.Host != "" {
		host, scheme = t.Host, t.Scheme
	}
	// Escaped as Go's server escapes an incoming path, so the two compare.
	path := t.Path
	if u, err := url.ParseRequestURI(t.Path); err == nil {
		path = u.EscapedPath()
	}
	q, _ := url.ParseQuery(t.Query)
	return normHost(host, scheme), path, q, nil
}

// normHost lower-cases a host and drops the port its scheme implies.
func normHost(h, scheme string) string {
	h = strings.ToLower(h)
	if scheme == "https" {
		return strings.TrimSuffix(h, ":443")
	}
	return strings.TrimSuffix(h, ":80")
}

// call is an incoming request, read for matching.
type call struct {
	method, host, path, target string
	query                      url.Values
	contentType                string
	body                       []byte
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Unmatched returns the unmatched calls so far (at most the first 1000).
func (s *Server) Unmatched() []Unmatched {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.unmatched)
}

// ServeHTTP answers a call from the recording.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		s.fail(w, Unmatched{Method: r.Method, Host: r.Host, Target: r.RequestURI,
			Reason: "HTTPS through the proxy cannot be mocked; point the client at the mock as a plain http:// base URL or proxy"},
			http.StatusMethodNotAllowed)
		return
	}
	if !r.URL.IsAbs() && r.URL.Path == UnmatchedPath && r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			Stats     Stats       `json:"stats"`
			Unmatched []Unmatched `json:"unmatched"`
		}{s.Stats(), s.Unmatched()})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		http.Error(w, "reprise mock: request body unreadable or over 32 MiB", http.StatusRequestEntityTooLarge)
		return
	}
	host := r.Host
	scheme := "http"
	if r.URL.IsAbs() {
		host, scheme = r.URL.Host, r.URL.Scheme
	}
	c := call{method: r.Method, host: normHost(host, scheme), path: r.URL.EscapedPath(), target: r.URL.RequestURI(),
		query: r.URL.Query(), contentType: r.Header.Get("Content-Type"), body: body}
	s.answer(w, c)
}

func (s *Server) answer(w http.ResponseWriter, c call) {
	s.mu.Lock()
	var matches []*entry
	for _, e := range s.entries {
		if e.method == c.method && e.path == c.path && len(s.diff(e, c)) == 0 {
			matches = append(matches, e)
		}
	}
	var chosen *entry
	how := "matched"
	for _, e := range matches {
		if !e.used {
			chosen = e
			break
		}
	}
	if chosen == nil && len(matches) > 0 && !s.strict {
		chosen, how = matches[len(matches)-1], "repeated"
	}
	if chosen != nil {
		chosen.used = true
		s.stats.Matched++
		s.mu.Unlock()
		write(w, chosen.ex.GetResponse(), how)
		return
	}
	u := Unmatched{Method: c.method, Host: c.host, Target: c.target, Differences: []compare.Difference{}}
	if len(matches) > 0 {
		u.Reason = fmt.Sprintf("called more often than recorded (%d times)", len(matches))
		u.Nearest = matches[len(matches)-1].recorded()
	} else {
		u.Reason = "no recorded request matches"
		if e, diffs := s.nearest(c); e != nil {
			u.Nearest, u.Differences = e.recorded(), diffs
			if !s.strict && e.method == c.method && e.path == c.path {
				chosen = e
			}
		}
	}
	s.mu.Unlock()
	switch {
	case chosen != nil:
		s.note(u)
		write(w, chosen.ex.GetResponse(), "nearest")
	case s.strict:
		s.fail(w, u, http.StatusBadGateway)
	default:
		s.fail(w, u, http.StatusNotFound)
	}
}

// note counts and logs an unmatched call; only paths, never values, go to
// the log.
func (s *Server) note(u Unmatched) {
	s.mu.Lock()
	s.stats.Unmatched++
	if len(s.unmatched) < maxUnmatched {
		s.unmatched = append(s.unmatched, u)
	}
	s.mu.Unlock()
	paths := make([]string, len(u.Differences))
	for i, d := range u.Differences {
		paths[i] = d.Path
	}
	args := []any{"method", u.Method, "host", u.Host, "path", strings.SplitN(u.Target, "?", 2)[0], "reason", u.Reason, "differences", paths}
	if u.Nearest != nil {
		args = append(args, "nearest", u.Nearest.ID)
	}
	s.log.Warn("unmatched call", args...)
}

func (s *Server) fail(w http.ResponseWriter, u Unmatched, status int) {
	s.note(u)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(Header, "unmatched")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
		Unmatched
	}{"reprise mock: " + u.Reason, u})
}

func (e *entry) recorded() *Recorded {
	return &Recorded{ID: e.ex.GetId(), Method: e.method, Host: e.host, Target: e.ex.GetRequest().GetTarget()}
}

// diff lists where a call differs from a recorded request, as paths:
// method, host, path, query.NAME, body or a JSON path.
func (s *Server) diff(e *entry, c call) []compare.Difference {
	var d []compare.Difference
	if e.method != c.method {
		d = append(d, compare.Difference{Path: "method", Kind: compare.KindChanged, Recorded: e.method, Replayed: c.method})
	}
	// A host the recording never saw is the mock's own address: the client
	// uses it as a base URL, so the host says nothing.
	if !s.ignoreHost && s.hosts[c.host] && e.host != c.host {
		d = append(d, compare.Difference{Path: "host", Kind: compare.KindChanged, Recorded: e.host, Replayed: c.host})
	}
	if e.path != c.path {
		d = append(d, compare.Difference{Path: "path", Kind: compare.KindChanged, Recorded: e.path, Replayed: c.path})
	}
	names := map[string]bool{}
	for k := range e.query {
		names[k] = true
	}
	for k := range c.query {
		names[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(names)) {
		if s.ignoreQuery[k] {
			continue
		}
		rv, rok := e.query[k]
		cv, cok := c.query[k]
		p := "query." + k
		switch {
		case !cok:
			d = append(d, compare.Difference{Path: p, Kind: compare.KindMissing, Recorded: strings.Join(rv, ",")})
		case !rok:
			d = append(d, compare.Difference{Path: p, Kind: compare.KindAdded, Replayed: strings.Join(cv, ",")})
		case !slices.Equal(rv, cv):
			d = append(d, compare.Difference{Path: p, Kind: compare.KindChanged, Recorded: strings.Join(rv, ","), Replayed: strings.Join(cv, ",")})
		}
	}
	rb, cb := e.ex.GetRequest().GetBody(), c.body
	if e.ex.GetRequest().GetBodyTruncated() {
		// Only a prefix was recorded: a longer call matches on that prefix.
		if len(cb) >= len(rb) && bytes.Equal(cb[:len(rb)], rb) {
			return d
		}
	}
	return append(d, s.body.Bodies(e.contentType, rb, c.contentType, cb)...)
}

// nearest returns the recorded request with the fewest differences from
// the call, a different method or path weighing most; ties go to the first
// recorded.
func (s *Server) nearest(c call) (*entry, []compare.Difference) {
	var best *entry
	var bestDiffs []compare.Difference
	bestScore := -1
	for _, e := range s.entries {
		diffs := s.diff(e, c)
		score := 0
		for _, d := range diffs {
			switch d.Path {
			case "method", "path":
				score += 100
			case "host":
				score += 10
			default:
				score++
			}
		}
		if bestScore < 0 || score < bestScore {
			best, bestDiffs, bestScore = e, diffs, score
		}
	}
	return best, bestDiffs
}

// hopByHop are not forwarded from the recording; Content-Length is set for
// the body actually written.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "transfer-encoding": true, "te": true,
	"upgrade": true, "content-length": true, "proxy-connection": true,
}

// write sends a recorded response as it was, body still in its recorded
// Content-Encoding.
func write(w http.ResponseWriter, resp *reprisev1.HttpResponse, how string) {
	for _, h := range resp.GetHeaders() {
		if !hopByHop[strings.ToLower(h.GetName())] {
			w.Header().Add(h.GetName(), h.GetValue())
		}
	}
	w.Header().Set(Header, how)
	w.WriteHeader(int(resp.GetStatusCode()))
	w.Write(resp.GetBody())
}
