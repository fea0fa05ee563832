// Package sample holds a realistic exchange for benchmarks and tests of
// more than one part, so they all measure the same thing.
package sample

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Checkout returns a ~2 KB JSON API exchange, a checkout request and its
// response, carrying credentials, cookies and personal data for a
// sanitizer to find. Each call returns a new copy.
func Checkout() *reprisev1.Exchange {
	reqBody := `{"customer":{"id":"cus_000184","email":"jane.doe@example.com","phone":"+1 415-555-0132",
"name":"Jane Doe","address":{"line1":"1 Market St","city":"San Francisco","zip":"94105","country":"US"}},
"items":[{"sku":"SKU-12-RED-XL","qty":2,"price":19.99},{"sku":"SKU-7-BLU-M","qty":1,"price":49.5},
{"sku":"SKU-3-GRN-S","qty":3,"price":5.25}],"payment":{"method":"card","card_number":"4111111111111111",
"exp":"12/29","cvv":"737"},"coupon":"SUMMER-2026","notes":"Leave at the door, ring twice. If nobody answers, leave it with the neighbour at number 3.",
"shipping":{"method":"express","carrier":"UPS","instructions":"Call on arrival","gift":true,"gift_message":"Happy birthday!"},
"created_at":"2026-11-24T10:14:49Z","request_id":"7c9e6679-7425-40de-944b-e07fc1f90ae7"}`
	respBody := `{"order":{"id":"ORD-2026-000123","status":"confirmed","total":121.23,"currency":"USD",
"items":[{"sku":"SKU-12-RED-XL","qty":2},{"sku":"SKU-7-BLU-M","qty":1},{"sku":"SKU-3-GRN-S","qty":3}],
"customer":{"id":"cus_000184","email":"jane.doe@example.com"},"payment":{"last4":"1111","brand":"visa"},
"tracking_url":"https://track.example/t/1Z999AA10123456784","eta":"2026-11-27",
"created_at":"2026-11-24T10:14:49Z","updated_at":"2026-11-24T10:14:50Z"},"links":{"self":"/api/v1/orders/ORD-2026-000123"}}`
	return &reprisev1.Exchange{
		Id:        "ex-checkout",
		StartTime: timestamppb.New(time.Date(2026, 11, 24, 10, 14, 49, 0, time.UTC)),
		Duration:  durationpb.New(12 * time.Millisecond),
		Direction: reprisev1.Direction_DIRECTION_INBOUND,
		Service:   "shop",
		Request: &reprisev1.HttpRequest{
			Method: "POST", Target: "/api/v1/orders?expand=items&client=web", Host: "shop.internal", Proto: "HTTP/1.1",
			Headers: Headers("Host", "shop.internal", "User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
				"Accept", "application/json", "Content-Type", "application/json",
				"Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
				"Cookie", "sid=SESSION-abc-123; theme=dark",
				"X-Request-Id", "7c9e6679-7425-40de-944b-e07fc1f90ae7", "Content-Length", "702"),
			Body: []byte(reqBody), BodySize: int64(len(reqBody)),
		},
		Response: &reprisev1.HttpResponse{
			StatusCode: 201, Proto: "HTTP/1.1",
			Headers: Headers("Content-Type", "application/json", "Set-Cookie", "sid=SESSION-def-456; Path=/; HttpOnly",
				"Date", "Tue, 24 Nov 2026 10:14:50 GMT", "Content-Length", "560"),
			Body: []byte(respBody), BodySize: int64(len(respBody)),
		},
		Capture: &reprisev1.Capture{AgentId: "bench", Source: reprisev1.CaptureSource_CAPTURE_SOURCE_SYSCALL},
	}
}

// Headers builds headers from name, value pairs, in order.
func Headers(kv ...string) []*reprisev1.Header {
	out := make([]*reprisev1.Header, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &reprisev1.Header{Name: kv[i], Value: kv[i+1]})
	}
	return out
}
