package exchfile

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/internal/contentcoding"
	"github.com/reprise-dev/reprise/internal/header"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// maxDecoded bounds a body decoded for HAR's content.text.
const maxDecoded = 64 << 20

// HAR 1.2 entry, with reprise's own fields prefixed by "_" as the spec
// allows, so an import gives back the exchange.
type harEntry struct {
	StartedDateTime string          `json:"startedDateTime"`
	Time            float64         `json:"time"`
	Request         harRequest      `json:"request"`
	Response        harResponse     `json:"response"`
	Cache           struct{}        `json:"cache"`
	Timings         harTimings      `json:"timings"`
	ServerIPAddress string          `json:"serverIPAddress,omitempty"`
	Connection      string          `json:"connection,omitempty"`
	ID              string          `json:"_id"`
	Direction       string          `json:"_direction"`
	Redactions      []harRedact     `json:"_redactions"`
	Service         string          `json:"_service,omitempty"`
	Sequence        uint32          `json:"_sequence"`
	Local           *harEndpoint    `json:"_local,omitempty"`
	Remote          *harEndpoint    `json:"_remote,omitempty"`
	Process         json.RawMessage `json:"_process,omitempty"`
	Capture         json.RawMessage `json:"_capture,omitempty"`
}

type harRequest struct {
	Method      string       `json:"method"`
	URL         string       `json:"url"`
	HTTPVersion string       `json:"httpVersion"`
	Cookies     []harNV      `json:"cookies"`
	Headers     []harNV      `json:"headers"`
	QueryString []harNV      `json:"queryString"`
	PostData    *harPostData `json:"postData,omitempty"`
	HeadersSize int          `json:"headersSize"`
	BodySize    int64        `json:"bodySize"`
	// The request-target as sent; url is its absolute form.
	Target        string `json:"_target"`
	BodyTruncated bool   `json:"_bodyTruncated,omitempty"`
	// Content-Encoding was undone for postData.text.
	Decoded bool `json:"_decoded,omitempty"`
}

type harResponse struct {
	Status        int        `json:"status"`
	StatusText    string     `json:"statusText"`
	HTTPVersion   string     `json:"httpVersion"`
	Cookies       []harNV    `json:"cookies"`
	Headers       []harNV    `json:"headers"`
	Content       harContent `json:"content"`
	RedirectURL   string     `json:"redirectURL"`
	HeadersSize   int        `json:"headersSize"`
	BodySize      int64      `json:"bodySize"`
	BodyTruncated bool       `json:"_bodyTruncated,omitempty"`
	Decoded       bool       `json:"_decoded,omitempty"`
	// No response was captured (HAR requires the object).
	Missing bool `json:"_missing,omitempty"`
}

type harNV struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type harPostData struct {
	MimeType string `json:"mimeType"`
	Text     string `json:"text"`
	Encoding string `json:"encoding,omitempty"`
}

type harContent struct {
	Size     int64  `json:"size"`
	MimeType string `json:"mimeType"`
	Text     string `json:"text,omitempty"`
	Encoding string `json:"encoding,omitempty"`
}

type harTimings struct {
	Send    float64 `json:"send"`
	Wait    float64 `json:"wait"`
	Receive float64 `json:"receive"`
}

type harRedact struct {
	Location string `json:"location"`
	Rule     string `json:"rule"`
	Action   string `json:"action"`
}

type harEndpoint struct {
	IP   string `json:"ip"`
	Port uint32 `json:"port"`
}

type harWriter struct {
	w       *bufio.Writer
	entries int
}

func newHARWriter(w io.Writer) *harWriter {
	bw := bufio.NewWriter(w)
	bw.WriteString(`{"log":{"version":"1.2","creator":{"name":"reprise","version":"1"},"entries":[`)
	return &harWriter{w: bw}
}

func (h *harWriter) Write(ex *reprisev1.Exchange) error {
	entry, err := toHAR(ex)
	if err != nil {
		return err
	}
	b, err := json.Marshal(entry)
	if err != nil {
		return fmt.Errorf("encode exchange %s: %w", ex.GetId(), err)
	}
	if h.entries > 0 {
		h.w.WriteByte(',')
	}
	h.entries++
	h.w.WriteString("\n")
	_, err = h.w.Write(b)
	return err
}

func (h *harWriter) Close() error {
	h.w.WriteString("\n]}}\n")
	return h.w.Flush()
}

func toHAR(ex *reprisev1.Exchange) (*harEntry, error) {
	req, resp := ex.GetRequest(), ex.GetResponse()
	e := &harEntry{
		StartedDateTime: ex.GetStartTime().AsTime().Format(time.RFC3339Nano),
		Time:            millis(ex.GetDuration().AsDuration()),
		Timings:         harTimings{Wait: millis(ex.GetDuration().AsDuration())},
		Connection:      ex.GetConnectionId(),
		ID:              ex.GetId(),
		Direction:       ex.GetDirection().String(),
		Redactions:      []harRedact{},
		Service:         ex.GetService(),
		Sequence:        ex.GetSequence(),
		Local:           endpoint(ex.GetLocal()),
		Remote:          endpoint(ex.GetRemote()),
	}
	if ex.GetDirection() == reprisev1.Direction_DIRECTION_OUTBOUND {
		e.ServerIPAddress = ex.GetRemote().GetIp()
	} else {
		e.ServerIPAddress = ex.GetLocal().GetIp()
	}
	for _, r := range ex.GetRedactions() {
		e.Redactions = append(e.Redactions, harRedact{Location: r.Location, Rule: r.Rule, Action: r.Action})
	}
	var err error
	if ex.Process != nil {
		if e.Process, err = protojson.Marshal(ex.Process); err != nil {
			return nil, fmt.Errorf("encode process: %w", err)
		}
	}
	if ex.Capture != nil {
		if e.Capture, err = protojson.Marshal(ex.Capture); err != nil {
			return nil, fmt.Errorf("encode capture: %w", err)
		}
	}

	e.Request = harRequest{
		Method: req.GetMethod(), URL: absoluteURL(ex), HTTPVersion: req.GetProto(),
		Cookies: []harNV{}, Headers: nvs(req.GetHeaders()), QueryString: query(req.GetTarget()),
		HeadersSize: -1, BodySize: req.GetBodySize(), Target: req.GetTarget(), BodyTruncated: req.GetBodyTruncated(),
	}
	if len(req.GetBody()) > 0 {
		text, enc, decoded := content(req.GetBody(), req.GetHeaders(), req.GetBodyTruncated())
		e.Request.PostData = &harPostData{MimeType: header.Get(req.GetHeaders(), "Content-Type"), Text: text, Encoding: enc}
		e.Request.Decoded = decoded
	}
	if resp == nil {
		e.Response = harResponse{Cookies: []harNV{}, Headers: []harNV{}, HeadersSize: -1, BodySize: -1, Missing: true}
		return e, nil
	}
	text, enc, decoded := content(resp.GetBody(), resp.GetHeaders(), resp.GetBodyTruncated())
	e.Response = harResponse{
		Status: int(resp.GetStatusCode()), HTTPVersion: resp.GetProto(), Cookies: []harNV{},
		Headers: nvs(resp.GetHeaders()), RedirectURL: header.Get(resp.GetHeaders(), "Location"),
		Content:     harContent{Size: int64(len(resp.GetBody())), MimeType: header.Get(resp.GetHeaders(), "Content-Type"), Text: text, Encoding: enc},
		HeadersSize: -1, BodySize: resp.GetBodySize(), BodyTruncated: resp.GetBodyTruncated(), Decoded: decoded,
	}
	if decoded {
		e.Response.Content.Size = int64(len(text))
		if enc == "base64" {
			e.Response.Content.Size = int64(base64.StdEncoding.DecodedLen(len(text)))
		}
	}
	return e, nil
}

// content is a body as HAR wants it: decoded when it carries a
// Content-Encoding (decoded reports that), as text when it is UTF-8 and
// base64 otherwise.
func content(body []byte, headers []*reprisev1.Header, truncated bool) (text, encoding string, decoded bool) {
	if ce := header.Get(headers, "Content-Encoding"); contentcoding.Encoded(ce) {
		if plain, err := contentcoding.Decode(body, ce, maxDecoded, truncated); err == nil {
			body, decoded = plain, true
		}
	}
	if utf8.Valid(body) {
		return string(body), "", decoded
	}
	return base64.StdEncoding.EncodeToString(body), "base64", decoded
}

func absoluteURL(ex *reprisev1.Exchange) string {
	target := ex.GetRequest().GetTarget()
	if strings.Contains(target, "://") {
		return target
	}
	scheme := "http"
	if ex.GetCapture().GetSource() == reprisev1.CaptureSource_CAPTURE_SOURCE_TLS_UPROBE {
		scheme = "https"
	}
	host := ex.GetRequest().GetHost()
	if host == "" && ex.GetDirection() == reprisev1.Direction_DIRECTION_OUTBOUND {
		host = fmt.Sprintf("%s:%d", ex.GetRemote().GetIp(), ex.GetRemote().GetPort())
	} else if host == "" {
		host = fmt.Sprintf("%s:%d", ex.GetLocal().GetIp(), ex.GetLocal().GetPort())
	}
	return scheme + "://" + host + target
}

func query(target string) []harNV {
	out := []harNV{}
	_, q, ok := strings.Cut(target, "?")
	if !ok {
		return out
	}
	q, _, _ = strings.Cut(q, "#")
	for _, pair := range strings.Split(q, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		ku, err1 := url.QueryUnescape(k)
		vu, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			ku, vu = k, v
		}
		out = append(out, harNV{Name: ku, Value: vu})
	}
	return out
}

func nvs(hs []*reprisev1.Header) []harNV {
	out := make([]harNV, len(hs))
	for i, h := range hs {
		out[i] = harNV{Name: h.Name, Value: h.Value}
	}
	return out
}

func endpoint(e *reprisev1.Endpoint) *harEndpoint {
	if e == nil {
		return nil
	}
	return &harEndpoint{IP: e.Ip, Port: e.Port}
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func readHAR(r io.Reader) iter.Seq2[*reprisev1.Exchange, error] {
	return func(yield func(*reprisev1.Exchange, error) bool) {
		dec := json.NewDecoder(r)
		if err := enterEntries(dec); err != nil {
			yield(nil, fmt.Errorf("read HAR: %w", err))
			return
		}
		for i := 0; dec.More(); i++ {
			var e harEntry
			if err := dec.Decode(&e); err != nil {
				yield(nil, fmt.Errorf("HAR entry %d: %w", i, err))
				return
			}
			ex, err := fromHAR(&e)
			if err != nil {
				err = fmt.Errorf("HAR entry %d: %w", i, err)
			}
			if !yield(ex, err) || err != nil {
				return
			}
		}
	}
}

// enterEntries moves dec to the first element of log.entries, so entries
// are decoded one at a time rather than the whole file at once.
func enterEntries(dec *json.Decoder) error {
	for _, key := range []string{"log", "entries"} {
		if t, err := dec.Token(); err != nil || t != json.Delim('{') {
			return fmt.Errorf("want an object holding %q", key)
		}
		for {
			t, err := dec.Token()
			if err != nil {
				return err
			}
			if t == json.Delim('}') {
				return fmt.Errorf("no %q", key)
			}
			if t == key {
				break
			}
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return err
			}
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return fmt.Errorf("entries is not an array")
	}
	return nil
}

func fromHAR(e *harEntry) (*reprisev1.Exchange, error) {
	ex := &reprisev1.Exchange{
		Id: e.ID, Service: e.Service, ConnectionId: e.Connection, Sequence: e.Sequence,
		Duration: durationpb.New(time.Duration(e.Time * float64(time.Millisecond))),
	}
	start, err := time.Parse(time.RFC3339Nano, e.StartedDateTime)
	if err != nil {
		return nil, fmt.Errorf("startedDateTime: %w", err)
	}
	ex.StartTime = timestamppb.New(start)
	if d, ok := reprisev1.Direction_value[e.Direction]; ok {
		ex.Direction = reprisev1.Direction(d)
	} else if e.Direction != "" {
		return nil, fmt.Errorf("_direction %q is not a direction", e.Direction)
	}
	for _, r := range e.Redactions {
		ex.Redactions = append(ex.Redactions, &reprisev1.Redaction{Location: r.Location, Rule: r.Rule, Action: r.Action})
	}
	if e.Local != nil {
		ex.Local = &reprisev1.Endpoint{Ip: e.Local.IP, Port: e.Local.Port}
	}
	if e.Remote != nil {
		ex.Remote = &reprisev1.Endpoint{Ip: e.Remote.IP, Port: e.Remote.Port}
	}
	if len(e.Process) > 0 {
		ex.Process = &reprisev1.Process{}
		if err := protojson.Unmarshal(e.Process, ex.Process); err != nil {
			return nil, fmt.Errorf("_process: %w", err)
		}
	}
	if len(e.Capture) > 0 {
		ex.Capture = &reprisev1.Capture{}
		if err := protojson.Unmarshal(e.Capture, ex.Capture); err != nil {
			return nil, fmt.Errorf("_capture: %w", err)
		}
	}

	target := e.Request.Target
	if target == "" {
		u, err := url.Parse(e.Request.URL)
		if err != nil {
			return nil, fmt.Errorf("request url: %w", err)
		}
		target = u.RequestURI()
	}
	req := &reprisev1.HttpRequest{
		Method: e.Request.Method, Target: target, Proto: e.Request.HTTPVersion,
		BodySize: e.Request.BodySize, BodyTruncated: e.Request.BodyTruncated,
	}
	if e.Request.PostData != nil {
		if req.Body, err = body(e.Request.PostData.Text, e.Request.PostData.Encoding); err != nil {
			return nil, fmt.Errorf("request postData: %w", err)
		}
	}
	req.Headers = headers(e.Request.Headers, e.Request.Decoded, len(req.Body))
	req.Host = header.Get(req.Headers, "Host")
	if e.Request.Decoded || req.BodySize < 0 {
		req.BodySize = int64(len(req.Body))
	}
	ex.Request = req
	if e.Response.Missing {
		return ex, nil
	}
	resp := &reprisev1.HttpResponse{
		StatusCode: int32(e.Response.Status), Proto: e.Response.HTTPVersion,
		BodySize: e.Response.BodySize, BodyTruncated: e.Response.BodyTruncated,
	}
	if resp.Body, err = body(e.Response.Content.Text, e.Response.Content.Encoding); err != nil {
		return nil, fmt.Errorf("response content: %w", err)
	}
	resp.Headers = headers(e.Response.Headers, e.Response.Decoded, len(resp.Body))
	if e.Response.Decoded || resp.BodySize < 0 {
		resp.BodySize = int64(len(resp.Body))
	}
	ex.Response = resp
	return ex, nil
}

// headers converts HAR headers back. When the body was decoded for the
// HAR, Content-Encoding no longer applies and Content-Length becomes the
// decoded length.
func headers(in []harNV, decoded bool, bodyLen int) []*reprisev1.Header {
	out := make([]*reprisev1.Header, 0, len(in))
	for _, h := range in {
		switch {
		case decoded && strings.EqualFold(h.Name, "Content-Encoding"):
			continue
		case decoded && strings.EqualFold(h.Name, "Content-Length"):
			h.Value = strconv.Itoa(bodyLen)
		}
		out = append(out, &reprisev1.Header{Name: h.Name, Value: h.Value})
	}
	return out
}

func body(text, encoding string) ([]byte, error) {
	switch encoding {
	case "":
		return []byte(text), nil
	case "base64":
		return base64.StdEncoding.DecodeString(text)
	}
	return nil, fmt.Errorf("unknown encoding %q", encoding)
}
