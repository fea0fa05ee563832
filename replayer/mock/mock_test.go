package mock

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func outbound(id, method, host, target, body, respBody string, status int32) *reprisev1.Exchange {
	req := &reprisev1.HttpRequest{Method: method, Host: host, Target: target, Body: []byte(body)}
	if body != "" {
		req.Headers = []*reprisev1.Header{{Name: "Content-Type", Value: "application/json"}}
	}
	return &reprisev1.Exchange{
		Id: id, Direction: reprisev1.Direction_DIRECTION_OUTBOUND, Request: req,
		Response: &reprisev1.HttpResponse{StatusCode: status, Body: []byte(respBody),
			Headers: []*reprisev1.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Length", Value: "999"}}},
	}
}

// recording is what a checkout service sent to its dependencies.
func recording() []*reprisev1.Exchange {
	return []*reprisev1.Exchange{
		outbound("c1", "POST", "payments.example", "/v1/charges", `{"amount":100,"currency":"eur","nonce":"a1"}`, `{"id":"ch_1"}`, 200),
		outbound("c2", "POST", "payments.example", "/v1/charges", `{"amount":100,"currency":"eur","nonce":"b2"}`, `{"id":"ch_2"}`, 200),
		outbound("c3", "POST", "payments.example", "/v1/charges", `{"amount":5000,"currency":"eur","nonce":"c3"}`, `{"error":"declined"}`, 402),
		outbound("r1", "GET", "rates.example", "/v1/rates?base=eur&to=usd", "", `{"usd":1.1}`, 200),
		outbound("r2", "GET", "stock.example:8080", "/v1/rates?base=eur&to=usd", "", `{"stock":1}`, 200),
		outbound("i1", "GET", "", "http://inventory.example/items/7", "", `{"qty":3}`, 200),
		outbound("u1", "GET", "", "http://inventory.example/items/ä", "", `{"qty":4}`, 200),
		outbound("x", "", "", "", "", "", 0), // nothing recorded: skipped
		// Opaque form: it would name another host; refused, never served.
		outbound("p", "GET", "payments.example", "x:@127.0.0.1:9/items/7", "", `{"qty":"pwned"}`, 200),
	}
}

func start(t *testing.T, o Options) (*Server, string) {
	t.Helper()
	s, err := New(recording(), o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

type answer struct {
	status int
	body   string
	how    string
}

func do(t *testing.T, c *http.Client, method, u, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header.Get(Header)}
}

func proxyClient(t *testing.T, mockURL string) *http.Client {
	u, err := url.Parse(mockURL)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
}

func TestBaseURL(t *testing.T) {
	s, base := start(t, Options{Ignore: []string{"$.nonce"}})
	c := http.DefaultClient
	// JSON body matched structurally (key order, whitespace, ignored
	// nonce); identical calls answered in recorded order, then the last
	// repeats.
	for i, want := range []string{`{"id":"ch_1"}`, `{"id":"ch_2"}`, `{"id":"ch_2"}`} {
		got := do(t, c, "POST", base+"/v1/charges", `{"currency": "eur", "nonce": "zz", "amount": 100}`)
		if got.status != 200 || got.body != want {
			t.Errorf("call %d: %+v, want %s", i, got, want)
		}
	}
	if got := do(t, c, "POST", base+"/v1/charges", `{"amount":5000,"currency":"eur","nonce":"q"}`); got.status != 402 || got.how != "matched" {
		t.Errorf("declined charge: %+v", got)
	}
	// Query order does not matter.
	if got := do(t, c, "GET", base+"/v1/rates?to=usd&base=eur", ""); got.body != `{"usd":1.1}` {
		t.Errorf("rates: %+v", got)
	}
	// A recorded absolute-form target matches on its path.
	if got := do(t, c, "GET", base+"/items/7", ""); got.body != `{"qty":3}` {
		t.Errorf("inventory: %+v", got)
	}
	// A recorded raw UTF-8 path matches the escaped path a client sends.
	if got := do(t, c, "GET", base+"/items/%C3%A4", ""); got.body != `{"qty":4}` {
		t.Errorf("inventory: %+v", got)
	}
	if st := s.Stats(); st.Recorded != 7 || st.Skipped != 1 || st.Refused != 1 || st.Matched != 7 || st.Unmatched != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestProxy(t *testing.T) {
	_, base := start(t, Options{Strict: true, Ignore: []string{"$.nonce"}})
	c := proxyClient(t, base)
	// The host tells apart two dependencies with the same path.
	if got := do(t, c, "GET", "http://stock.example:8080/v1/rates?base=eur&to=usd", ""); got.body != `{"stock":1}` {
		t.Errorf("stock via proxy: %+v", got)
	}
	if got := do(t, c, "GET", "http://rates.example/v1/rates?base=eur&to=usd", ""); got.body != `{"usd":1.1}` {
		t.Errorf("rates via proxy: %+v", got)
	}
	if got := do(t, c, "GET", "http://inventory.example/items/7", ""); got.body != `{"qty":3}` {
		t.Errorf("inventory via proxy: %+v", got)
	}
	// HTTPS through the proxy needs CONNECT, which the mock refuses.
	if _, err := c.Get("https://payments.example/v1/charges"); err == nil {
		t.Error("CONNECT through the mock succeeded")
	}
}

func TestStrictUnmatched(t *testing.T) {
	s, base := start(t, Options{Strict: true, Ignore: []string{"$.nonce"}})
	c := http.DefaultClient
	for range 2 {
		do(t, c, "POST", base+"/v1/charges", `{"amount":100,"currency":"eur"}`)
	}
	// A third identical call is one more than recorded.
	if got := do(t, c, "POST", base+"/v1/charges", `{"amount":100,"currency":"eur"}`); got.status != http.StatusBadGateway || got.how != "unmatched" {
		t.Errorf("third identical call in strict mode: %+v", got)
	}
	got := do(t, c, "POST", base+"/v1/charges", `{"amount":101,"currency":"eur"}`)
	if got.status != http.StatusBadGateway {
		t.Fatalf("unmatched call: %+v", got)
	}
	var body struct {
		Error       string
		Nearest     *Recorded
		Differences []struct{ Path, Recorded, Replayed string }
	}
	if err := json.Unmarshal([]byte(got.body), &body); err != nil {
		t.Fatal(err)
	}
	if body.Nearest == nil || body.Nearest.ID != "c1" || len(body.Differences) != 1 ||
		body.Differences[0].Path != "$.amount" || body.Differences[0].Recorded != "100" || body.Differences[0].Replayed != "101" {
		t.Errorf("nearest and difference: %s", got.body)
	}
	do(t, c, "GET", base+"/v1/rates?base=eur&to=gbp&x=1", "")

	list := do(t, c, "GET", base+UnmatchedPath, "")
	var doc struct {
		Stats     Stats
		Unmatched []Unmatched
	}
	if err := json.Unmarshal([]byte(list.body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Stats.Unmatched != 3 || len(doc.Unmatched) != 3 || s.Stats().Unmatched != 3 {
		t.Fatalf("unmatched listing: %s", list.body)
	}
	if !strings.Contains(doc.Unmatched[0].Reason, "more often than recorded") {
		t.Errorf("reason of the extra call: %q", doc.Unmatched[0].Reason)
	}
	var paths []string
	for _, d := range doc.Unmatched[2].Differences {
		paths = append(paths, d.Path+":"+d.Kind)
	}
	if doc.Unmatched[2].Nearest.ID != "r1" || strings.Join(paths, " ") != "query.to:changed query.x:added" {
		t.Errorf("query differences: nearest %+v, %v", doc.Unmatched[2].Nearest, paths)
	}
}

func TestLenientUnmatched(t *testing.T) {
	s, base := start(t, Options{})
	c := http.DefaultClient
	// Same method and path: the nearest recorded answer, marked.
	if got := do(t, c, "GET", base+"/v1/rates?base=usd&to=usd", ""); got.how != "nearest" || got.status != 200 {
		t.Errorf("near miss: %+v", got)
	}
	if got := do(t, c, "DELETE", base+"/v1/charges", ""); got.status != http.StatusNotFound {
		t.Errorf("unknown call: %+v", got)
	}
	if st := s.Stats(); st.Unmatched != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestIgnoreQueryAndHost(t *testing.T) {
	_, base := start(t, Options{Ignore: []string{"query.to", "host", "body"}, Strict: true})
	c := proxyClient(t, base)
	if got := do(t, c, "GET", "http://elsewhere.example/v1/rates?base=eur&to=jpy", ""); got.body != `{"usd":1.1}` {
		t.Errorf("ignored query and host: %+v", got)
	}
	if got := do(t, c, "POST", "http://payments.example/v1/charges", `{"other":"json"}`); got.body != `{"id":"ch_1"}` {
		t.Errorf("ignored body: %+v", got)
	}
}

func TestOptionErrors(t *testing.T) {
	for _, ig := range []string{"headers.X", "$[", "nonce"} {
		if _, err := New(nil, Options{Ignore: []string{ig}}); err == nil {
			t.Errorf("ignore %q accepted", ig)
		}
	}
}
