package progress

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	c := Counts{Total: 200, Done: 50, Failed: 2, Errors: 1, Skipped: 3, Dropped: 4, Late: 5}
	tests := []struct {
		c    Counts
		bar  bool
		want string
	}{
		{c, true, "[=======                       ] 50/200 done, 5/s, 2 failed, 1 errors, 3 skipped, 4 dropped, 5 late, 10s"},
		{c, false, "50/200 done, 5/s, 2 failed, 1 errors, 3 skipped, 4 dropped, 5 late, 10s"},
		{Counts{Done: 7}, true, "7 done, 1/s, 0 failed, 0 errors, 0 skipped, 0 dropped, 0 late, 10s"},
	}
	for _, tt := range tests {
		if got := Line(tt.c, 10*time.Second, tt.bar); got != tt.want {
			t.Errorf("Line(%+v, bar %v) =\n%q\nwant\n%q", tt.c, tt.bar, got, tt.want)
		}
	}
}

// syncBuffer is written by the reporter and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Off a terminal, plain lines: at least the final one, with the final counts.
func TestPlainLinesOffATerminal(t *testing.T) {
	var out syncBuffer
	var mu sync.Mutex
	done := int64(0)
	r := Start(&out, time.Millisecond, func() Counts {
		mu.Lock()
		defer mu.Unlock()
		done++
		return Counts{Done: done}
	})
	time.Sleep(5 * time.Millisecond)
	r.Stop()
	lines := strings.Split(strings.TrimSuffix(out.b.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(out.b.String(), "\r") || !strings.HasPrefix(last, fmt.Sprintf("%d done, ", done)) {
		t.Errorf("output %q, want plain lines ending with the final count %d", out.b.String(), done)
	}
}
