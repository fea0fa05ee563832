package tail

import (
	"fmt"
	"testing"

	"github.com/reprise-dev/reprise/collector/store"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func matcher(t *testing.T, f *reprisev1.ExchangeFilter) *store.Matcher {
	t.Helper()
	m, err := store.NewMatcher(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func exs(n int, service string) []*reprisev1.Exchange {
	var out []*reprisev1.Exchange
	for i := range n {
		out = append(out, &reprisev1.Exchange{Id: fmt.Sprint(service, i), Service: service})
	}
	return out
}

func TestPublishFiltersAndCutsOffLaggards(t *testing.T) {
	h := NewHub()
	orders := h.Subscribe(matcher(t, &reprisev1.ExchangeFilter{Service: "orders"}))
	slow := h.Subscribe(matcher(t, nil))
	h.Publish(exs(3, "orders"))
	h.Publish(exs(2, "billing"))
	for i := range 3 {
		if got := (<-orders.C()).GetId(); got != fmt.Sprint("orders", i) {
			t.Fatalf("orders subscriber got %s, want orders%d", got, i)
		}
	}
	select {
	case ex := <-orders.C():
		t.Fatalf("orders subscriber got %s, which its filter excludes", ex.GetId())
	default:
	}
	// The unfiltered subscriber never reads: once its buffer is full it is
	// closed, and Publish does not block.
	h.Publish(exs(buffer, "billing"))
	n := 0
	for range slow.C() {
		n++
	}
	if n != buffer || !h.Unsubscribe(slow) {
		t.Errorf("slow subscriber: %d delivered then lagged=%v; want %d and lagged", n, h.Unsubscribe(slow), buffer)
	}
	if h.Unsubscribe(orders) {
		t.Error("orders subscriber reported lagged")
	}
	if _, ok := <-orders.C(); ok {
		t.Error("channel open after Unsubscribe")
	}
}
