package endpoint

import "testing"

func TestNormalize(t *testing.T) {
	tests := map[string]string{
		"":                      "/",
		"/":                     "/",
		"/orders":               "/orders",
		"/orders/123":           "/orders/{id}",
		"/orders/456?verbose=1": "/orders/{id}",
		"/orders/123/items/7#x": "/orders/{id}/items/{id}",
		"/users/3f2a9c1e-8b7d-4e6f-a1b2-c3d4e5f60718": "/users/{id}",
		"/blobs/9f86d081884c7d659a2feaa0c55ad015":     "/blobs/{id}",
		"/sessions/01HZX3K8Q2V9T7M4N6P5R1S0AB":        "/sessions/{id}",
		"/api/v2/health":                              "/api/v2/health",
		"/assets/deadbeef":                            "/assets/deadbeef",
		"/files/report-2024.pdf":                      "/files/report-2024.pdf",
		"/cafe/beef":                                  "/cafe/beef",
		"http://api.example/orders/9?x=1":             "/orders/{id}",
		"http://api.example":                          "/",
	}
	for in, want := range tests {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}
