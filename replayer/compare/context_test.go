package compare

import (
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func TestCompareInContext(t *testing.T) {
	recAt := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	repAt := recAt.Add(37 * time.Minute)
	timed := Context{RecordedAt: recAt, ReplayedAt: repAt, Tolerance: DefaultTolerance}
	unix := func(t time.Time, unit string) string {
		switch unit {
		case "ms":
			return strconv.FormatInt(t.UnixMilli(), 10)
		case "µs":
			return strconv.FormatInt(t.UnixMicro(), 10)
		case "ns":
			return strconv.FormatInt(t.UnixNano(), 10)
		}
		return strconv.FormatInt(t.Unix(), 10)
	}
	text := func(body string) *reprisev1.HttpResponse { return resp(200, "text/plain", body) }
	tests := []struct {
		name     string
		ctx      Context
		opts     Options
		rec, rep *reprisev1.HttpResponse
		want     []Difference
	}{
		{
			name: "own header reflected as a member, a header and a text line",
			ctx:  Context{Own: []string{"X-Reprise-Replay"}},
			rec:  withHeaders(jsonResp(`{"headers":{"Accept":["*/*"]}}`)),
			rep:  withHeaders(jsonResp(`{"headers":{"Accept":["*/*"],"X-Reprise-Replay":["r1"]}}`), "X-Reprise-Replay", "r1"),
			opts: Options{Headers: []string{"*"}},
		},
		{
			name: "own header line in a text dump",
			ctx:  Context{Own: []string{"X-Reprise-Replay"}},
			rec:  text("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
			rep:  text("GET / HTTP/1.1\r\nAccept: */*\r\nX-Reprise-Replay: r1\r\n\r\n"),
		},
		{
			name: "recorded authority replaced in headers, JSON strings and text",
			ctx:  Context{Replace: []Replacement{{"127.0.0.1:47213", "127.0.0.1:59597"}, {"http://127.0.0.1:47213", "http://127.0.0.1:59597/base"}}},
			opts: Options{Headers: []string{"Location"}},
			rec:  withHeaders(jsonResp(`{"url":"http://127.0.0.1:47213/get","host":"127.0.0.1:47213"}`), "Location", "http://127.0.0.1:47213/next"),
			rep:  withHeaders(jsonResp(`{"url":"http://127.0.0.1:59597/base/get","host":"127.0.0.1:59597"}`), "Location", "http://127.0.0.1:59597/base/next"),
		},
		{
			name: "a redacted span in text matches any text",
			ctx:  Context{Markers: true},
			rec:  text("upload to s3 [REDACTED]~report.txt, token tok_AbCdEfGhIjKlMnOp, card ****4242"),
			rep:  text("upload to s3 AKIAZ7QW3RT5YVX2LPMN~report.txt, token 8f2a, card 4111111111114242"),
		},
		{
			name: "but the text around it is compared",
			ctx:  Context{Markers: true},
			rec:  text("upload to s3 [REDACTED]~report.txt"),
			rep:  text("upload to s3 AKIAZ7QW3RT5YVX2LPMN~report.pdf"),
			want: []Difference{{Path: "body", Kind: KindChanged, Recorded: "upload to s3 [REDACTED]~report.txt", Replayed: "upload to s3 AKIAZ7QW3RT5YVX2LPMN~report.pdf"}},
		},
		{
			name: "redacted paths are not compared, markers in JSON match",
			ctx:  Context{Markers: true, Unknown: []string{"$.card.cvv", "headers.X-Api-Key"}},
			opts: Options{Headers: []string{"X-Api-Key"}},
			rec:  withHeaders(jsonResp(`{"card":{"cvv":0,"holder":"Ann [REDACTED]"}}`), "X-Api-Key", "[REDACTED]"),
			rep:  withHeaders(jsonResp(`{"card":{"cvv":123,"holder":"Ann Lee"}}`), "X-Api-Key", "k-1"),
		},
		{
			name: "a partial recording compares its head",
			ctx:  Context{Partial: true},
			rec:  text("0123456789"),
			rep:  text("0123456789abcdef"),
		},
		{
			name: "a partial recording whose head differs",
			ctx:  Context{Partial: true},
			rec:  text("0123456789"),
			rep:  text("0123X56789abcdef"),
			want: []Difference{{Path: "body", Kind: KindChanged, Recorded: "0123456789", Replayed: "0123X56789"}},
		},
		{
			name: "no recorded body: not compared",
			ctx:  Context{NoBody: true},
			rec:  text(""),
			rep:  text("anything"),
		},
		{
			name: "times at the same offset from their exchange",
			ctx:  timed,
			opts: Options{Headers: []string{"Last-Modified"}},
			rec: withHeaders(jsonResp(`{"iso":"`+recAt.Add(-time.Hour).Format(time.RFC3339Nano)+`","s":`+unix(recAt, "s")+
				`,"ms":`+unix(recAt, "ms")+`,"us":"`+unix(recAt, "µs")+`","ns":`+unix(recAt, "ns")+`,"f":`+unix(recAt, "s")+`.25}`),
				"Last-Modified", recAt.Format(http.TimeFormat)),
			rep: withHeaders(jsonResp(`{"iso":"`+repAt.Add(-time.Hour).Format(time.RFC3339)+`","s":`+unix(repAt.Add(time.Second), "s")+
				`,"ms":`+unix(repAt, "ms")+`,"us":"`+unix(repAt, "µs")+`","ns":`+unix(repAt, "ns")+`,"f":`+unix(repAt, "s")+`.5}`),
				"Last-Modified", repAt.Format(http.TimeFormat)),
		},
		{
			name: "a time at another offset is a difference",
			ctx:  timed,
			rec:  jsonResp(`{"created":` + unix(recAt, "s") + `}`),
			rep:  jsonResp(`{"created":` + unix(repAt.Add(time.Hour), "s") + `}`),
			want: []Difference{{Path: "$.created", Kind: KindChanged, Recorded: unix(recAt, "s"), Replayed: unix(repAt.Add(time.Hour), "s")}},
		},
		{
			name: "seconds and milliseconds are not paired",
			ctx:  timed,
			rec:  jsonResp(`{"t":` + unix(recAt, "s") + `}`),
			rep:  jsonResp(`{"t":` + unix(repAt, "ms") + `}`),
			want: []Difference{{Path: "$.t", Kind: KindChanged, Recorded: unix(recAt, "s"), Replayed: unix(repAt, "ms")}},
		},
		{
			name: "times in a text body",
			ctx:  timed,
			rec:  text("created " + recAt.Format(time.RFC3339) + " at " + unix(recAt, "s") + " by " + recAt.Format(http.TimeFormat) + ".\n"),
			rep:  text("created " + repAt.Format(time.RFC3339) + " at " + unix(repAt, "s") + " by " + repAt.Format(http.TimeFormat) + ".\n"),
		},
		{
			name: "a text body whose time moved is a difference",
			ctx:  timed,
			rec:  text("created " + unix(recAt, "s")),
			rep:  text("created " + unix(repAt.Add(time.Hour), "s")),
			want: []Difference{{Path: "body", Kind: KindChanged, Recorded: "created " + unix(recAt, "s"), Replayed: "created " + unix(repAt.Add(time.Hour), "s")}},
		},
		{
			name: "exact_times [body] turns it off in text",
			ctx:  timed,
			opts: Options{ExactTimes: []string{"body"}},
			rec:  text("created " + unix(recAt, "s")),
			rep:  text("created " + unix(repAt, "s")),
			want: []Difference{{Path: "body", Kind: KindChanged, Recorded: "created " + unix(recAt, "s"), Replayed: "created " + unix(repAt, "s")}},
		},
		{
			name: "exact_times turns it off per path",
			ctx:  timed,
			opts: Options{ExactTimes: []string{"$.created"}},
			rec:  jsonResp(`{"created":` + unix(recAt, "s") + `,"updated":` + unix(recAt, "s") + `}`),
			rep:  jsonResp(`{"created":` + unix(repAt, "s") + `,"updated":` + unix(repAt, "s") + `}`),
			want: []Difference{{Path: "$.created", Kind: KindChanged, Recorded: unix(recAt, "s"), Replayed: unix(repAt, "s")}},
		},
		{
			name: "without the exchanges' times, times compare as written",
			rec:  jsonResp(`{"created":` + unix(recAt, "s") + `}`),
			rep:  jsonResp(`{"created":` + unix(repAt, "s") + `}`),
			want: []Difference{{Path: "$.created", Kind: KindChanged, Recorded: unix(recAt, "s"), Replayed: unix(repAt, "s")}},
		},
		{
			name: "JSON lines compared value by value",
			ctx:  Context{Own: []string{"X-Reprise-Replay"}},
			rec:  jsonResp("{\"id\":0}\n{\"id\":1}\n"),
			rep:  jsonResp("{\"id\":0,\"X-Reprise-Replay\":\"r\"}\n{\"id\":2}\n"),
			want: []Difference{{Path: "$[1].id", Kind: KindChanged, Recorded: "1", Replayed: "2"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.CompareIn(tt.ctx, tt.rec, tt.rep); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("differences %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestSplitMarkers(t *testing.T) {
	for s, want := range map[string]int{
		"plain":                         1,
		"[REDACTED]":                    2,
		"a=%5Bredacted%5D&b=[REDACTED]": 3,
		"tok_AbCdEfGhIjKlMnOp":          2,
		"xtok_AbCdEfGhIjKlMnOp":         1, // inside a word: not a token
		"tok_short":                     1,
		"****1234 and ****":             3,
	} {
		if got := len(splitMarkers(s)); got != want {
			t.Errorf("splitMarkers(%q) has %d pieces, want %d", s, got, want)
		}
	}
}
