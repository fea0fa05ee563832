package fidelity

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Children: this test binary re-executed with childEnv set to "mode addr".
// The test process itself is excluded from capture, like the agent.
const childEnv = "REPRISE_FIDELITY_CHILD"

const (
	smallBody = `{"id":7,"name":"espresso","qty":2}`
	bigSize   = 3 << 20
)

func runChild(spec string) error {
	mode, addr, _ := strings.Cut(spec, " ")
	switch mode {
	case "goserver":
		return goServer(addr)
	case "slowreader":
		return slowReader(addr)
	case "earlyclient":
		return earlyClient(addr)
	}
	return fmt.Errorf("unknown child mode %q", mode)
}

// goServer serves every case of the matrix on addr until killed.
func goServer(addr string) error {
	var handled atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, smallBody)
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strconv.FormatInt(handled.Load(), 10))
	})
	mux.HandleFunc("GET /chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		for _, s := range []string{"alpha,", "beta,", "gamma"} {
			io.WriteString(w, s)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Checksum", "abc123")
	})
	mux.HandleFunc("GET /writes", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "15")
		for _, s := range []string{"one-", "two-", "three-", "4"} {
			io.WriteString(w, s)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /etag", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "fresh")
	})
	mux.HandleFunc("GET /gzip", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		io.WriteString(zw, strings.Repeat("compressed ", 20))
		zw.Close()
	})
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(bigSize))
		io.Copy(w, io.LimitReader(&pattern{}, bigSize))
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "got %d", n)
	})
	// /one writes its whole body in one Write, as services that marshal a
	// document write it: with framing=none the server frames it (chunked,
	// or to the close for HTTP/1.0).
	mux.HandleFunc("GET /one", func(w http.ResponseWriter, r *http.Request) {
		size, err := strconv.Atoi(r.URL.Query().Get("size"))
		if err != nil || size < 0 {
			http.Error(w, "size", http.StatusBadRequest)
			return
		}
		body := randomBody(size)
		if r.URL.Query().Get("framing") != "none" {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		w.Write(body)
	})
	// /echo reads the whole request body in one Read, as far as the
	// connection has it, and sends it back in one Write.
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength < 0 {
			http.Error(w, "needs a Content-Length", http.StatusLengthRequired)
			return
		}
		body := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	return http.ListenAndServe(addr, mux)
}

// pattern is an endless, recognisable body: the alphabet over and over.
type pattern struct{ off int }

func (r *pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a' + byte((r.off+i)%26)
	}
	r.off += len(p)
	return len(p), nil
}

// randomBody returns n bytes that the test and its children make alike and
// that no shift or repeat of a part matches, unlike pattern.
func randomBody(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}).Read(b)
	return b
}

// slowReader sends one request and reads the response one byte per read.
func slowReader(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /small HTTP/1.1\r\nHost: "+addr+"\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// earlyClient opens a keep-alive connection and sends a request, then sends
// a second one on it when a line arrives on stdin.
func earlyClient(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	br := bufio.NewReader(c)
	get := func(target string) error {
		if _, err := io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return err
	}
	if err := get("/small?before=1"); err != nil {
		return err
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	return get("/small?after=1")
}
