package transform

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// FuzzTransforms feeds recorded (untrusted) targets, headers and bodies
// through every transform: no panic, and the learned values are used.
func FuzzTransforms(f *testing.F) {
	f.Add("/orders/1?at=2026-11-20T08:00:00Z", "Cookie", "s=a; t", `{"id":1,"at":"2026-11-20","ts":1795683600}`, `{"id":2}`)
	f.Add("/%zz?=&&a=%", "If-Modified-Since", "Fri, 20 Nov 2026 08:00:00 GMT", `[{"id":"x"},1e999]`, `[{"id":"y"}]`)
	f.Add("http://h/p?q=1", "X", "2026-13-45T99:99:99Z", `{"a":`, `{"token":"NaN"}`)
	f.Fuzz(func(t *testing.T, target, hname, hvalue, body, replayed string) {
		p, err := New(Config{
			RewriteURL: []Rewrite{{Match: `^/orders`, Replace: "/v2/orders"}},
			ShiftTime:  &ShiftTime{EpochFields: []string{"ts"}, EpochByValue: true},
			Learn:      &Learn{},
		})
		if err != nil {
			t.Fatal(err)
		}
		p.now = func() time.Time { return now }
		ex := &reprisev1.Exchange{
			StartTime: timestamppb.New(captured),
			Request:   &reprisev1.HttpRequest{Method: "POST", Target: target, Headers: hdrs(hname, hvalue), Body: []byte(body)},
		}
		p.Learn("s", &reprisev1.HttpResponse{Body: []byte(body), Headers: hdrs("Set-Cookie", hvalue)},
			&reprisev1.HttpResponse{Body: []byte(replayed), Headers: hdrs("Set-Cookie", replayed)})
		if _, err := p.Request("s", ex); err != nil {
			t.Fatal(err)
		}
	})
}
