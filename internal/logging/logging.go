// Package logging gives every reprise command the same --log-level and
// --log-format flags and the slog logger they describe: text for a
// terminal, JSON for a cluster's log pipeline.
package logging

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

const (
	levelFlag  = "log-level"
	formatFlag = "log-format"
)

// level is the value of --log-level.
type level struct{ slog.Level }

var levels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

func (l *level) Set(s string) error {
	v, ok := levels[strings.ToLower(s)]
	if !ok {
		return fmt.Errorf("want debug, info, warn or error, got %q", s)
	}
	l.Level = v
	return nil
}

func (l *level) String() string { return strings.ToLower(l.Level.String()) }

// format is the value of --log-format.
type format string

func (f *format) Set(s string) error {
	if s != "text" && s != "json" {
		return fmt.Errorf("want text or json, got %q", s)
	}
	*f = format(s)
	return nil
}

func (f *format) String() string { return string(*f) }

// Register adds --log-level and --log-format to fs. A bad value is a parse
// error of fs, reported as any usage error.
func Register(fs *flag.FlagSet) {
	fs.Var(&level{slog.LevelInfo}, levelFlag, "least severe log lines written: debug, info, warn or error")
	f := format("text")
	fs.Var(&f, formatFlag, "log line format: text, or json for a log pipeline")
}

// Logger returns the logger the parsed flags of fs describe, writing to w.
// A flag set without Register's flags gets info lines as text.
func Logger(fs *flag.FlagSet, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if f := fs.Lookup(levelFlag); f != nil {
		opts.Level = f.Value.(*level).Level
	}
	if f := fs.Lookup(formatFlag); f != nil && f.Value.String() == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Install makes Logger(fs, os.Stderr) the process's default logger, the
// one every package's slog calls write to. Log lines go to the process's
// stderr, not to fs.Output(): a command run in a test with its own writer
// must not leave the process logging into it.
func Install(fs *flag.FlagSet) {
	slog.SetDefault(Logger(fs, os.Stderr))
}
