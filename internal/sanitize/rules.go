package sanitize

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Actions a rule can take on a value it matches.
const (
	ActionRedact   = "redact"
	ActionMask     = "mask"
	ActionTokenize = "tokenize"
	ActionDrop     = "drop"
	// ActionRemove marks a body removed because it could not be scanned.
	ActionRemove = "remove"
	actionOff    = "off"
)

//go:embed default.yaml
var builtinRules []byte

// Limits bound the work done on one body; a body over a limit is removed.
type Limits struct {
	// MaxBodyBytes caps a body after decompression (against bombs).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxDepth caps nesting: JSON/XML levels and bodies inside bodies.
	MaxDepth int `yaml:"max_depth"`
	// MaxFields caps the values scanned in one body.
	MaxFields int `yaml:"max_fields"`
}

var defaultLimits = Limits{MaxBodyBytes: 16 << 20, MaxDepth: 64, MaxFields: 100_000}

type config struct {
	Limits Limits `yaml:"limits"`
	// OpaqueBodies is what happens to binary bodies: keep or redact.
	OpaqueBodies string    `yaml:"opaque_bodies"`
	Builtin      *bool     `yaml:"builtin"`
	Allow        []rule    `yaml:"allow"`
	Deny         []rule    `yaml:"deny"`
	Detectors    yaml.Node `yaml:"detectors"`
}

// rule selects values by key name, location and value; every selector given
// must match. Allow rules have no action.
type rule struct {
	Name      string   `yaml:"name"`
	Keys      []string `yaml:"keys"`
	Locations []string `yaml:"locations"`
	Values    []string `yaml:"values"`
	Action    string   `yaml:"action"`

	line      int
	builtin   bool
	keys      []globPattern // normalised
	locations []globPattern // lower case
	values    []*regexp.Regexp
}

var ruleFields = []string{"name", "keys", "locations", "values", "action"}

// UnmarshalYAML keeps the line for error messages and refuses unknown
// fields, which a custom unmarshaler would otherwise let through silently.
func (r *rule) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a rule must be a mapping", n.Line)
	}
	for i := 0; i < len(n.Content); i += 2 {
		if k := n.Content[i]; !slices.Contains(ruleFields, k.Value) {
			return fmt.Errorf("line %d: unknown rule field %q (want one of %s)", k.Line, k.Value, strings.Join(ruleFields, ", "))
		}
	}
	type plain rule
	if err := n.Decode((*plain)(r)); err != nil {
		return err
	}
	r.line = n.Line
	return nil
}

// parseRules reads a rules file; name is used in errors.
func parseRules(data []byte, name string) (*config, error) {
	var c config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("sanitize rules %s: %w", name, err)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("sanitize rules %s: %w", name, err)
	}
	return &c, nil
}

func (c *config) validate() error {
	if c.Limits.MaxBodyBytes < 0 || c.Limits.MaxDepth < 0 || c.Limits.MaxFields < 0 {
		return errors.New("limits: values must not be negative")
	}
	if o := c.OpaqueBodies; o != "" && o != OpaqueKeep && o != OpaqueRedact {
		return fmt.Errorf("opaque_bodies: %q is not one of keep, redact", o)
	}
	for i := range c.Allow {
		if err := c.Allow[i].compile(fmt.Sprintf("allow[%d]", i), false); err != nil {
			return err
		}
	}
	for i := range c.Deny {
		if err := c.Deny[i].compile(fmt.Sprintf("deny[%d]", i), true); err != nil {
			return err
		}
	}
	_, err := c.detectorActions()
	return err
}

func (r *rule) compile(field string, deny bool) error {
	where := fmt.Sprintf("line %d: %s", r.line, field)
	if r.Name == "" {
		return fmt.Errorf("%s.name: required", where)
	}
	if len(r.Keys)+len(r.Locations)+len(r.Values) == 0 {
		return fmt.Errorf("%s (%s): needs at least one of keys, locations, values", where, r.Name)
	}
	switch {
	case deny && r.Action == "":
		r.Action = ActionRedact
	case deny && !validAction(r.Action):
		return fmt.Errorf("%s.action (%s): %q is not one of redact, mask, tokenize, drop", where, r.Name, r.Action)
	case !deny && r.Action != "":
		return fmt.Errorf("%s.action (%s): allow rules take no action", where, r.Name)
	}
	for _, k := range r.Keys {
		r.keys = append(r.keys, newGlob(normKey(k)))
	}
	for _, l := range r.Locations {
		r.locations = append(r.locations, newGlob(strings.ToLower(l)))
	}
	for j, v := range r.Values {
		re, err := regexp.Compile(v)
		if err != nil {
			return fmt.Errorf("%s.values[%d] (%s): %w", where, j, r.Name, err)
		}
		r.values = append(r.values, re)
	}
	return nil
}

func validAction(a string) bool {
	return a == ActionRedact || a == ActionMask || a == ActionTokenize || a == ActionDrop
}

// detectorActions reads the detectors mapping: detector name → action or off.
func (c *config) detectorActions() (map[string]string, error) {
	out := map[string]string{}
	n := &c.Detectors
	if n.Kind == 0 {
		return out, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: detectors: must map a detector name to an action", n.Line)
	}
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if findDetector(k.Value) == nil {
			return nil, fmt.Errorf("line %d: detectors.%s: unknown detector (want one of %s)", k.Line, k.Value, strings.Join(detectorNames(), ", "))
		}
		if v.Kind != yaml.ScalarNode || (!validAction(v.Value) && v.Value != actionOff) {
			return nil, fmt.Errorf("line %d: detectors.%s: %q is not one of redact, mask, tokenize, drop, off", v.Line, k.Value, v.Value)
		}
		out[k.Value] = v.Value
	}
	return out, nil
}

// matchesKeys reports whether the keys selector accepts the key (see
// matchKey); a rule without one accepts every key. A registered HTTP field
// name is no built-in rule's key.
func (r *rule) matchesKeys(kn keyName, registered bool) bool {
	if len(r.keys) == 0 {
		return true
	}
	if r.builtin && registered {
		return false
	}
	return slices.ContainsFunc(r.keys, func(g globPattern) bool { return g.matchKey(kn) })
}

// matchesRest is matches without the keys selector: the location in lower
// case and the value.
func (r *rule) matchesRest(lloc, value string) bool {
	if len(r.locations) > 0 && !slices.ContainsFunc(r.locations, func(g globPattern) bool { return g.match(lloc) }) {
		return false
	}
	if len(r.values) > 0 && !slices.ContainsFunc(r.values, func(re *regexp.Regexp) bool { return re.MatchString(value) }) {
		return false
	}
	return true
}

// globPattern matches a pattern where * stands for any run of bytes (dots
// included, so "request.body.*" covers nested paths); split once at load.
type globPattern []string

func newGlob(pattern string) globPattern { return strings.Split(pattern, "*") }

func (g globPattern) match(s string) bool {
	if len(g) == 1 {
		return g[0] == s
	}
	if !strings.HasPrefix(s, g[0]) {
		return false
	}
	s = s[len(g[0]):]
	for _, p := range g[1 : len(g)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, g[len(g)-1])
}

// KeyFromEnvOrFile returns the HMAC key for tokenize rules: the contents of
// path when path is set, else the environment variable REPRISE_TOKEN_KEY,
// else nil. A key shorter than 16 bytes is an error.
func KeyFromEnvOrFile(path string) ([]byte, error) {
	var key []byte
	from := "environment REPRISE_TOKEN_KEY"
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read token key: %w", err)
		}
		key, from = bytes.TrimSpace(b), path
	} else if v, ok := os.LookupEnv("REPRISE_TOKEN_KEY"); ok {
		key = []byte(strings.TrimSpace(v))
	} else {
		return nil, nil
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("token key from %s: %d bytes, want at least 16", from, len(key))
	}
	return key, nil
}
