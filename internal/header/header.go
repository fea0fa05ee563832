// Package header reads recorded header fields, which keep their wire
// order and spelling, so a name matches case-insensitively.
package header

import (
	"strings"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Get returns the first value of the named field, or "".
func Get(hs []*reprisev1.Header, name string) string {
	for _, h := range hs {
		if strings.EqualFold(h.GetName(), name) {
			return h.GetValue()
		}
	}
	return ""
}

// Combined returns every value of the named field joined with ", ", as a
// recipient combines a field sent more than once (RFC 9110, 5.3): a
// Content-Encoding list split over two lines is one list.
func Combined(hs []*reprisev1.Header, name string) string {
	var vals []string
	for _, h := range hs {
		if strings.EqualFold(h.GetName(), name) {
			vals = append(vals, h.GetValue())
		}
	}
	return strings.Join(vals, ", ")
}
