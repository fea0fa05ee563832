package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestNewRejectsUnknownVersion(t *testing.T) {
	if _, err := New("v3"); err == nil {
		t.Fatal("New(v3) succeeded, want an error")
	}
}

// TestAPI runs one session of calls against a fresh server of each version;
// the two versions differ only in the total of GET /api/orders/1, the one
// order with a quantity of 2 or more.
func TestAPI(t *testing.T) {
	type call struct {
		method, path, body string
		wantStatus         int
		wantBody           string
	}
	session := func(detailTotal string) []call {
		return []call{
			{"GET", "/healthz", "", 200, "ok\n"},
			{"GET", "/api/orders", "", 200, `{"orders":[]}`},
			{"POST", "/api/orders", `{"item":"espresso beans","quantity":2,"unit_price":12.5}`, 201,
				`{"id":1,"item":"espresso beans","quantity":2,"unit_price":12.5,"total":25}`},
			{"POST", "/api/orders", `{"item":"milk frother","quantity":1,"unit_price":39.9}`, 201,
				`{"id":2,"item":"milk frother","quantity":1,"unit_price":39.9,"total":39.9}`},
			{"POST", "/api/orders", `{"item":"cup","quantity":3,"unit_price":0.333}`, 201,
				`{"id":3,"item":"cup","quantity":3,"unit_price":0.333,"total":1}`},
			{"GET", "/api/orders/1", "", 200,
				`{"id":1,"item":"espresso beans","quantity":2,"unit_price":12.5,"total":` + detailTotal + `}`},
			// Quantity 1: no bulk discount in either version.
			{"GET", "/api/orders/2", "", 200,
				`{"id":2,"item":"milk frother","quantity":1,"unit_price":39.9,"total":39.9}`},
			{"GET", "/api/orders", "", 200,
				`{"orders":[{"id":1,"item":"espresso beans","quantity":2,"unit_price":12.5,"total":25},` +
					`{"id":2,"item":"milk frother","quantity":1,"unit_price":39.9,"total":39.9},` +
					`{"id":3,"item":"cup","quantity":3,"unit_price":0.333,"total":1}]}`},
			{"GET", "/api/orders/404", "", 404, `{"error":"order 404 not found"}`},
			{"GET", "/api/orders/abc", "", 400, `{"error":"invalid order id \"abc\""}`},
			{"POST", "/api/orders", `{"item":"","quantity":1,"unit_price":1}`, 400, `{"error":"item is required"}`},
			{"POST", "/api/orders", `{"item":"x","quantity":0,"unit_price":1}`, 400, `{"error":"quantity must be at least 1"}`},
			{"POST", "/api/orders", `{"item":"x","quantity":1,"unit_price":-1}`, 400, `{"error":"unit_price must not be negative"}`},
			{"POST", "/api/orders", `{"item":"x","colour":"red"}`, 400,
				`{"error":"invalid order: json: unknown field \"colour\""}`},
			{"POST", "/api/orders", `{"item":"x","note":"` + strings.Repeat("a", maxBody) + `"}`, 413,
				`{"error":"order body too large"}`},
			{"DELETE", "/api/orders/1", "", 405, "Method Not Allowed\n"},
		}
	}
	tests := []struct {
		version string
		calls   []call
	}{
		{V1, session("25")},
		{V2, session("22.5")},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			h, err := New(tt.version)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			for _, c := range tt.calls {
				req, err := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
				if err != nil {
					t.Fatal(err)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", c.method, c.path, err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("%s %s: read body: %v", c.method, c.path, err)
				}
				if resp.StatusCode != c.wantStatus || strings.TrimSuffix(string(body), "\n") != strings.TrimSuffix(c.wantBody, "\n") {
					t.Errorf("%s %s = %d %s, want %d %s", c.method, c.path, resp.StatusCode, body, c.wantStatus, c.wantBody)
				}
			}
		})
	}
}

func TestNoisy(t *testing.T) {
	for _, noisy := range []bool{false, true} {
		var opts []Option
		if noisy {
			opts = append(opts, Noisy())
		}
		h, err := New(V1, opts...)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		resp, err := http.Post(srv.URL+"/api/orders", "application/json", strings.NewReader(`{"item":"a","quantity":1,"unit_price":1}`))
		if err != nil {
			t.Fatal(err)
		}
		var o map[string]any
		json.NewDecoder(resp.Body).Decode(&o)
		resp.Body.Close()
		srv.Close()
		_, created := o["created_at"]
		_, ref := o["ref"]
		_, rid := o["request_id"]
		hasHeader := resp.Header.Get("X-Request-Id") != "" && resp.Header.Get("Traceparent") != ""
		if created != noisy || ref != noisy || rid != noisy || hasHeader != noisy {
			t.Errorf("noisy=%v: body %v, X-Request-Id %q", noisy, o, resp.Header.Get("X-Request-Id"))
		}
	}
}
