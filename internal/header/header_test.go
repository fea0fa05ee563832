package header

import (
	"testing"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func TestGetAndCombined(t *testing.T) {
	hs := []*reprisev1.Header{
		{Name: "Content-Type", Value: "application/json"},
		{Name: "content-encoding", Value: "gzip"},
		nil,
		{Name: "Content-Encoding", Value: "br"},
	}
	tests := []struct{ fn, name, want string }{
		{"get", "content-type", "application/json"},
		{"get", "Content-Encoding", "gzip"},
		{"get", "Host", ""},
		{"combined", "Content-Encoding", "gzip, br"},
		{"combined", "Host", ""},
	}
	for _, tc := range tests {
		got := Get(hs, tc.name)
		if tc.fn == "combined" {
			got = Combined(hs, tc.name)
		}
		if got != tc.want {
			t.Errorf("%s(%q) = %q, want %q", tc.fn, tc.name, got, tc.want)
		}
	}
}
