// Package progress shows how far a replay is: a bar redrawn in place on a
// terminal, a plain line now and then otherwise (CI logs).
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Counts is what is shown; Total is 0 when unknown (a collector stream).
type Counts struct {
	Total, Done, Failed, Errors, Skipped, Dropped, Late int64
}

// Reporter prints Counts from a poll function until stopped.
type Reporter struct {
	w        io.Writer
	tty      bool
	every    time.Duration
	poll     func() Counts
	start    time.Time
	stop     chan struct{}
	finished sync.WaitGroup
}

// Start begins reporting to w every interval (a terminal is redrawn five
// times a second instead).
func Start(w io.Writer, interval time.Duration, poll func() Counts) *Reporter {
	r := &Reporter{w: w, every: interval, poll: poll, start: time.Now(), stop: make(chan struct{})}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		r.tty, r.every = true, 200*time.Millisecond
	}
	r.finished.Add(1)
	go r.loop()
	return r
}

func (r *Reporter) loop() {
	defer r.finished.Done()
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.print(false)
		case <-r.stop:
			r.print(true)
			return
		}
	}
}

// Stop prints the final counts and returns when done.
func (r *Reporter) Stop() {
	close(r.stop)
	r.finished.Wait()
}

func (r *Reporter) print(final bool) {
	line := Line(r.poll(), time.Since(r.start), r.tty)
	switch {
	case r.tty && final:
		fmt.Fprintf(r.w, "\r%s\n", line)
	case r.tty:
		fmt.Fprintf(r.w, "\r%s", line)
	default:
		fmt.Fprintln(r.w, line)
	}
}

// barWidth is the width of the bar in characters.
const barWidth = 30

// Line renders c after elapsed, with a bar when asked and the total known.
func Line(c Counts, elapsed time.Duration, bar bool) string {
	var b strings.Builder
	if bar && c.Total > 0 {
		filled := int(min(c.Done, c.Total) * barWidth / c.Total)
		fmt.Fprintf(&b, "[%s%s] ", strings.Repeat("=", filled), strings.Repeat(" ", barWidth-filled))
	}
	if c.Total > 0 {
		fmt.Fprintf(&b, "%d/%d", c.Done, c.Total)
	} else {
		fmt.Fprintf(&b, "%d", c.Done)
	}
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(c.Done) / s
	}
	fmt.Fprintf(&b, " done, %.0f/s, %d failed, %d errors, %d skipped, %d dropped, %d late, %s",
		rate, c.Failed, c.Errors, c.Skipped, c.Dropped, c.Late, elapsed.Round(time.Second))
	return b.String()
}
