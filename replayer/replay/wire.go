package replay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// wireClient sends HTTP/1.1 requests exactly as they are given: the
// request line, the header fields in their order and with their names as
// written, then the body. Go's http.Client cannot: it writes header names
// in canonical case, sorted, and adds its own User-Agent and
// Accept-Encoding; a replay sends the recorded request. Responses are read
// with net/http's parser. Connections are kept per target for reuse.
type wireClient struct {
	dialer  net.Dialer
	maxIdle int // idle connections kept per target

	mu   sync.Mutex
	idle map[string][]*wireConn
}

type wireConn struct {
	net.Conn
	br *bufio.Reader
}

func newWireClient(maxIdle int) *wireClient {
	return &wireClient{dialer: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second},
		maxIdle: maxIdle, idle: map[string][]*wireConn{}}
}

// response is what came back: status, headers, and the body up to limit
// bytes (truncated says there was more).
type response struct {
	status    int
	proto     string
	header    http.Header
	body      []byte
	truncated bool
}

// do sends method and requestURI to base with the headers in order and the
// body, and reads the response. A connection reused from an earlier
// request that the server had closed meanwhile is retried once on a new
// one, as Go's transport does.
func (c *wireClient) do(ctx context.Context, base *url.URL, method, requestURI string, headers []*reprisev1.Header, body []byte, limit int) (*response, error) {
	head, err := requestHead(method, requestURI, headers)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		conn, reused, err := c.conn(ctx, base)
		if err != nil {
			return nil, err
		}
		resp, keep, err := roundTrip(ctx, conn, method, head, body, limit)
		if err == nil {
			if keep {
				c.put(base, conn)
			} else {
				conn.Close()
			}
			return resp, nil
		}
		conn.Close()
		// Only an idempotent request is sent again: the server may have
		// read the first one.
		if !reused || attempt > 0 || !staleConn(err) || ctx.Err() != nil || !idempotent[method] {
			return nil, err
		}
	}
}

var idempotent = map[string]bool{"GET": true, "HEAD": true, "OPTIONS": true, "TRACE": true, "PUT": true, "DELETE": true}

// requestHead writes the request line and header fields, refusing names
// and values that are not valid HTTP (a recorded CR LF would start a
// header of its own).
func requestHead(method, requestURI string, headers []*reprisev1.Header) ([]byte, error) {
	if !httpguts.ValidHeaderFieldName(method) {
		return nil, fmt.Errorf("method %q is not a valid token", method)
	}
	b := []byte(method + " " + requestURI + " HTTP/1.1\r\n")
	for _, h := range headers {
		if !httpguts.ValidHeaderFieldName(h.GetName()) || !httpguts.ValidHeaderFieldValue(h.GetValue()) {
			return nil, fmt.Errorf("header %q is not a valid HTTP header field", h.GetName())
		}
		b = append(b, h.GetName()+": "+h.GetValue()+"\r\n"...)
	}
	return append(b, "\r\n"...), nil
}

// staleConn reports an error of a kept connection the server closed
// before it read the request.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (c *wireClient) conn(ctx context.Context, base *url.URL) (*wireConn, bool, error) {
	key := base.Scheme + "://" + base.Host
	c.mu.Lock()
	if conns := c.idle[key]; len(conns) > 0 {
		conn := conns[len(conns)-1]
		c.idle[key] = conns[:len(conns)-1]
		c.mu.Unlock()
		return conn, true, nil
	}
	c.mu.Unlock()
	addr := base.Host
	if base.Port() == "" {
		addr = net.JoinHostPort(base.Hostname(), map[string]string{"http": "80", "https": "443"}[base.Scheme])
	}
	var conn net.Conn
	var err error
	if base.Scheme == "https" {
		d := tls.Dialer{NetDialer: &c.dialer, Config: &tls.Config{ServerName: base.Hostname(), NextProtos: []string{"http/1.1"}}}
		conn, err = d.DialContext(ctx, "tcp", addr)
	} else {
		conn, err = c.dialer.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, false, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &wireConn{Conn: conn, br: bufio.NewReader(conn)}, false, nil
}

func (c *wireClient) put(base *url.URL, conn *wireConn) {
	key := base.Scheme + "://" + base.Host
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle[key]) >= c.maxIdle {
		conn.Close()
		return
	}
	c.idle[key] = append(c.idle[key], conn)
}

// roundTrip writes one request on conn and reads its response; keep says
// the connection may carry another request.
func roundTrip(ctx context.Context, conn *wireConn, method string, head, body []byte, limit int) (*response, bool, error) {
	// The context's end (its deadline too) unblocks the read or write at
	// once; the error is then the context's.
	conn.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(append(head, body...)); err != nil {
		return nil, false, ctxErr(ctx, err)
	}
	req := &http.Request{Method: method}
	var resp *http.Response
	for {
		var err error
		if resp, err = http.ReadResponse(conn.br, req); err != nil {
			return nil, false, ctxErr(ctx, err)
		}
		// 1xx answers (100 Continue, 103 Early Hints) precede the final one.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, false, ctxErr(ctx, err)
	}
	out := &response{status: resp.StatusCode, proto: resp.Proto, header: resp.Header, body: b}
	if len(b) > limit {
		out.body, out.truncated = b[:limit], true
	}
	keep := !resp.Close && !out.truncated && resp.StatusCode != http.StatusSwitchingProtocols
	return out, keep, nil
}

// ctxErr says the context's reason when it ended the exchange.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// contentLength is the Content-Length header of the body sent, when one
// is sent: with a body, for methods that expect one, and when the
// recording had one.
func contentLength(rec *reprisev1.HttpRequest) (*reprisev1.Header, bool) {
	n, m := len(rec.GetBody()), rec.GetMethod()
	recorded := slices.ContainsFunc(rec.GetHeaders(), func(h *reprisev1.Header) bool { return strings.EqualFold(h.GetName(), "Content-Length") })
	if n == 0 && m != "POST" && m != "PUT" && m != "PATCH" && !recorded {
		return nil, false
	}
	return &reprisev1.Header{Name: "Content-Length", Value: strconv.Itoa(n)}, true
}
