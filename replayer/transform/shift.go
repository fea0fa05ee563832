package transform

import (
	"encoding/json"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// epochWindow is how far from the capture an integer may be, with
// EpochByValue, to be taken for a timestamp.
const epochWindow = 365 * 24 * time.Hour

// headersNeverShifted carry no dates a server checks against its clock,
// or values that must not be touched.
var headersNeverShifted = map[string]bool{"Authorization": true, "Cookie": true, "Content-Length": true, "Content-Type": true}

// shiftTimes moves every date of req forward by d; captured is when the
// request was recorded.
func (p *Pipeline) shiftTimes(req *reprisev1.HttpRequest, d time.Duration, captured time.Time) {
	if d == 0 {
		return
	}
	epoch := func(key, text string) (string, bool) {
		return p.shiftEpoch(key, text, d, captured)
	}
	path, query, hasQuery := strings.Cut(req.GetTarget(), "?")
	if hasQuery {
		req.Target = path + "?" + mapQuery(query, func(key, value string) (string, bool) {
			if s, ok := shiftText(value, d); ok {
				return s, true
			}
			return epoch(key, value)
		})
	}
	for _, h := range req.GetHeaders() {
		if headersNeverShifted[textproto.CanonicalMIMEHeaderKey(h.GetName())] {
			continue
		}
		if s, ok := shiftText(h.GetValue(), d); ok {
			h.Value = s
		} else if t, err := http.ParseTime(h.GetValue()); err == nil {
			h.Value = t.Add(d).UTC().Format(http.TimeFormat)
		}
	}
	if !jsonBody(req) {
		return
	}
	v, ok := decodeJSON(req.GetBody())
	if !ok {
		return
	}
	if v, changed := shiftJSON("", v, d, epoch); changed {
		if b := encodeJSON(v); b != nil {
			req.Body, req.BodySize = b, int64(len(b))
		}
	}
}

func shiftJSON(key string, v any, d time.Duration, epoch func(key, text string) (string, bool)) (any, bool) {
	changed := false
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if ne, c := shiftJSON(k, e, d, epoch); c {
				t[k], changed = ne, true
			}
		}
		return t, changed
	case []any:
		for i, e := range t {
			if ne, c := shiftJSON(key, e, d, epoch); c {
				t[i], changed = ne, true
			}
		}
		return t, changed
	case string:
		if s, ok := shiftText(t, d); ok {
			return s, true
		}
	case json.Number:
		if s, ok := epoch(key, t.String()); ok {
			return json.Number(s), true
		}
	}
	return v, false
}

// shiftText shifts an RFC 3339 date-time, keeping its precision and
// offset, or an ISO-8601 date by whole days.
func shiftText(s string, d time.Duration) (string, bool) {
	if len(s) < len("2006-01-02") || len(s) > 40 || s[4] != '-' {
		return "", false
	}
	if len(s) == len("2006-01-02") {
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return "", false
		}
		return t.Add(d.Round(24 * time.Hour)).Format(time.DateOnly), true
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return "", false
	}
	layout := "2006-01-02T15:04:05"
	if i := strings.IndexByte(s, '.'); i > 0 {
		digits := 0
		for _, c := range s[i+1:] {
			if c < '0' || c > '9' {
				break
			}
			digits++
		}
		layout += "." + strings.Repeat("0", digits)
	}
	layout += "Z07:00"
	if s[10] == 't' {
		layout = strings.Replace(layout, "T", "t", 1)
	}
	return t.Add(d).Format(layout), true
}

// shiftEpoch shifts an integer of epoch seconds or milliseconds, named by
// key or recognised by its value.
func (p *Pipeline) shiftEpoch(key, text string, d time.Duration, captured time.Time) (string, bool) {
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n <= 0 {
		return "", false
	}
	millis := len(text) >= 13
	if !p.epochFields[key] {
		if !p.shift.EpochByValue || (len(text) != 10 && len(text) != 13) {
			return "", false
		}
		t := time.Unix(n, 0)
		if millis {
			t = time.UnixMilli(n)
		}
		if diff := t.Sub(captured); diff > epochWindow || diff < -epochWindow {
			return "", false
		}
	}
	if millis {
		return strconv.FormatInt(n+d.Milliseconds(), 10), true
	}
	return strconv.FormatInt(n+int64(d.Round(time.Second)/time.Second), 10), true
}
