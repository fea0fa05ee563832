// Command benchserver is the keep-alive HTTP server scripts/bench-capture.sh
// loads with wrk: GET /small answers a 215-byte JSON body, POST /upload
// reads the body and answers its size, POST /echo answers the body it was
// sent, written in one Write as a service that marshals a document does.
// GET /count reports how many of those requests it handled, which the
// benchmark compares with what was captured.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
)

// small is the 215-byte response of GET /small.
var small = func() []byte {
	b := `{"id":"ord-000042","status":"shipped","items":[{"sku":"espresso-beans-1kg","qty":2,"price":12.5},{"sku":"milk-frother","qty":1,"price":39.9}],"total":64.9,"currency":"EUR","customer":"c-1234","pad":"`
	return []byte(b + strings.Repeat("x", 215-len(b)-2) + `"}`)
}()

func main() {
	addr := flag.String("listen", "127.0.0.1:8099", "listen address")
	flag.Parse()
	var handled atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /small", func(w http.ResponseWriter, _ *http.Request) {
		handled.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(small)
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		handled.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"bytes":%d}`, n)
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		handled.Add(1)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, strconv.FormatInt(handled.Load(), 10))
	})
	log.Fatal(http.ListenAndServe(*addr, mux))
}
