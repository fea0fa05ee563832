package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// batch generates a batch of n exchanges with every mix of response
// present or not and parts marked incomplete, bodies and headers around.
func batch(r *rand.Rand, id string, n int) *reprisev1.IngestRequest {
	req := &reprisev1.IngestRequest{BatchId: id, AgentId: "agent-1"}
	for i := range n {
		x := &reprisev1.Exchange{
			Id: fmt.Sprintf("x-%d", i), ConnectionId: "c", Sequence: uint32(i),
			Request: &reprisev1.HttpRequest{Method: "POST", Target: "/upload", Headers: []*reprisev1.Header{{Name: "Host", Value: "h"}},
				Body: []byte(strings.Repeat("b", r.IntN(300)))},
		}
		if r.IntN(4) > 0 {
			x.Response = &reprisev1.HttpResponse{StatusCode: 200}
			if r.IntN(2) == 0 {
				x.Response.Body = []byte(strings.Repeat("r", r.IntN(300)))
			}
		}
		if r.IntN(3) > 0 {
			x.Capture = &reprisev1.Capture{BytesLost: uint64(r.IntN(2)),
				RequestIncomplete: r.IntN(5) == 0, ResponseIncomplete: r.IntN(5) == 0}
		}
		req.Exchanges = append(req.Exchanges, x)
	}
	return req
}

// unmarshalCount counts as the sink did before, from a full unmarshal.
func unmarshalCount(t testing.TB, b []byte) (string, int64, int64) {
	var req reprisev1.IngestRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	var whole int64
	for _, x := range req.Exchanges {
		c := x.GetCapture()
		if x.Response != nil && !c.GetRequestIncomplete() && !c.GetResponseIncomplete() {
			whole++
		}
	}
	return req.BatchId, int64(len(req.Exchanges)), whole
}

func TestCountEqualsUnmarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		b, err := proto.Marshal(batch(r, fmt.Sprintf("batch-%d", i), r.IntN(40)))
		if err != nil {
			t.Fatal(err)
		}
		// A field repeated on the wire merges: the last flag wins.
		if i%7 == 0 {
			more, _ := proto.Marshal(&reprisev1.IngestRequest{BatchId: "last", Exchanges: []*reprisev1.Exchange{
				{Capture: &reprisev1.Capture{RequestIncomplete: true}, Response: &reprisev1.HttpResponse{}},
			}})
			b = append(b, more...)
		}
		id, n, whole, err := count(b)
		if err != nil {
			t.Fatal(err)
		}
		wid, wn, wwhole := unmarshalCount(t, b)
		if id != wid || n != wn || whole != wwhole {
			t.Fatalf("batch %d: count gives %q %d %d, unmarshal %q %d %d", i, id, n, whole, wid, wn, wwhole)
		}
	}
}

func TestCountRejectsGarbage(t *testing.T) {
	b, _ := proto.Marshal(batch(rand.New(rand.NewPCG(3, 4)), "b", 5))
	if _, _, _, err := count(b[:len(b)-3]); err == nil {
		t.Fatal("truncated batch counted without error")
	}
}

// TestSinkOverGRPC sends generated batches to the sink through a real gRPC
// stream and checks its acks and counters against a full unmarshal.
func TestSinkOverGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{}
	srv := newServer(s)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stream, err := reprisev1.NewIngestServiceClient(cc).Ingest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	var wantN, wantWhole int64
	for i := range 20 {
		req := batch(r, fmt.Sprintf("batch-%d", i), 1+r.IntN(50))
		b, _ := proto.Marshal(req)
		_, n, whole := unmarshalCount(t, b)
		wantN, wantWhole = wantN+n, wantWhole+whole
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		ack, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ack.BatchId != req.BatchId || int64(ack.Stored) != n {
			t.Fatalf("ack %v for batch %s of %d", ack, req.BatchId, n)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("after the last batch: %v", err)
	}
	if s.exchanges.Load() != wantN || s.whole.Load() != wantWhole || s.batches.Load() != 20 {
		t.Fatalf("sink counted %d %d %d, want %d %d 20", s.exchanges.Load(), s.whole.Load(), s.batches.Load(), wantN, wantWhole)
	}
}

// BenchmarkCount compares the scan with the full unmarshal it replaces, on
// a batch of 256 small GET exchanges as the agent sends them.
func BenchmarkCount(b *testing.B) {
	req := &reprisev1.IngestRequest{BatchId: "b", AgentId: "a"}
	for i := range 256 {
		req.Exchanges = append(req.Exchanges, &reprisev1.Exchange{
			Id: fmt.Sprintf("019ab1c2-0000-7000-8000-%012d", i), ConnectionId: "4242-7-1", Service: "benchserver:18080",
			Request: &reprisev1.HttpRequest{Method: "GET", Target: "/small", Host: "127.0.0.1:18080", Proto: "HTTP/1.1",
				Headers: []*reprisev1.Header{{Name: "Host", Value: "127.0.0.1:18080"}}},
			Response: &reprisev1.HttpResponse{StatusCode: 200, Proto: "HTTP/1.1", Body: []byte(strings.Repeat("x", 215)),
				Headers: []*reprisev1.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Length", Value: "215"}}},
			Capture: &reprisev1.Capture{},
		})
	}
	raw, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, n, _, _ := count(raw); n != 256 {
				b.Fatal(n)
			}
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, n, _ := unmarshalCount(b, raw); n != 256 {
				b.Fatal(n)
			}
		}
	})
}
