// Command replayer replays recorded inbound HTTP traffic against a test
// environment and reports where the responses differ from the recorded ones.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/reprise-dev/reprise/internal/exitcode"
	"github.com/reprise-dev/reprise/internal/filterflag"
	"github.com/reprise-dev/reprise/internal/grpcclient"
	"github.com/reprise-dev/reprise/internal/logging"
	"github.com/reprise-dev/reprise/internal/wirecodec"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
	"github.com/reprise-dev/reprise/replayer/goals"
	"github.com/reprise-dev/reprise/replayer/progress"
	"github.com/reprise-dev/reprise/replayer/replay"
	"github.com/reprise-dev/reprise/replayer/report"
	"github.com/reprise-dev/reprise/replayer/source"
	"github.com/reprise-dev/reprise/replayer/transform"
	"github.com/reprise-dev/reprise/replayer/verify"
)

// Exit codes, shared by every reprise command.
const (
	exitOK     = exitcode.OK
	exitFailed = exitcode.Failed // some exchange differed or could not be sent, or a goal was missed
	exitError  = exitcode.Error  // usage or runtime error, or nothing to replay
)

func main() {
	wirecodec.Register()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command line, apart from the process, for tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitError
	}
	switch args[0] {
	case "run":
		return runCommand(ctx, args[1:], stdout, stderr)
	case "mock":
		return mockCommand(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "replayer: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitError
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: replayer run (--target URL | --target-map SERVICE=URL | --config FILE) [--collector ADDR | --file FILE] [selection flags] [flags]
       replayer mock [flags]
       replayer help

run reads the inbound exchanges the selection flags match, from the
collector or from a file it exported (JSONL or HAR), replays each request
against its target, paced by the load model, checks each response against
the recorded one, prints a summary and writes the reports asked for.

Only the targets named on the command line or in the config file are sent
to. POST, PUT, PATCH and DELETE are skipped unless --allow-writes or a
safety route in the config allows them. Every request carries the header
`+replay.RunHeader+`: <run id>.

Load models: as fast as --workers allow (default, one at a time); as
recorded with --speed (and --max-gap); an open model with --rate, or
--rate-from, --rate-to and --ramp. Requests of one recorded connection keep
their order.

Exit status: 0 every replayed exchange matched and every goal was met; 1 some
differed, could not be sent or a goal was missed; 2 usage or runtime error,
or no exchange to replay (a replay of nothing is almost always a filter
mistake, so CI should not pass it).

Flags of run:
`)
	fs, _ := newRunFlags()
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// defaultNoiseFile is where --learn-noise writes when no noise file is
// named; the path is printed.
const defaultNoiseFile = "reprise-noise.yaml"

// config is the configuration of the run command: flags, then the file
// named by --config.
type config struct {
	collector    string
	file         string
	target       string
	targetMap    mapFlag
	configFile   string
	allowWrites  bool
	limit        int
	workers      int
	speed        float64
	maxGap       time.Duration
	rate         rateFlag
	rateFrom     rateFlag
	rateTo       rateFlag
	ramp         time.Duration
	maxInFlight  int
	reportJSON   string
	junit        string
	reportHTML   string
	timeout      time.Duration
	runID        string
	learnNoise   bool
	reference    string
	noiseFile    string
	progressTick time.Duration
	filters      *filterflag.Flags
	conn         *grpcclient.Flags
	set          map[string]bool // flags given on the command line
}

// fileConfig is the replay config file.
type fileConfig struct {
	// Targets maps a recorded service or Host to the base URL it is
	// replayed against; "default" serves the rest.
	Targets    map[string]string `yaml:"targets"`
	Safety     safetyConfig      `yaml:"safety"`
	Transforms transform.Config  `yaml:"transforms"`
	Compare    verify.Config     `yaml:"compare"`
	Goals      goals.Config      `yaml:"goals"`
	// Mock is the section `replayer mock` reads; a shared file carries it.
	Mock yaml.Node `yaml:"mock"`
}

type safetyConfig struct {
	AllowWrites bool           `yaml:"allow_writes"`
	Routes      []replay.Route `yaml:"routes"`
}

// loadConfig reads a replay config file; unknown fields are errors, so a
// typo does not silently turn a rule off.
func loadConfig(path string) (*fileConfig, error) {
	fc := &fileConfig{}
	if path == "" {
		return fc, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(fc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return fc, nil
}

// mapFlag collects repeated NAME=VALUE flags.
type mapFlag map[string]string

func (m mapFlag) String() string { return "" }

func (m mapFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" || v == "" {
		return fmt.Errorf("want SERVICE=URL, got %q", s)
	}
	m[k] = v
	return nil
}

// rateFlag is a rate in requests per second, written 100 or 100/s.
type rateFlag float64

func (r *rateFlag) String() string { return strconv.FormatFloat(float64(*r), 'g', -1, 64) }

func (r *rateFlag) Set(s string) error {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "/s"), 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return fmt.Errorf("want a rate such as 100 or 100/s, got %q", s)
	}
	*r = rateFlag(v)
	return nil
}

func newRunFlags() (*flag.FlagSet, *config) {
	fs := flag.NewFlagSet("replayer run", flag.ContinueOnError)
	logging.Register(fs)
	c := &config{targetMap: mapFlag{}}
	fs.StringVar(&c.collector, "collector", "127.0.0.1:7070", "collector gRPC address (host:port)")
	fs.StringVar(&c.file, "file", "", "replay the exchanges of this file exported by the collector (.jsonl or .har) instead of asking the collector")
	fs.StringVar(&c.target, "target", "", "base URL to replay against, e.g. http://127.0.0.1:8080 (a path is a prefix); serves exchanges --target-map does not")
	fs.Var(c.targetMap, "target-map", "SERVICE=URL or HOST=URL: replay that recorded service or Host against URL (repeatable)")
	fs.StringVar(&c.configFile, "config", "", "replay config file (YAML: targets, safety, transforms, compare, goals)")
	fs.BoolVar(&c.allowWrites, "allow-writes", false, "also replay POST, PUT, PATCH and DELETE requests")
	fs.IntVar(&c.limit, "limit", 0, "replay at most this many exchanges (0: all)")
	fs.IntVar(&c.workers, "workers", 1, "requests in flight when replaying as fast as possible")
	fs.Float64Var(&c.speed, "speed", 0, "replay as recorded, this many times faster (1: real time)")
	fs.DurationVar(&c.maxGap, "max-gap", 0, "with --speed, cap each gap between requests to this (0: no cap)")
	fs.Var(&c.rate, "rate", "start requests at this constant rate (N or N/s), whatever the latency")
	fs.Var(&c.rateFrom, "rate-from", "start rate of a ramp (N/s)")
	fs.Var(&c.rateTo, "rate-to", "end rate of a ramp (N/s), held after --ramp")
	fs.DurationVar(&c.ramp, "ramp", 0, "duration of the ramp from --rate-from to --rate-to")
	fs.IntVar(&c.maxInFlight, "max-in-flight", replay.DefaultMaxInFlight, "with --speed or a rate, drop (and report) a request due when this many are in flight")
	fs.StringVar(&c.reportJSON, "report-json", "", "write the JSON report to this file")
	fs.StringVar(&c.junit, "junit", "", "write a JUnit XML report to this file")
	fs.StringVar(&c.reportHTML, "report-html", "", "write a self-contained HTML report to this file")
	fs.DurationVar(&c.timeout, "timeout", replay.DefaultTimeout, "timeout of one replayed request")
	fs.StringVar(&c.runID, "run-id", "", "id of this run, sent in the "+replay.RunHeader+" header (default: random)")
	fs.BoolVar(&c.learnNoise, "learn-noise", false, "send each request twice to the --reference build and learn the fields that differ as noise")
	fs.StringVar(&c.reference, "reference", "", "with --learn-noise: base URL of the known-good build, or two comma-separated URLs of two fresh instances of it (each request goes once to each, so ids a stateful service makes are not mistaken for noise)")
	fs.StringVar(&c.noiseFile, "noise-file", "", "learned noise file (default: compare.noise_file of the config; with --learn-noise and neither, "+defaultNoiseFile+")")
	fs.DurationVar(&c.progressTick, "progress", 5*time.Second, "print progress to stderr this often when it is not a terminal (0: never)")
	c.filters = filterflag.Register(fs)
	c.conn = grpcclient.Register(fs)
	return fs, c
}

// options validates the flags and the config file and builds the options of
// the replay.
func (c *config) options(fc *fileConfig) (replay.Options, error) {
	opts := replay.Options{RunID: c.runID, Timeout: c.timeout}
	if c.set["collector"] && c.file != "" {
		return opts, errors.New("give --collector or --file, not both")
	}
	if c.file == "" && c.collector == "" {
		return opts, errors.New("--collector must not be empty")
	}
	if c.limit < 0 {
		return opts, fmt.Errorf("--limit must not be negative, got %d", c.limit)
	}
	if c.timeout <= 0 {
		return opts, fmt.Errorf("--timeout must be positive, got %s", c.timeout)
	}
	byName := map[string]string{}
	fallback := c.target
	for k, v := range fc.Targets {
		if k == "default" {
			if fallback == "" {
				fallback = v
			}
			continue
		}
		byName[k] = v
	}
	maps.Copy(byName, c.targetMap)
	if fallback == "" && len(byName) == 0 {
		return opts, errors.New("--target is required (or --target-map, or targets: in --config)")
	}
	targets, err := replay.NewTargets(fallback, byName)
	if err != nil {
		return opts, fmt.Errorf("targets: %w", err)
	}
	opts.Targets = targets
	opts.Safety = replay.Safety{AllowWrites: c.allowWrites || fc.Safety.AllowWrites, Routes: fc.Safety.Routes}
	if opts.Load, err = c.load(); err != nil {
		return opts, err
	}
	if c.learnNoise {
		if c.reference == "" {
			return opts, errors.New("--learn-noise needs --reference URL")
		}
		refs := strings.Split(c.reference, ",")
		if len(refs) > 2 {
			return opts, fmt.Errorf("--reference takes one or two URLs, got %d", len(refs))
		}
		for _, ref := range refs {
			u, err := replay.ParseTarget(strings.TrimSpace(ref))
			if err != nil {
				return opts, fmt.Errorf("--reference: %w", err)
			}
			opts.References = append(opts.References, u)
		}
	} else if c.reference != "" {
		return opts, errors.New("--reference is used only with --learn-noise")
	}
	return opts, nil
}

// load picks the load model from the flags; models do not mix.
func (c *config) load() (replay.Load, error) {
	l := replay.Load{Model: replay.Fastest, Workers: c.workers, MaxInFlight: c.maxInFlight}
	recorded := c.set["speed"] || c.set["max-gap"]
	ramp := c.set["rate-from"] || c.set["rate-to"] || c.set["ramp"]
	switch {
	case btoi(recorded)+btoi(c.set["rate"])+btoi(ramp) > 1:
		return l, errors.New("choose one load model: --speed/--max-gap, --rate, or --rate-from/--rate-to/--ramp")
	case (recorded || c.set["rate"] || ramp) && c.set["workers"]:
		return l, errors.New("--workers applies only when replaying as fast as possible; the other models bound requests in flight with --max-in-flight")
	case recorded:
		l.Model, l.Speed, l.MaxGap = replay.Recorded, c.speed, c.maxGap
		if !c.set["speed"] {
			l.Speed = 1
		}
	case c.set["rate"]:
		l.Model, l.RateFrom, l.RateTo = replay.Rate, float64(c.rate), float64(c.rate)
	case ramp:
		if !c.set["rate-from"] || !c.set["rate-to"] || !c.set["ramp"] {
			return l, errors.New("a ramp needs --rate-from, --rate-to and --ramp")
		}
		l.Model, l.RateFrom, l.RateTo, l.Ramp = replay.Rate, float64(c.rateFrom), float64(c.rateTo), c.ramp
	}
	if l.Model == replay.Fastest && c.workers <= 0 {
		return l, fmt.Errorf("--workers must be positive, got %d", c.workers)
	}
	return l, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// filter returns the selection to read.
func (c *config) filter(now time.Time) (*reprisev1.ExchangeFilter, error) {
	f, err := c.filters.Filter(now)
	if err != nil {
		return nil, err
	}
	// Only inbound requests are this service's API; outbound ones are its
	// dependencies, which a replay serves from mocks instead.
	if f.Direction == reprisev1.Direction_DIRECTION_OUTBOUND {
		return nil, errors.New("--direction: only inbound exchanges can be replayed")
	}
	f.Direction = reprisev1.Direction_DIRECTION_INBOUND
	return f, nil
}

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, cfg := newRunFlags()
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitError
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "replayer run: unexpected arguments %q\n", fs.Args())
		return exitError
	}
	logging.Install(fs)
	cfg.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { cfg.set[f.Name] = true })
	if cfg.runID == "" {
		cfg.runID = rand.Text()
	}
	rep, err := replayRun(ctx, cfg, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "replayer run: %v\n", err)
		return exitError
	}
	switch {
	case rep.Total == 0:
		fmt.Fprintln(stderr, "replayer run: no inbound exchange matched the selection; check --since, --service, --path-prefix and the other filters")
		return exitError
	case rep.Skipped == rep.Total:
		fmt.Fprintf(stderr, "replayer run: all %d selected exchanges were skipped; nothing was replayed\n", rep.Total)
		return exitError
	case !rep.OK():
		return exitFailed
	}
	return exitOK
}

// replayRun reads the selection, replays it and writes the summary and the
// reports. The reports are written even when the run breaks off, so CI
// keeps what was found.
func replayRun(ctx context.Context, cfg *config, stdout, stderr io.Writer) (*report.Report, error) {
	fc, err := loadConfig(cfg.configFile)
	if err != nil {
		return nil, err
	}
	opts, err := cfg.options(fc)
	if err != nil {
		return nil, err
	}
	filter, err := cfg.filter(time.Now())
	if err != nil {
		return nil, err
	}
	if err := fc.Goals.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if cfg.noiseFile != "" {
		fc.Compare.NoiseFile = cfg.noiseFile
	}
	if cfg.learnNoise && fc.Compare.NoiseFile == "" {
		fc.Compare.NoiseFile = defaultNoiseFile
	}
	verifier, err := verify.New(fc.Compare)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	opts.Checker = verifier
	if cfg.learnNoise {
		opts.Learner = verifier
	}
	pipeline, err := transform.New(fc.Transforms)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	opts.Transform = pipeline
	r, err := replay.New(opts)
	if err != nil {
		return nil, err
	}
	spec := source.Spec{Filter: filter, Limit: cfg.limit}
	if cfg.file != "" {
		spec.File = cfg.file
	} else {
		spec.Collector, spec.Dial = cfg.collector, cfg.conn.Dial
	}
	exchanges, err := source.Open(ctx, spec)
	if err != nil {
		return nil, err
	}

	rep := report.New(cfg.runID, describeTargets(cfg, fc), time.Now())
	var prog *progress.Reporter
	if cfg.progressTick > 0 {
		prog = progress.Start(stderr, cfg.progressTick, func() progress.Counts {
			s := r.Stats()
			return progress.Counts{
				Total: int64(cfg.limit), Done: s.Selected, Failed: s.Failed, Errors: s.Errors,
				Skipped: s.Skipped, Dropped: s.Dropped, Late: s.Late,
			}
		})
	}
	runErr := r.Run(ctx, exchanges, rep.Add)
	if prog != nil {
		prog.Stop()
	}
	rep.Finish(time.Now())
	if runErr != nil && rep.Total == 0 {
		return nil, runErr // e.g. collector unreachable: there is nothing to report
	}
	rep.SetViolations(fc.Goals.Evaluate(rep), fc.Goals.DecidesRates())
	if err := rep.WriteSummary(stdout); err != nil {
		return nil, err
	}
	s := r.Stats()
	if s.Sent > 0 {
		fmt.Fprintf(stdout, "sent %d requests at %.1f req/s; %d late (≥%s behind schedule), %d dropped\n",
			s.Sent, s.Rate(), s.Late, replay.LateThreshold, s.Dropped)
	}
	for _, w := range []struct {
		path  string
		write func(io.Writer) error
	}{{cfg.reportJSON, rep.WriteJSON}, {cfg.junit, rep.WriteJUnit}, {cfg.reportHTML, rep.WriteHTML}} {
		if w.path != "" {
			if err := writeFile(w.path, w.write); err != nil {
				return nil, err
			}
		}
	}
	if cfg.learnNoise {
		if err := verifier.SaveNoise(fc.Compare.NoiseFile); err != nil {
			return nil, err
		}
		path, err := filepath.Abs(fc.Compare.NoiseFile)
		if err != nil {
			path = fc.Compare.NoiseFile
		}
		fmt.Fprintf(stdout, "learned noise written to %s (replay with --noise-file %s)\n", path, path)
	}
	if runErr != nil {
		return nil, fmt.Errorf("replay stopped after %d exchanges: %w", rep.Total, runErr)
	}
	return rep, nil
}

// describeTargets names the targets of the run for the report.
func describeTargets(cfg *config, fc *fileConfig) string {
	names := map[string]string{}
	maps.Copy(names, fc.Targets)
	maps.Copy(names, cfg.targetMap)
	if cfg.target != "" {
		names["default"] = cfg.target
	}
	if len(names) == 1 {
		for _, u := range names {
			return u
		}
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(names)) {
		parts = append(parts, k+"="+names[k])
	}
	return strings.Join(parts, ", ")
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create report: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close report %s: %w", path, err)
	}
	return nil
}
