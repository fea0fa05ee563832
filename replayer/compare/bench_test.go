package compare

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkCompareIn measures what the context rules cost per comparison
// of a typical reflected JSON answer (about 2 KB, as go-httpbin's /anything):
// "plain" compares the recorded answer with itself without context (the
// baseline: the same walk, no difference found), "context" compares it with
// the replayed answer under the replacements, own headers, markers and
// times a replay sets, which account for every difference.
//
//	go test ./replayer/compare -run XXX -bench CompareIn -count 6
func BenchmarkCompareIn(b *testing.B) {
	var fields []string
	for i := range 40 {
		fields = append(fields, fmt.Sprintf(`"h%d":["value %d of http://127.0.0.1:47213/x"]`, i, i))
	}
	rec := jsonResp(`{"url":"http://127.0.0.1:47213/anything","created":1796646991,"headers":{` + strings.Join(fields, ",") + `}}`)
	rep := jsonResp(`{"url":"http://127.0.0.1:59597/anything","created":1796646996,"headers":{` +
		strings.ReplaceAll(strings.Join(fields, ","), "47213", "59597") + `,"X-Reprise-Replay":["r"]}}`)
	at := time.Unix(1796646991, 0)
	ctx := Context{
		Replace: []Replacement{{"127.0.0.1:47213", "127.0.0.1:59597"}, {"http://127.0.0.1:47213", "http://127.0.0.1:59597"}},
		Own:     []string{"X-Reprise-Replay"}, Markers: true, RecordedAt: at, ReplayedAt: at.Add(5 * time.Second), Tolerance: DefaultTolerance,
	}
	c, _ := New(Options{})
	if d := c.CompareIn(ctx, rec, rep); len(d) != 0 {
		b.Fatalf("differences %v", d)
	}
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			c.Compare(rec, rec)
		}
	})
	b.Run("context", func(b *testing.B) {
		for b.Loop() {
			c.CompareIn(ctx, rec, rep)
		}
	})
}
