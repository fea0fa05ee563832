package wirecodec

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// The tests run with the codec registered, as the binaries do.
func TestMain(m *testing.M) {
	Register()
	m.Run()
}

func TestRegistered(t *testing.T) {
	if _, ok := encoding.GetCodecV2(Name).(codec); !ok {
		t.Fatalf("codec %q is %T, want wirecodec's", Name, encoding.GetCodecV2(Name))
	}
}

// randString mixes ASCII, multi-byte runes and, sometimes, nothing.
func randString(r *rand.Rand) string {
	const alphabet = "abcXYZ019 -_/:;=\"\\\x00\x7féñ€😀中"
	runes := []rune(alphabet)
	var sb strings.Builder
	for range r.IntN(24) {
		sb.WriteRune(runes[r.IntN(len(runes))])
	}
	return sb.String()
}

func randBytes(r *rand.Rand) []byte {
	if r.IntN(4) == 0 {
		return nil
	}
	b := make([]byte, r.IntN(300))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randHeaders(r *rand.Rand) []*reprisev1.Header {
	var hs []*reprisev1.Header
	for range r.IntN(6) {
		hs = append(hs, &reprisev1.Header{Name: randString(r), Value: randString(r)})
	}
	return hs
}

// randExchange sets each field, or leaves it at its zero value, at random.
func randExchange(r *rand.Rand) *reprisev1.Exchange {
	s, u32 := func() string { return randString(r) }, func() uint32 { return r.Uint32() >> r.IntN(32) }
	x := &reprisev1.Exchange{Id: s(), Service: s(), ConnectionId: s(), Sequence: u32(),
		Direction: reprisev1.Direction(r.IntN(4))}
	if r.IntN(3) > 0 {
		x.StartTime = &timestamppb.Timestamp{Seconds: r.Int64() >> r.IntN(64), Nanos: int32(r.IntN(1e9))}
		x.Duration = &durationpb.Duration{Seconds: r.Int64N(1000) - 10, Nanos: int32(r.IntN(1e9))}
		x.Local = &reprisev1.Endpoint{Ip: s(), Port: u32()}
		x.Remote = &reprisev1.Endpoint{Ip: s()}
	}
	if r.IntN(3) > 0 {
		x.Process = &reprisev1.Process{Pid: u32(), Tid: u32(), Comm: s(), Exe: s(), CgroupId: r.Uint64() >> r.IntN(64),
			ContainerId: s(), PodName: s(), PodNamespace: s(), PodUid: s(), ContainerName: s()}
		for range r.IntN(4) {
			if x.Process.Labels == nil {
				x.Process.Labels = map[string]string{}
			}
			x.Process.Labels[s()] = s()
		}
	}
	if r.IntN(4) > 0 {
		x.Request = &reprisev1.HttpRequest{Method: s(), Target: s(), Host: s(), Proto: s(), Headers: randHeaders(r),
			Body: randBytes(r), BodyTruncated: r.IntN(2) == 0, BodySize: r.Int64() >> r.IntN(64) * int64(1-2*r.IntN(2))}
	}
	if r.IntN(4) > 0 {
		x.Response = &reprisev1.HttpResponse{StatusCode: int32(r.Uint32()), Proto: s(), Headers: randHeaders(r),
			Body: randBytes(r), BodyTruncated: r.IntN(2) == 0, BodySize: r.Int64N(1 << 40)}
	}
	for range r.IntN(3) {
		x.Redactions = append(x.Redactions, &reprisev1.Redaction{Location: s(), Rule: s(), Action: s()})
	}
	if r.IntN(2) > 0 {
		x.Capture = &reprisev1.Capture{AgentId: s(), Source: reprisev1.CaptureSource(r.IntN(5)), Hostname: s(),
			BytesLost: r.Uint64() >> r.IntN(64), RequestIncomplete: r.IntN(2) == 0, ResponseStreaming: r.IntN(2) == 0}
	}
	return x
}

// withUnknown returns m as read back with fields its schema lacks appended,
// as a newer peer would send them: unknown to both decoders, kept by both.
func withUnknown(t *testing.T, r *rand.Rand, m *reprisev1.Exchange) *reprisev1.Exchange {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	b = protowire.AppendTag(b, protowire.Number(100+r.IntN(1000)), protowire.BytesType)
	b = protowire.AppendBytes(b, randBytes(r))
	b = protowire.AppendTag(b, 15, protowire.VarintType)
	b = protowire.AppendVarint(b, r.Uint64())
	b = protowire.AppendTag(b, 99, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, r.Uint64())
	out := &reprisev1.Exchange{}
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	if len(out.ProtoReflect().GetUnknown()) == 0 {
		t.Fatal("no unknown fields kept")
	}
	return out
}

// TestInteroperates: what one side writes, the other reads back equal.
func TestInteroperates(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		want := randExchange(r)
		if i%3 == 0 {
			want = withUnknown(t, r, want)
		}
		vt, err := Append([]byte("prefix"), want)
		if err != nil {
			t.Fatal(err)
		}
		if string(vt[:6]) != "prefix" {
			t.Fatalf("Append overwrote what was before: %q", vt[:6])
		}
		vt = vt[6:]
		if n := proto.Size(want); len(vt) != n {
			t.Fatalf("exchange %d: %d bytes, protobuf-go says %d", i, len(vt), n)
		}
		got := &reprisev1.Exchange{}
		if err := proto.Unmarshal(vt, got); err != nil {
			t.Fatalf("exchange %d: protobuf-go cannot read the VT form: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("exchange %d: VT → protobuf-go changed it:\n got %v\nwant %v", i, got, want)
		}
		std, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got = &reprisev1.Exchange{Id: "stale", Sequence: 7} // Unmarshal resets
		if err := Unmarshal(std, got); err != nil {
			t.Fatalf("exchange %d: VT cannot read the protobuf-go form: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("exchange %d: protobuf-go → VT changed it:\n got %v\nwant %v", i, got, want)
		}
	}
}

// TestInvalidUTF8 checks that strings are held to protobuf-go's rule both
// ways, at any depth, and that bytes fields are not.
func TestInvalidUTF8(t *testing.T) {
	bad := "caf\xe9"
	for name, m := range map[string]proto.Message{
		"top":      &reprisev1.Exchange{Id: bad},
		"header":   &reprisev1.Exchange{Response: &reprisev1.HttpResponse{Headers: []*reprisev1.Header{{Name: "A"}, {Name: "B", Value: bad}}}},
		"map key":  &reprisev1.Exchange{Process: &reprisev1.Process{Labels: map[string]string{bad: "v"}}},
		"map val":  &reprisev1.Exchange{Process: &reprisev1.Process{Labels: map[string]string{"k": bad}}},
		"in batch": &reprisev1.IngestRequest{Exchanges: []*reprisev1.Exchange{{Id: "ok"}, {Capture: &reprisev1.Capture{Hostname: bad}}}},
	} {
		if _, err := proto.Marshal(m); err == nil {
			t.Fatalf("%s: protobuf-go marshals it: the test is wrong", name)
		}
		_, err := Append(nil, m)
		if err == nil || !strings.Contains(err.Error(), "invalid UTF-8") {
			t.Errorf("%s: Append: %v, want invalid UTF-8", name, err)
		}
		// The same bytes from a peer that does not check: the generated
		// code alone.
		raw, err := m.(interface{ MarshalVT() ([]byte, error) }).MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		if err := Unmarshal(raw, m.ProtoReflect().New().Interface()); err == nil || !strings.Contains(err.Error(), "invalid UTF-8") {
			t.Errorf("%s: Unmarshal: %v, want invalid UTF-8", name, err)
		}
	}
	ok := &reprisev1.Exchange{Request: &reprisev1.HttpRequest{Body: []byte(bad)}}
	b, err := Append(nil, ok)
	if err != nil {
		t.Fatalf("invalid UTF-8 in a bytes field: %v", err)
	}
	if err := Unmarshal(b, &reprisev1.Exchange{}); err != nil {
		t.Fatalf("invalid UTF-8 in a bytes field: %v", err)
	}
}

// FuzzUnmarshal holds the codec to protobuf-go on arbitrary bytes: what it
// accepts, protobuf-go accepts and reads the same.
func FuzzUnmarshal(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		b, _ := proto.Marshal(randExchange(r))
		f.Add(b)
	}
	f.Add([]byte("\x0a\x02\xc3\x28"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := &reprisev1.Exchange{}
		if err := Unmarshal(b, got); err != nil {
			return
		}
		want := &reprisev1.Exchange{}
		if err := proto.Unmarshal(b, want); err != nil {
			t.Fatalf("codec accepts what protobuf-go refuses (%v)", err)
		}
		// vtprotobuf's code for the well-known types skips their unknown
		// fields: the only known difference.
		for _, wkt := range []proto.Message{want.GetStartTime(), want.GetDuration()} {
			if wkt.ProtoReflect().IsValid() {
				wkt.ProtoReflect().SetUnknown(nil)
			}
		}
		normalizeUnknown(got.ProtoReflect())
		normalizeUnknown(want.ProtoReflect())
		if !proto.Equal(got, want) {
			t.Fatalf("decoders disagree:\n codec %v\nprotobuf-go %v", got, want)
		}
		if _, err := Append(nil, got); err != nil {
			t.Fatalf("cannot marshal what was read: %v", err)
		}
	})
}

// normalizeUnknown rewrites the tags of m's unknown fields, at every depth,
// in their shortest form: protobuf-go does so when it reads them, the
// generated code keeps them as they came, and both mean the same.
func normalizeUnknown(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				normalizeUnknown(v.List().Get(i).Message())
			}
		case fd.Message() != nil:
			normalizeUnknown(v.Message())
		}
		return true
	})
	var out []byte
	for b := m.GetUnknown(); len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		l := protowire.ConsumeFieldValue(num, typ, b[n:])
		out = append(protowire.AppendTag(out, num, typ), b[n:n+l]...)
		b = b[n+l:]
	}
	m.SetUnknown(out)
}

// ingest keeps what it receives and acknowledges each batch.
type ingest struct {
	reprisev1.UnimplementedIngestServiceServer
	got chan *reprisev1.IngestRequest
}

func (s *ingest) Ingest(stream reprisev1.IngestService_IngestServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		s.got <- req
		if err := stream.Send(&reprisev1.IngestResponse{BatchId: req.GetBatchId(), Stored: uint32(len(req.GetExchanges()))}); err != nil {
			return err
		}
	}
}

// TestGRPC sends batches over a real gRPC connection between a client
// using gRPC's stock protobuf-go codec and a server using this one, both
// ways round, large enough to take pooled buffers.
func TestGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	svc := &ingest{got: make(chan *reprisev1.IngestRequest, 1)}
	reprisev1.RegisterIngestServiceServer(srv, svc)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range []encoding.CodecV2{fallback(), codec{}} {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(c)))
		if err != nil {
			t.Fatal(err)
		}
		stream, err := reprisev1.NewIngestServiceClient(conn).Ingest(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{1, 400} {
			req := &reprisev1.IngestRequest{BatchId: randString(r), AgentId: "agent"}
			for range n {
				req.Exchanges = append(req.Exchanges, randExchange(r))
			}
			if err := stream.Send(req); err != nil {
				t.Fatal(err)
			}
			if got := <-svc.got; !proto.Equal(got, req) {
				t.Fatalf("%T client, %d exchanges: the server read something else", c, n)
			}
			ack, err := stream.Recv()
			if err != nil || ack.GetBatchId() != req.GetBatchId() || ack.GetStored() != uint32(n) {
				t.Fatalf("%T client: ack %v, %v", c, ack, err)
			}
		}
		bad := &reprisev1.IngestRequest{Exchanges: []*reprisev1.Exchange{{Id: "\xff"}}}
		if err := stream.Send(bad); err == nil || !strings.Contains(err.Error(), "invalid UTF-8") {
			t.Fatalf("%T client sent invalid UTF-8: %v", c, err)
		}
		conn.Close()
	}
}

// A message the codec marshals to more than the pooling threshold comes
// back whole through Unmarshal, split over several buffers as gRPC may
// hand them.
func TestCodecBuffers(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	req := &reprisev1.IngestRequest{BatchId: "b"}
	for range 200 {
		req.Exchanges = append(req.Exchanges, randExchange(r))
	}
	data, err := codec{}.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Free()
	if mem.IsBelowBufferPoolingThreshold(data.Len()) {
		t.Fatalf("%d bytes do not exercise the pool", data.Len())
	}
	b := data.Materialize()
	split := mem.BufferSlice{mem.SliceBuffer(b[:len(b)/3]), mem.SliceBuffer(b[len(b)/3:])}
	got := &reprisev1.IngestRequest{}
	if err := (codec{}).Unmarshal(split, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, req) {
		t.Fatal("batch changed on the way")
	}
}
