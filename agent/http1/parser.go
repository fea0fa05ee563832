// Package http1 parses HTTP/1.0 and HTTP/1.1 messages incrementally, from one
// direction of a connection, as the bytes arrive in pieces of any size.
//
// A Parser never blocks and never holds more than a bounded amount of memory
// per message: the head is limited by Config.MaxHeaderBytes and the kept body
// by Config.BodyCap, while the real body size is still counted.
package http1

import (
	"bytes"
	"errors"
	"fmt"
	"math"
)

// Defaults of Config.
const (
	DefaultBodyCap        = 1 << 20
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxHeaders     = 128
)

// Errors Feed wraps; a message that fails is dropped, never half reported.
var (
	ErrMalformed      = errors.New("malformed message")
	ErrHeaderTooLarge = errors.New("header section too large")
	ErrTooManyHeaders = errors.New("too many header fields")
)

// Config bounds what a Parser keeps per message. Zero values take defaults.
type Config struct {
	// BodyCap is how many body bytes a message keeps (default 1 MiB).
	BodyCap int
	// MaxHeaderBytes bounds the start line and header fields together, and
	// separately a chunk-size line or the trailer section (default 64 KiB).
	MaxHeaderBytes int
	// MaxHeaders bounds the number of header (or trailer) fields (default 128).
	MaxHeaders int
}

func (c Config) withDefaults() Config {
	if c.BodyCap <= 0 {
		c.BodyCap = DefaultBodyCap
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxHeaders <= 0 {
		c.MaxHeaders = DefaultMaxHeaders
	}
	return c
}

// Header is one field as sent: the name keeps its case.
type Header struct {
	Name, Value string
}

// Message is one request or response.
type Message struct {
	// Request line; empty for responses.
	Method, Target string
	// Status line; zero for requests.
	StatusCode int
	Reason     string
	// Proto is the version as sent, e.g. "HTTP/1.1".
	Proto   string
	Headers []Header
	// Body is the body after chunked decoding, at most Config.BodyCap bytes;
	// content encodings are kept.
	Body []byte
	// BodySize counts every body byte, kept or not.
	BodySize int64
	// BodyTruncated is set when Body holds less than BodySize.
	BodyTruncated bool
	// BodyUnavailable is set when body bytes moved without passing through
	// user memory (sendfile): they count in BodySize but are not in Body.
	BodyUnavailable bool
	// Trailers are the fields after a chunked body.
	Trailers []Header
	// Incomplete is set on a message the stream ended inside (see Close).
	Incomplete bool
	// TextRepaired is set when the head had bytes that are not UTF-8: each
	// run of them is U+FFFD in the start line and header strings.
	TextRepaired bool
}

// Get returns the value of the first header field named name, compared
// case-insensitively, or "".
func (m *Message) Get(name string) string {
	for _, h := range m.Headers {
		if len(h.Name) == len(name) && equalFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

type state uint8

const (
	stIdle      state = iota // between messages
	stResync                 // skipping to the next plausible start line
	stHead                   // collecting the start line and header fields
	stBody                   // Content-Length body
	stChunkSize              // collecting a chunk-size line
	stChunkData              // inside a chunk
	stChunkEnd               // the CRLF after a chunk's data
	stTrailers               // fields after the last chunk
	stCloseBody              // body that ends with the stream
	stFailed                 // after an error, until Resync or Reset
)

// Parser parses one direction of a connection: requests or responses. It is
// not safe for concurrent use.
type Parser struct {
	cfg      Config
	response bool
	// method reports the method of the request the next response answers:
	// HEAD and CONNECT change how a response is framed.
	method func() string

	state state
	err   error
	msg   *Message
	// buf holds a head, chunk-size line or trailer section split across
	// Feed calls; scanned and lineStart let the search for its end resume
	// where it stopped instead of rescanning.
	buf       []byte
	scanned   int
	lineStart int
	remain    int64 // bytes left in a Content-Length body or a chunk
	sawCR     bool  // in stChunkEnd
	// spare is a message given back with Recycle, for the next head.
	spare *Message
}

// NewRequestParser returns a parser for the requests of a connection.
func NewRequestParser(cfg Config) *Parser {
	return &Parser{cfg: cfg.withDefaults()}
}

// NewResponseParser returns a parser for the responses of a connection.
// method is called when a response head has been read and must return the
// method of the request that response answers ("" when unknown).
func NewResponseParser(cfg Config, method func() string) *Parser {
	if method == nil {
		method = func() string { return "" }
	}
	return &Parser{cfg: cfg.withDefaults(), response: true, method: method}
}

// Feed parses bytes that follow what earlier calls consumed. It stops after
// the first message it completes, returning it and how many bytes of data it
// consumed; call it again with the rest. When data is non-empty it consumes
// at least one byte or completes a message.
//
// On error the current message is dropped and the parser stays failed,
// returning the error without consuming, until Resync or Reset.
func (p *Parser) Feed(data []byte) (n int, msg *Message, err error) {
	if p.state == stFailed {
		return 0, nil, p.err
	}
	for n < len(data) && msg == nil {
		var k int
		k, msg, err = p.step(data[n:])
		n += k
		if err != nil {
			p.state, p.err, p.msg = stFailed, err, nil
			return n, nil, err
		}
	}
	return n, msg, nil
}

// Skip accounts for n body bytes whose content is unavailable (sent with
// sendfile): the framing goes on as if they had been read, and the message
// is marked truncated. It returns the message they complete, if any, and
// how many of the n bytes are the current body's: fewer when a
// Content-Length body ends inside them, none when no body is being read or
// a chunked body's framing would be among them. The caller treats the
// bytes not used as lost: they hold the start of what follows.
func (p *Parser) Skip(n int64) (*Message, int64) {
	return p.pass(n, true)
}

// Discard is Skip for bytes the capture left out on purpose: past the
// body's cap (see Discarding), or the middle of a syscall past the
// kernel's copy cap, which may run past the body's end. The message is
// marked truncated, not unavailable.
func (p *Parser) Discard(n int64) (*Message, int64) {
	return p.pass(n, false)
}

func (p *Parser) pass(n int64, unavailable bool) (*Message, int64) {
	switch {
	case n <= 0:
		return nil, 0
	case p.state == stCloseBody:
	case p.state == stBody:
		n = min(n, p.remain)
		p.remain -= n
	case p.state == stChunkData && n <= p.remain:
		p.remain -= n
	default:
		return nil, 0
	}
	m := p.msg
	m.BodySize += n
	m.BodyTruncated = true
	m.BodyUnavailable = m.BodyUnavailable || unavailable
	switch {
	case p.remain > 0 || p.state == stCloseBody:
		return nil, n
	case p.state == stBody:
		return p.done(), n
	}
	p.state = stChunkEnd
	return nil, n
}

// Discarding returns how many of the next bytes of the current body (or of
// its current chunk) the parser will keep, then how many after those it
// will count and not keep because the body reached BodyCap:
// math.MaxInt64 for a body that ends with the stream. The capture need not
// copy those (Discard).
func (p *Parser) Discarding() (keep, discard int64) {
	if p.msg == nil {
		return 0, 0
	}
	room := int64(max(p.cfg.BodyCap-len(p.msg.Body), 0))
	switch p.state {
	case stBody, stChunkData:
		keep = min(room, p.remain)
		return keep, p.remain - keep
	case stCloseBody:
		return room, math.MaxInt64
	}
	return 0, 0
}

// Recycle gives back a message Feed returned, once nothing refers to it or
// to its Headers array: the next head is parsed into them instead of a new
// allocation. Its strings, Body and Trailers are not reused, so they may be
// kept. The message in progress (Head) is never taken back.
func (p *Parser) Recycle(m *Message) {
	if m != p.msg {
		p.spare = m
	}
}

// Head returns the message whose head has been read and whose body is still
// arriving, or nil. Feed returns the same pointer once it completes.
func (p *Parser) Head() *Message {
	switch p.state {
	case stBody, stChunkSize, stChunkData, stChunkEnd, stTrailers, stCloseBody:
		return p.msg
	}
	return nil
}

// InMessage reports whether bytes of a message not yet complete have been
// consumed.
func (p *Parser) InMessage() bool {
	return p.state >= stHead && p.state != stFailed
}

// Resync drops the current message and makes the parser skip input until the
// next plausible start line: "METHOD SP target SP HTTP/1.x" for requests,
// "HTTP/1.x NNN" for responses. Use it after an error or lost bytes.
func (p *Parser) Resync() {
	p.Reset()
	p.state = stResync
}

// Reset drops all state: the next byte is expected to start a message.
func (p *Parser) Reset() {
	p.state, p.err, p.msg = stIdle, nil, nil
	p.buf, p.scanned, p.lineStart = p.buf[:0], 0, 0
	p.remain, p.sawCR = 0, false
}

// Close tells the parser the stream has ended and resets it. It returns the
// message the end completes (a response whose body is delimited by the close)
// or, when the stream ended inside a body, that message with Incomplete set.
// It returns nil otherwise: a message without its head is never reported.
func (p *Parser) Close() *Message {
	m := p.Head()
	if m != nil && p.state != stCloseBody {
		m.Incomplete = true
	}
	p.Reset()
	return m
}

// step consumes part of b in the current state.
func (p *Parser) step(b []byte) (int, *Message, error) {
	switch p.state {
	case stIdle:
		// Empty lines between messages are tolerated (RFC 9112, 2.2).
		i := 0
		for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
			i++
		}
		if i < len(b) {
			p.state = stHead
		}
		return i, nil, nil
	case stResync:
		return p.resync(b), nil, nil
	case stHead:
		block, n, err := p.collect(b, p.headEnd)
		if err != nil || block == nil {
			return n, nil, err
		}
		if err := p.parseHead(block); err != nil {
			return n, nil, err
		}
		if p.state == stIdle {
			return n, p.done(), nil
		}
		return n, nil, nil
	case stBody, stChunkData:
		n := len(b)
		if int64(n) > p.remain {
			n = int(p.remain)
		}
		p.addBody(b[:n])
		p.remain -= int64(n)
		if p.remain > 0 {
			return n, nil, nil
		}
		if p.state == stBody {
			return n, p.done(), nil
		}
		p.state = stChunkEnd
		return n, nil, nil
	case stChunkSize:
		line, n, err := p.collect(b, lineEnd)
		if err != nil || line == nil {
			return n, nil, err
		}
		size, err := parseChunkSize(line)
		if err != nil {
			return n, nil, err
		}
		if size == 0 {
			p.state = stTrailers
		} else {
			p.state, p.remain = stChunkData, size
		}
		return n, nil, nil
	case stChunkEnd:
		switch {
		case b[0] == '\r' && !p.sawCR:
			p.sawCR = true
		case b[0] == '\n':
			p.state, p.sawCR = stChunkSize, false
		default:
			return 1, nil, fmt.Errorf("chunk data end: %w: no CRLF", ErrMalformed)
		}
		return 1, nil, nil
	case stTrailers:
		block, n, err := p.collect(b, p.headEnd)
		if err != nil || block == nil {
			return n, nil, err
		}
		if p.msg.Trailers, err = p.parseFields(string(block), nil); err != nil {
			return n, nil, fmt.Errorf("trailers: %w", err)
		}
		return n, p.done(), nil
	case stCloseBody:
		p.addBody(b)
		return len(b), nil, nil
	}
	panic(fmt.Sprintf("http1: step in state %d", p.state))
}

// done hands out the current message and waits for the next one.
func (p *Parser) done() *Message {
	m := p.msg
	p.msg, p.state = nil, stIdle
	return m
}

func (p *Parser) addBody(b []byte) {
	m := p.msg
	m.BodySize += int64(len(b))
	if room := p.cfg.BodyCap - len(m.Body); room > 0 {
		if m.Body == nil && p.state == stBody {
			// The length is known: one allocation instead of a doubling
			// append per read the sender's body arrives in.
			m.Body = make([]byte, 0, min(int64(room), p.remain))
		}
		m.Body = append(m.Body, b[:min(room, len(b))]...)
	}
	m.BodyTruncated = m.BodySize > int64(len(m.Body))
}

// collect gathers a block that find delimits (a header section or a line)
// across Feed calls. It returns the block once complete, or nil, and how many
// bytes of b it consumed. A block wholly inside b is not copied; the returned
// slice is only valid until the next call.
func (p *Parser) collect(b []byte, find func(b []byte, from int) int) ([]byte, int, error) {
	limit := p.cfg.MaxHeaderBytes
	if len(p.buf) == 0 {
		if end := find(b, 0); end >= 0 {
			p.lineStart = 0
			// Errors consume up to the limit, as when the block is
			// buffered, so the outcome does not depend on how input is split.
			if end > limit {
				return nil, limit, fmt.Errorf("%w: over %d bytes", ErrHeaderTooLarge, limit)
			}
			return b[:end], end, nil
		}
		if len(b) >= limit {
			return nil, limit, fmt.Errorf("%w: over %d bytes", ErrHeaderTooLarge, limit)
		}
		// find has scanned all of b, and buf becomes a copy of b, so
		// p.lineStart stays valid.
		p.buf = append(p.buf, b...)
		p.scanned = len(b)
		return nil, len(b), nil
	}
	old := len(p.buf)
	take := b[:min(len(b), limit-old)]
	p.buf = append(p.buf, take...)
	end := find(p.buf, p.scanned)
	if end < 0 {
		if len(p.buf) >= limit {
			return nil, len(take), fmt.Errorf("%w: over %d bytes", ErrHeaderTooLarge, limit)
		}
		p.scanned = len(p.buf)
		return nil, len(take), nil
	}
	block := p.buf[:end]
	p.buf, p.scanned, p.lineStart = p.buf[:0], 0, 0
	// A large head must not pin its buffer for the life of the connection.
	if cap(p.buf) > 4096 {
		p.buf = nil
	}
	return block, end - old, nil
}

// headEnd returns the offset just past the empty line that ends a header
// section in b, or -1. The search resumes at from; p.lineStart is where the
// line being scanned began.
func (p *Parser) headEnd(b []byte, from int) int {
	for {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			return -1
		}
		nl := from + i
		if line := b[p.lineStart:nl]; len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			return nl + 1
		}
		p.lineStart, from = nl+1, nl+1
	}
}

// lineEnd returns the offset just past the first LF in b at or after from, or -1.
func lineEnd(b []byte, from int) int {
	i := bytes.IndexByte(b[from:], '\n')
	if i < 0 {
		return -1
	}
	return from + i + 1
}

// resync skips bytes of b up to the next plausible start line, which may
// begin in the tail kept from the previous call, and returns how many it
// consumed.
func (p *Parser) resync(b []byte) int {
	if len(p.buf) > 0 {
		// The kept tail holds no LF, so a start line beginning there ends
		// at the first LF of b.
		lf := bytes.IndexByte(b, '\n')
		if lf < 0 {
			p.keepTail(b)
			return len(b)
		}
		old := len(p.buf)
		p.buf = append(p.buf, b[:lf+1]...)
		if i := p.indexStart(p.buf); i >= 0 && i < old {
			p.buf = append(p.buf[:0], p.buf[i:]...)
			p.scanned, p.lineStart, p.state = 0, 0, stHead
			return lf + 1
		}
		p.buf = p.buf[:0]
	}
	if i := p.indexStart(b); i >= 0 {
		p.state = stHead
		return i
	}
	p.keepTail(b[bytes.LastIndexByte(b, '\n')+1:])
	return len(b)
}

// keepTail appends b, which holds no LF, to the resync tail and keeps the
// tail about one start line long; trimming only when it is twice that keeps
// byte-at-a-time input linear.
func (p *Parser) keepTail(b []byte) {
	if len(b) >= maxStartLine {
		b = b[len(b)-maxStartLine:]
		p.buf = p.buf[:0]
	}
	p.buf = append(p.buf, b...)
	if len(p.buf) > 2*maxStartLine {
		p.buf = p.buf[:copy(p.buf, p.buf[len(p.buf)-maxStartLine:])]
	}
}

func (p *Parser) indexStart(b []byte) int {
	if p.response {
		return IndexResponseStart(b)
	}
	return IndexRequestStart(b)
}
