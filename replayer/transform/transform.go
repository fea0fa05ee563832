// Package transform rewrites recorded requests before they are replayed:
// headers, URLs, the auth header, dates shifted by the time since capture,
// and values the target answered differently than the recording (a new
// order id, a session cookie) substituted in later requests of the session.
package transform

import (
	"fmt"
	"maps"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Config is the transforms: section of the replay config. A section left
// out does nothing.
type Config struct {
	SetHeaders    map[string]string `yaml:"set_headers"`
	RemoveHeaders []string          `yaml:"remove_headers"`
	RewriteURL    []Rewrite         `yaml:"rewrite_url"`
	Auth          *Auth             `yaml:"auth"`
	ShiftTime     *ShiftTime        `yaml:"shift_time"`
	Learn         *Learn            `yaml:"learn"`
}

// Rewrite replaces matches of a regular expression in the request-target
// (path and query), with $1-style references to its groups.
type Rewrite struct {
	Match   string `yaml:"match"`
	Replace string `yaml:"replace"`
}

// Auth replaces the auth header with a static token or one a command
// prints, run once and cached for TTL (0: for the whole run).
type Auth struct {
	Header  string        `yaml:"header"` // default Authorization
	Prefix  string        `yaml:"prefix"` // e.g. "Bearer "
	Token   string        `yaml:"token"`
	Command string        `yaml:"command"`
	TTL     time.Duration `yaml:"ttl"`
}

// ShiftTime moves the dates and times of each request forward by the time
// since its capture, so "created in the last hour" stays true on replay.
// RFC 3339 / ISO-8601 strings in JSON bodies, query values and headers,
// and HTTP dates in headers, are always shifted; epoch numbers only in the
// named JSON fields and query parameters, or, with EpochByValue, any
// 10-digit (seconds) or 13-digit (milliseconds) integer within a year of
// the capture.
type ShiftTime struct {
	EpochFields  []string `yaml:"epoch_fields"`
	EpochByValue bool     `yaml:"epoch_by_value"`
}

// Learn substitutes, in later requests of the same recorded connection,
// values that the target answered differently: JSON fields whose name
// matches one of Keys (default: id-like names) and Set-Cookie values.
type Learn struct {
	Keys []string `yaml:"keys"`
}

// defaultLearnKeys are JSON field names whose values identify something
// the server created.
var defaultLearnKeys = []string{`(?i)^(id|uuid|token|.*[_-]id|.*Id|.*[_-]token|.*Token)$`}

// Pipeline applies a Config; it is safe for concurrent use.
type Pipeline struct {
	setHeaders  []*reprisev1.Header
	remove      map[string]bool
	rewrites    []rewrite
	auth        *tokenSource
	authHeader  string
	shift       *ShiftTime
	epochFields map[string]bool
	learnKeys   []*regexp.Regexp
	now         func() time.Time

	mu      sync.Mutex
	learned map[string]map[string]string // session → recorded → replayed
}

type rewrite struct {
	re      *regexp.Regexp
	replace string
}

// New checks cfg and returns its pipeline; errors name the field.
func New(cfg Config) (*Pipeline, error) {
	p := &Pipeline{remove: map[string]bool{}, now: time.Now, learned: map[string]map[string]string{}}
	// Sorted, so the headers go out in the same order every run.
	for _, name := range slices.Sorted(maps.Keys(cfg.SetHeaders)) {
		value := cfg.SetHeaders[name]
		if name == "" || strings.ContainsAny(name, " :\r\n") || strings.ContainsAny(value, "\r\n") {
			return nil, fmt.Errorf("transforms.set_headers: invalid header %q", name)
		}
		p.setHeaders = append(p.setHeaders, &reprisev1.Header{Name: textproto.CanonicalMIMEHeaderKey(name), Value: value})
	}
	for _, name := range cfg.RemoveHeaders {
		p.remove[textproto.CanonicalMIMEHeaderKey(name)] = true
	}
	for i, rw := range cfg.RewriteURL {
		re, err := regexp.Compile(rw.Match)
		if err != nil || rw.Match == "" {
			return nil, fmt.Errorf("transforms.rewrite_url[%d].match %q: not a regular expression: %v", i, rw.Match, err)
		}
		p.rewrites = append(p.rewrites, rewrite{re, rw.Replace})
	}
	if a := cfg.Auth; a != nil {
		if (a.Token == "") == (a.Command == "") {
			return nil, fmt.Errorf("transforms.auth: give exactly one of token and command")
		}
		if a.TTL < 0 {
			return nil, fmt.Errorf("transforms.auth.ttl: must not be negative, got %s", a.TTL)
		}
		p.authHeader = textproto.CanonicalMIMEHeaderKey(a.Header)
		if p.authHeader == "" {
			p.authHeader = "Authorization"
		}
		p.auth = &tokenSource{prefix: a.Prefix, token: a.Token, command: a.Command, ttl: a.TTL, now: p.now}
	}
	if cfg.ShiftTime != nil {
		p.shift = cfg.ShiftTime
		p.epochFields = map[string]bool{}
		for _, f := range cfg.ShiftTime.EpochFields {
			p.epochFields[f] = true
		}
	}
	if cfg.Learn != nil {
		keys := cfg.Learn.Keys
		if len(keys) == 0 {
			keys = defaultLearnKeys
		}
		for i, k := range keys {
			re, err := regexp.Compile(k)
			if err != nil {
				return nil, fmt.Errorf("transforms.learn.keys[%d] %q: %w", i, k, err)
			}
			p.learnKeys = append(p.learnKeys, re)
		}
	}
	return p, nil
}

// Request returns the request of ex as it is to be sent; ex is not changed.
func (p *Pipeline) Request(session string, ex *reprisev1.Exchange) (*reprisev1.HttpRequest, error) {
	req := proto.Clone(ex.GetRequest()).(*reprisev1.HttpRequest)
	// Learned values are recorded ones, so they are replaced before any
	// other rewrite changes the recorded text.
	if subst := p.substitutions(session); len(subst) > 0 {
		substitute(req, subst)
	}
	for _, rw := range p.rewrites {
		req.Target = rw.re.ReplaceAllString(req.Target, rw.replace)
	}
	if p.shift != nil && ex.GetStartTime() != nil {
		p.shiftTimes(req, p.now().Sub(ex.GetStartTime().AsTime()), ex.GetStartTime().AsTime())
	}
	if len(p.remove) > 0 {
		req.Headers = dropHeaders(req.Headers, func(name string) bool { return p.remove[name] })
	}
	for _, h := range p.setHeaders {
		req.Headers = dropHeaders(req.Headers, func(name string) bool { return name == h.GetName() })
		req.Headers = append(req.Headers, &reprisev1.Header{Name: h.GetName(), Value: h.GetValue()})
	}
	if p.auth != nil {
		value, err := p.auth.get()
		if err != nil {
			return nil, err
		}
		req.Headers = dropHeaders(req.Headers, func(name string) bool { return name == p.authHeader })
		req.Headers = append(req.Headers, &reprisev1.Header{Name: p.authHeader, Value: value})
	}
	return req, nil
}

func dropHeaders(hs []*reprisev1.Header, drop func(canonical string) bool) []*reprisev1.Header {
	out := hs[:0]
	for _, h := range hs {
		if !drop(textproto.CanonicalMIMEHeaderKey(h.GetName())) {
			out = append(out, h)
		}
	}
	return out
}

func (p *Pipeline) substitutions(session string) map[string]string {
	if p.learnKeys == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.learned[session])
}
