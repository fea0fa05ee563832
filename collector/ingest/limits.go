package ingest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/reprise-dev/reprise/internal/contentcoding"
	"github.com/reprise-dev/reprise/internal/grpcclient"
	"github.com/reprise-dev/reprise/internal/header"
	"github.com/reprise-dev/reprise/internal/sanitize"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Limits bound what ingest holds, so no sender can take the collector's
// memory or goroutines; zero fields take the defaults below.
type Limits struct {
	// Memory bounds the bytes of all batches in work at once, process-wide:
	// decoded, sanitized and waiting for their commit. BatchDecoded of it is
	// the room for decoding bodies, shared by all batches; the rest is for
	// the messages. A batch waits for its share before it is decoded from
	// the wire and again before it is sanitized; the stream reads nothing
	// meanwhile.
	Memory int64
	// BatchDecoded bounds the bytes one batch may decode compressed bodies
	// to. Once a batch has used it, its further compressed bodies are
	// removed undecoded, with a redaction saying why.
	BatchDecoded int64
	// BodyDecoded is the most one body decodes to: the sanitizer's
	// limits.max_body_bytes.
	BodyDecoded int64
	// Streams bounds the ingest streams open at once; AgentStreams those of
	// one agent authenticated by the agents file.
	Streams, AgentStreams int
	// Idle closes a stream that received no batch for this long.
	Idle time.Duration
}

// The defaults of Limits. DefaultBodyDecoded is the sanitizer's default
// max_body_bytes.
const (
	DefaultMemory       = 160 << 20
	DefaultBatchDecoded = 64 << 20
	DefaultBodyDecoded  = 16 << 20
	DefaultStreams      = 256
	DefaultAgentStreams = 4
	DefaultIdle         = 5 * time.Minute
)

// decodeFactor is the memory one decode takes per byte of its limit: the
// decoded bytes, grown by doubling, then the sanitizer's rewritten copy.
const decodeFactor = 2

// withDefaults fills the zero fields.
func (l Limits) withDefaults() Limits {
	set := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&l.Memory, DefaultMemory)
	set(&l.BatchDecoded, DefaultBatchDecoded)
	set(&l.BodyDecoded, DefaultBodyDecoded)
	if l.Streams <= 0 {
		l.Streams = DefaultStreams
	}
	if l.AgentStreams <= 0 {
		l.AgentStreams = DefaultAgentStreams
	}
	if l.Idle <= 0 {
		l.Idle = DefaultIdle
	}
	return l
}

// Check reports limits that cannot work together: a batch must be able to
// decode one body, and the largest message must fit in what Memory leaves
// beside the decode room.
func (l Limits) Check() error {
	l = l.withDefaults()
	if l.BatchDecoded < decodeFactor*l.BodyDecoded {
		return fmt.Errorf("the batch decode memory (%d bytes) must hold %d times the largest body (%d bytes)", l.BatchDecoded, decodeFactor, l.BodyDecoded)
	}
	if need := wireFactor*grpcclient.MaxMessageBytes + l.BatchDecoded; l.Memory < need {
		return fmt.Errorf("the ingest memory (%d bytes) must hold the largest batch and the decode room: %d bytes (%d times the %d-byte message limit and the batch decode memory)", l.Memory, need, wireFactor, grpcclient.MaxMessageBytes)
	}
	return nil
}

// wireFactor is the memory a batch takes per byte of its message until its
// ack: the message, the sanitized exchanges that replace it, and the
// store's encoded rows.
const wireFactor = 3

// wireCost is what a batch holds of the message part of Limits.Memory.
func wireCost(wireBytes int) int64 { return wireFactor * int64(wireBytes) }

// decodeCost is the decode room a batch takes before it is sanitized: the
// worst case of its compressed bodies, at most BatchDecoded.
func (l Limits) decodeCost(req *reprisev1.IngestRequest) int64 {
	n := int64(0)
	for _, ex := range req.GetExchanges() {
		n += int64(encodedBodies(ex))
	}
	return min(l.BatchDecoded, n*decodeFactor*l.BodyDecoded)
}

// compressed reports whether the sanitizer will decode a body: compressed
// by its Content-Encoding or, whatever the header says, by its bytes.
func compressed(body []byte, hs []*reprisev1.Header) bool {
	return len(body) > 0 && (contentcoding.Encoded(header.Combined(hs, "Content-Encoding")) || contentcoding.Sniff(body) != "")
}

// encodedBodies counts the exchange's bodies that the sanitizer will decode.
func encodedBodies(ex *reprisev1.Exchange) int {
	n := 0
	if r := ex.GetRequest(); compressed(r.GetBody(), r.GetHeaders()) {
		n++
	}
	if r := ex.GetResponse(); compressed(r.GetBody(), r.GetHeaders()) {
		n++
	}
	return n
}

// bodyBytes is the size of the exchange's bodies.
func bodyBytes(ex *reprisev1.Exchange) int64 {
	return int64(len(ex.GetRequest().GetBody()) + len(ex.GetResponse().GetBody()))
}

// decodeBudget is what is left of one batch's decode room; the sanitizing
// workers of the batch share it.
type decodeBudget struct{ left atomic.Int64 }

// take reserves n bytes, or reports false when fewer are left.
func (b *decodeBudget) take(n int64) bool {
	for {
		left := b.left.Load()
		if left < n {
			return false
		}
		if b.left.CompareAndSwap(left, left-n) {
			return true
		}
	}
}

func (b *decodeBudget) give(n int64) { b.left.Add(n) }

// RuleBatchMemory is the rule of the redaction on a compressed body removed
// undecoded because its batch had used its decode memory.
const RuleBatchMemory = "ingest-batch-memory"

// shedBodies removes the exchange's compressed bodies without decoding them and
// returns the redactions that say so.
func shedBodies(ex *reprisev1.Exchange) []*reprisev1.Redaction {
	var out []*reprisev1.Redaction
	if r := ex.GetRequest(); compressed(r.GetBody(), r.GetHeaders()) {
		r.Body, r.BodySize = nil, 0
		out = append(out, &reprisev1.Redaction{Location: "request.body", Rule: RuleBatchMemory, Action: sanitize.ActionRemove})
	}
	if r := ex.GetResponse(); compressed(r.GetBody(), r.GetHeaders()) {
		r.Body, r.BodySize = nil, 0
		out = append(out, &reprisev1.Redaction{Location: "response.body", Rule: RuleBatchMemory, Action: sanitize.ActionRemove})
	}
	return out
}

// streams counts the open ingest streams, in all and per agent.
type streams struct {
	mu      sync.Mutex
	open    int
	byAgent map[string]int
}

// acquire opens a stream of agent ("" when not authenticated as one), or
// returns the ResourceExhausted status and the metric reason.
func (s *streams) acquire(l Limits, agent string) (reason string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open >= l.Streams {
		return "streams", status.Errorf(codes.ResourceExhausted, "%d ingest streams are open, the most this collector takes; retry later", s.open)
	}
	if agent != "" && s.byAgent[agent] >= l.AgentStreams {
		return "agent_streams", status.Errorf(codes.ResourceExhausted, "agent %q has %d ingest streams open, the most one agent may", agent, s.byAgent[agent])
	}
	s.open++
	if agent != "" {
		if s.byAgent == nil {
			s.byAgent = map[string]int{}
		}
		s.byAgent[agent]++
	}
	return "", nil
}

func (s *streams) release(agent string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open--
	if agent != "" {
		if s.byAgent[agent]--; s.byAgent[agent] == 0 {
			delete(s.byAgent, agent)
		}
	}
}
