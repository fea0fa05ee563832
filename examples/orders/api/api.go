// Package api is the HTTP API of the example order service that the reprise
// demo records and replays.
//
// It is deterministic by default: ids count from 1 and no response carries
// a timestamp or a random value, so a recording replayed against a fresh
// instance of the same version matches exactly. With the Noisy option it
// behaves like most real services instead: orders carry a creation time
// and a random reference, every JSON body a request id, and every response
// X-Request-Id and traceparent headers, which a replay must learn to ignore.
package api

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Versions of the service.
const (
	V1 = "v1"
	// V2 has one deliberate regression for a replay to catch: GET
	// /api/orders/{id} applies a 10% bulk discount to the total of orders
	// with a quantity of 2 or more, so the detail view disagrees with the
	// list and with the order as created.
	V2 = "v2"
)

// maxBody bounds a request body; an order is a few dozen bytes.
const maxBody = 64 << 10

// Order is one order. Prices are in currency units; totals are rounded to
// cents.
type Order struct {
	ID        int     `json:"id"`
	Item      string  `json:"item"`
	Quantity  int     `json:"quantity"`
	UnitPrice float64 `json:"unit_price"`
	Total     float64 `json:"total"`
	// Noisy mode only.
	CreatedAt string `json:"created_at,omitempty"`
	Ref       string `json:"ref,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

type newOrder struct {
	Item      string  `json:"item"`
	Quantity  int     `json:"quantity"`
	UnitPrice float64 `json:"unit_price"`
}

type server struct {
	version string
	noisy   bool
	mu      sync.Mutex
	orders  []Order // index i holds id i+1
}

// Option changes the behaviour of the service.
type Option func(*server)

// Noisy adds timestamps, random references and request ids to responses.
func Noisy() Option { return func(s *server) { s.noisy = true } }

// New returns the handler of the given version (V1 or V2), with no orders.
func New(version string, opts ...Option) (http.Handler, error) {
	if version != V1 && version != V2 {
		return nil, fmt.Errorf("unknown version %q, want %s or %s", version, V1, V2)
	}
	s := &server{version: version}
	for _, o := range opts {
		o(s)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.health)
	mux.HandleFunc("GET /api/orders", s.list)
	mux.HandleFunc("POST /api/orders", s.create)
	mux.HandleFunc("GET /api/orders/{id}", s.get)
	return mux, nil
}

func (s *server) health(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

func (s *server) list(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	orders := append([]Order{}, s.orders...)
	s.mu.Unlock()
	if !s.noisy {
		writeJSON(w, http.StatusOK, map[string][]Order{"orders": orders})
		return
	}
	s.noise(w)
	writeJSON(w, http.StatusOK, map[string]any{"orders": orders, "request_id": randomHex(8)})
}

func (s *server) get(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id < 1 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid order id %q", r.PathValue("id")))
		return
	}
	s.mu.Lock()
	var o Order
	found := id <= len(s.orders)
	if found {
		o = s.orders[id-1]
	}
	s.mu.Unlock()
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("order %d not found", id))
		return
	}
	if s.version == V2 && o.Quantity >= 2 {
		o.Total = cents(o.Total * 0.9)
	}
	s.noise(w)
	o.RequestID = s.requestID()
	writeJSON(w, http.StatusOK, o)
}

func (s *server) create(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	var in newOrder
	if err := dec.Decode(&in); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "order body too large")
			return
		}
		writeError(w, http.StatusBadRequest, "invalid order: "+err.Error())
		return
	}
	switch {
	case in.Item == "":
		writeError(w, http.StatusBadRequest, "item is required")
		return
	case in.Quantity < 1:
		writeError(w, http.StatusBadRequest, "quantity must be at least 1")
		return
	case in.UnitPrice < 0:
		writeError(w, http.StatusBadRequest, "unit_price must not be negative")
		return
	}
	s.mu.Lock()
	o := Order{
		ID:        len(s.orders) + 1,
		Item:      in.Item,
		Quantity:  in.Quantity,
		UnitPrice: in.UnitPrice,
		Total:     cents(float64(in.Quantity) * in.UnitPrice),
	}
	if s.noisy {
		o.CreatedAt = time.Now().UTC().Format(time.RFC3339Nano)
		o.Ref = randomHex(6)
	}
	s.orders = append(s.orders, o)
	s.mu.Unlock()
	s.noise(w)
	o.RequestID = s.requestID()
	w.Header().Set("Location", fmt.Sprintf("/api/orders/%d", o.ID))
	writeJSON(w, http.StatusCreated, o)
}

// noise sets the volatile headers of a noisy service.
func (s *server) noise(w http.ResponseWriter) {
	if s.noisy {
		w.Header().Set("X-Request-Id", randomHex(8))
		w.Header().Set("Traceparent", "00-"+randomHex(16)+"-"+randomHex(8)+"-01")
	}
}

func (s *server) requestID() string {
	if !s.noisy {
		return ""
	}
	return randomHex(8)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func cents(amount float64) float64 {
	return math.Round(amount*100) / 100
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// The status is sent; an encoding error here can only be a broken
	// connection, which the client sees.
	_ = json.NewEncoder(w).Encode(v)
}
