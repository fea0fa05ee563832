// Package verify decides whether a replayed response matches the recorded
// one: it applies the compare section of the replay config (chosen headers,
// ignore paths, arrays as sets), the built-in noise rules and the noise
// learned from a reference build.
package verify

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/reprise-dev/reprise/internal/endpoint"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
	"github.com/reprise-dev/reprise/replayer/compare"
)

// Config is the compare: section of the replay config.
type Config struct {
	Rules `yaml:",inline"`
	// BuiltinNoise turns the built-in rules for volatile headers on or off
	// (default on).
	BuiltinNoise *bool `yaml:"builtin_noise"`
	// NoiseFile holds learned noise: read by New when it exists, written
	// by SaveNoise.
	NoiseFile string `yaml:"noise_file"`
	// Endpoints adds rules for one endpoint, keyed "/orders/{id}" (any
	// method) or "GET /orders/{id}".
	Endpoints map[string]Rules `yaml:"endpoints"`
	// TimeTolerance is how far the offsets of a recorded and a replayed
	// time from their exchanges' times may differ (default
	// compare.DefaultTolerance); both latencies are added to it.
	TimeTolerance time.Duration `yaml:"time_tolerance"`
}

// Rules say what to compare for all endpoints or one; an endpoint's rules
// add to the global ones.
type Rules struct {
	// Headers are the response headers to compare; "*" means all but the
	// noisy ones. Default: Content-Type.
	Headers []string `yaml:"headers"`
	// Ignore lists paths not to compare, in the syntax of the differences:
	// $.created_at, $.items[*].id, headers.Date, body, status.
	Ignore []string `yaml:"ignore"`
	// Arrays are compared in order unless listed here as sets.
	Arrays []Array `yaml:"arrays"`
	// ExactTimes lists paths where times must be equal as written rather
	// than at the same offset from their exchange's time; "$" and
	// "headers.*" turn time-aware comparison off for a whole endpoint.
	ExactTimes []string `yaml:"exact_times"`
}

// Array says how to compare the JSON arrays at one path.
type Array struct {
	Path string `yaml:"path"`
	// As is "ordered" (the default) or "set".
	As string `yaml:"as"`
	// Key pairs the elements of a set by this member; without it elements
	// are paired by equal value.
	Key string `yaml:"key"`
}

// BuiltinNoise are the headers that differ between any two responses of
// the same build: dates, request and trace ids, timings. ETag is among them
// because servers derive it from file times or build ids as often as from
// the content, and the body comparison already catches a content change.
// Set-Cookie is compared without its Expires and Max-Age.
var BuiltinNoise = []string{
	"headers.Date", "headers.Age", "headers.Expires", "headers.Last-Modified", "headers.ETag",
	"headers.Content-Length", "headers.Transfer-Encoding", "headers.Connection", "headers.Keep-Alive",
	"headers.X-Request-Id", "headers.X-Correlation-Id", "headers.Request-Id", "headers.X-Amzn-RequestId",
	"headers.Traceparent", "headers.Tracestate", "headers.X-B3-*", "headers.B3", "headers.X-Amzn-Trace-Id",
	"headers.X-Cloud-Trace-Context", "headers.Uber-Trace-Id", "headers.Cf-Ray",
	"headers.Server-Timing", "headers.X-Runtime", "headers.X-Response-Time",
}

// defaultHeaders are compared when the config names none.
var defaultHeaders = []string{"Content-Type"}

// Verifier checks replayed responses; it is safe for concurrent use.
type Verifier struct {
	cfg     Config
	builtin bool

	mu      sync.RWMutex
	learned map[string][]string // endpoint key → generalized paths
	cache   map[string]*compare.Comparer
}

// New validates cfg and loads its noise file when it exists. Errors name
// the field.
func New(cfg Config) (*Verifier, error) {
	v := &Verifier{cfg: cfg, builtin: cfg.BuiltinNoise == nil || *cfg.BuiltinNoise,
		learned: map[string][]string{}, cache: map[string]*compare.Comparer{}}
	if cfg.TimeTolerance < 0 {
		return nil, fmt.Errorf("compare.time_tolerance: must not be negative, got %s", cfg.TimeTolerance)
	}
	if cfg.TimeTolerance == 0 {
		v.cfg.TimeTolerance = compare.DefaultTolerance
	}
	if _, err := v.options(cfg.Rules); err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	for k, r := range cfg.Endpoints {
		if !validKey(k) {
			return nil, fmt.Errorf("compare.endpoints: key %q must be \"/path\" or \"METHOD /path\"", k)
		}
		if _, err := v.options(r); err != nil {
			return nil, fmt.Errorf("compare.endpoints[%q]: %w", k, err)
		}
	}
	if cfg.NoiseFile != "" {
		if err := v.loadNoise(cfg.NoiseFile); err != nil {
			return nil, fmt.Errorf("compare.noise_file: %w", err)
		}
	}
	return v, nil
}

func validKey(k string) bool {
	if strings.HasPrefix(k, "/") {
		return true
	}
	m, p, ok := strings.Cut(k, " ")
	return ok && m != "" && strings.ToUpper(m) == m && strings.HasPrefix(p, "/")
}

// Key names the endpoint of an exchange as the noise file and the reports
// do: "GET /orders/{id}".
func Key(ex *reprisev1.Exchange) string {
	return ex.GetRequest().GetMethod() + " " + endpoint.Normalize(ex.GetRequest().GetTarget())
}

// options turns rules into compare options; the errors name the field.
func (v *Verifier) options(rs ...Rules) (compare.Options, error) {
	o := compare.Options{Sets: map[string]string{}, IgnoreCookieExpiry: v.builtin}
	if v.builtin {
		o.Ignore = slices.Clone(BuiltinNoise)
	}
	for _, r := range rs {
		for i, p := range r.Ignore {
			if _, err := compare.ParsePath(p); err != nil {
				return o, fmt.Errorf("ignore[%d]: %w", i, err)
			}
		}
		for i, p := range r.ExactTimes {
			if _, err := compare.ParsePath(p); err != nil {
				return o, fmt.Errorf("exact_times[%d]: %w", i, err)
			}
		}
		o.Headers = append(o.Headers, r.Headers...)
		o.Ignore = append(o.Ignore, r.Ignore...)
		o.ExactTimes = append(o.ExactTimes, r.ExactTimes...)
		for i, a := range r.Arrays {
			switch a.As {
			case "", "ordered":
			case "set":
				o.Sets[a.Path] = a.Key
			default:
				return o, fmt.Errorf("arrays[%d].as: want ordered or set, got %q", i, a.As)
			}
			if _, err := compare.ParsePath(a.Path); err != nil || !strings.HasPrefix(a.Path, "$") {
				return o, fmt.Errorf("arrays[%d].path: want a JSON path such as $.items, got %q", i, a.Path)
			}
		}
	}
	if _, err := compare.New(o); err != nil {
		return o, fmt.Errorf("headers: %w", err)
	}
	return o, nil
}

// comparer returns the comparer of one endpoint: global rules, the rules of
// "/path" and of "METHOD /path", and the learned noise.
func (v *Verifier) comparer(key string) *compare.Comparer {
	v.mu.RLock()
	c, ok := v.cache[key]
	v.mu.RUnlock()
	if ok {
		return c
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	o, err := v.options(append(v.rules(key), Rules{Ignore: v.learned[key]})...)
	if err == nil && o.Headers == nil {
		o.Headers = defaultHeaders
	}
	if c, err = compare.New(o); err != nil {
		// New validated every rule and learned paths come from Generalize.
		panic(fmt.Sprintf("verify: rules of %s: %v", key, err))
	}
	v.cache[key] = c
	return c
}

// rules are the configured rules of an endpoint: global, "/path" and
// "METHOD /path".
func (v *Verifier) rules(key string) []Rules {
	rules := []Rules{v.cfg.Rules}
	if _, path, ok := strings.Cut(key, " "); ok {
		rules = append(rules, v.cfg.Endpoints[path])
	}
	return append(rules, v.cfg.Endpoints[key])
}

// Check returns the differences between the recorded response of rec and
// got, in the context c of the replay, that no rule ignores.
func (v *Verifier) Check(rec *reprisev1.Exchange, got *reprisev1.HttpResponse, c compare.Context) []compare.Difference {
	c.Tolerance += v.cfg.TimeTolerance
	return v.comparer(Key(rec)).CompareIn(c, rec.GetResponse(), got)
}

// Learn marks as noise of rec's endpoint what differs between the
// recording and the reference build's answer a (in the context recA), and
// between the reference's two answers a and b (in the context ab): every
// header and JSON path that differs, with array positions generalized to
// [*], or "body" for bodies compared as bytes. The first finds fields that
// change from run to run even with one reference answering the same twice
// (a creation time, a random id); the second, fields that change from call
// to call. Responses with different statuses teach nothing: the bodies are
// different documents.
func (v *Verifier) Learn(rec *reprisev1.Exchange, a, b *reprisev1.HttpResponse, recA, ab compare.Context) {
	key := Key(rec)
	var diffs []compare.Difference
	if rec.GetResponse().GetStatusCode() == a.GetStatusCode() {
		recA.Tolerance += v.cfg.TimeTolerance
		diffs = v.learner(key).CompareIn(recA, rec.GetResponse(), a)
	}
	if a.GetStatusCode() == b.GetStatusCode() {
		ab.Tolerance += v.cfg.TimeTolerance
		diffs = append(diffs, v.learner(key).CompareIn(ab, a, b)...)
	}
	if len(diffs) == 0 {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	known := v.learned[key]
	for _, d := range diffs {
		if d.Kind == compare.KindTruncated {
			continue
		}
		p := compare.Generalize(d.Path)
		if !slices.Contains(known, p) {
			known = append(known, p)
		}
	}
	slices.Sort(known)
	v.learned[key] = known
	delete(v.cache, key)
}

// learner compares every header and the body under the endpoint's rules
// and what was learned already.
func (v *Verifier) learner(key string) *compare.Comparer {
	v.mu.RLock()
	learned := v.learned[key]
	v.mu.RUnlock()
	o, err := v.options(append(v.rules(key), Rules{Headers: []string{"*"}, Ignore: learned})...)
	if err == nil {
		var c *compare.Comparer
		if c, err = compare.New(o); err == nil {
			return c
		}
	}
	panic(fmt.Sprintf("verify: rules of %s: %v", key, err)) // validated by New
}

// Noise returns the learned noise rules per endpoint.
func (v *Verifier) Noise() map[string][]string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make(map[string][]string, len(v.learned))
	for k, p := range v.learned {
		out[k] = slices.Clone(p)
	}
	return out
}

// noiseFile is the YAML document of learned noise.
type noiseFile struct {
	Endpoints map[string][]string `yaml:"endpoints"`
}

const noiseHeader = `# Noise learned by "replayer run --learn-noise": paths that differed between
# the recording and the reference build's answers, or between two of its
# answers, per endpoint. Review, then commit.
# Each path uses the syntax of compare.ignore in the replay config.
`

// SaveNoise writes the loaded and learned noise to path as YAML, replacing
// the file at once so a reader never sees half of it.
func (v *Verifier) SaveNoise(path string) error {
	var buf bytes.Buffer
	buf.WriteString(noiseHeader)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(noiseFile{Endpoints: v.Noise()}); err != nil {
		return fmt.Errorf("encode noise file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".noise-*.yaml")
	if err != nil {
		return fmt.Errorf("write noise file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("write noise file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write noise file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write noise file %s: %w", path, err)
	}
	return nil
}

// loadNoise reads a noise file; a missing file is no noise yet.
func (v *Verifier) loadNoise(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var nf noiseFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&nf); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	for _, k := range slices.Sorted(maps.Keys(nf.Endpoints)) {
		if !validKey(k) {
			return fmt.Errorf("%s: endpoint %q must be \"METHOD /path\"", path, k)
		}
		for i, p := range nf.Endpoints[k] {
			if _, err := compare.ParsePath(p); err != nil {
				return fmt.Errorf("%s: endpoints[%q][%d]: %w", path, k, i, err)
			}
		}
		v.learned[k] = slices.Sorted(slices.Values(nf.Endpoints[k]))
	}
	return nil
}
