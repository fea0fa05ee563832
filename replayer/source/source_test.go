package source

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/internal/exchfile"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

var t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

func recorded() []*reprisev1.Exchange {
	ex := func(id, service string, dir reprisev1.Direction, method, target, host string, status int32, agent string, sec int) *reprisev1.Exchange {
		return &reprisev1.Exchange{
			Id: id, Service: service, Direction: dir, StartTime: timestamppb.New(t0.Add(time.Duration(sec) * time.Second)),
			ConnectionId: "c-" + id,
			Request:      &reprisev1.HttpRequest{Method: method, Target: target, Host: host, Proto: "HTTP/1.1", Headers: []*reprisev1.Header{{Name: "Host", Value: host}, {Name: "Accept", Value: "*/*"}}},
			Response:     &reprisev1.HttpResponse{StatusCode: status, Proto: "HTTP/1.1", Body: []byte(`{"ok":true}`), BodySize: 11},
			Capture:      &reprisev1.Capture{AgentId: agent},
		}
	}
	in, out := reprisev1.Direction_DIRECTION_INBOUND, reprisev1.Direction_DIRECTION_OUTBOUND
	return []*reprisev1.Exchange{
		ex("1", "orders", in, "GET", "/api/orders?page=1", "orders.prod", 200, "a1", 0),
		ex("2", "orders", in, "POST", "/api/orders", "orders.prod", 201, "a1", 1),
		ex("3", "orders", out, "POST", "/v1/charges", "pay.example", 200, "a1", 2),
		ex("4", "billing", in, "GET", "/api/invoices/7", "billing.prod:8080", 404, "a2", 3),
		ex("5", "orders", in, "GET", "http://orders.prod/api/orders/3", "orders.prod", 200, "a2", 4),
	}
}

// cases are filters with the ids they select, meant the same way by the
// collector and by a file.
var cases = []struct {
	name   string
	filter *reprisev1.ExchangeFilter
	limit  int
	want   string
}{
	{"all", nil, 0, "1 2 3 4 5"},
	{"limit", nil, 2, "1 2"},
	{"inbound orders", &reprisev1.ExchangeFilter{Service: "orders", Direction: reprisev1.Direction_DIRECTION_INBOUND}, 0, "1 2 5"},
	{"method", &reprisev1.ExchangeFilter{Method: "POST"}, 0, "2 3"},
	{"path prefix, absolute form too", &reprisev1.ExchangeFilter{PathPrefix: "/api/orders"}, 0, "1 2 5"},
	{"status", &reprisev1.ExchangeFilter{StatusCode: 404}, 0, "4"},
	{"status class", &reprisev1.ExchangeFilter{StatusClass: 2}, 0, "1 2 3 5"},
	{"path glob crosses slashes, absolute form too", &reprisev1.ExchangeFilter{PathGlob: "/api/*s/[0-9]"}, 0, "4 5"},
	{"host", &reprisev1.ExchangeFilter{Host: "billing.prod:8080"}, 0, "4"},
	{"agent", &reprisev1.ExchangeFilter{AgentId: "a2"}, 0, "4 5"},
	{"time window", &reprisev1.ExchangeFilter{StartTime: timestamppb.New(t0.Add(time.Second)), EndTime: timestamppb.New(t0.Add(3 * time.Second))}, 0, "2 3"},
	{"filter and limit", &reprisev1.ExchangeFilter{Service: "orders"}, 2, "1 2"},
}

func ids(t *testing.T, s Spec) string {
	t.Helper()
	seq, err := Open(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for ex, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ex.GetId())
	}
	return strings.Join(out, " ")
}

func TestFiles(t *testing.T) {
	for _, format := range []exchfile.Format{exchfile.JSONL, exchfile.HAR} {
		path := filepath.Join(t.TempDir(), "recording."+string(format))
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w := exchfile.NewWriter(f, format)
		for _, ex := range recorded() {
			if err := w.Write(ex); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		for _, tc := range cases {
			t.Run(string(format)+" "+tc.name, func(t *testing.T) {
				if got := ids(t, Spec{File: path, Filter: tc.filter, Limit: tc.limit}); got != tc.want {
					t.Errorf("selected %q, want %q", got, tc.want)
				}
			})
		}
	}
}

// queryService streams the recorded exchanges the filter matches, as the
// collector's store does.
type queryService struct {
	reprisev1.UnimplementedQueryServiceServer
	got []*reprisev1.StreamExchangesRequest
}

func (q *queryService) StreamExchanges(req *reprisev1.StreamExchangesRequest, stream grpc.ServerStreamingServer[reprisev1.StreamExchangesResponse]) error {
	q.got = append(q.got, proto.Clone(req).(*reprisev1.StreamExchangesRequest))
	n := 0
	for _, ex := range recorded() {
		if req.GetLimit() > 0 && n == int(req.GetLimit()) {
			break
		}
		if Match(req.GetFilter(), ex) {
			if err := stream.Send(&reprisev1.StreamExchangesResponse{Exchange: ex}); err != nil {
				return err
			}
			n++
		}
	}
	return nil
}

func TestCollector(t *testing.T) {
	q := &queryService{}
	srv := grpc.NewServer()
	reprisev1.RegisterQueryServiceServer(srv, q)
	lis := bufconn.Listen(1 << 20)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	dial := func(addr string) (*grpc.ClientConn, error) {
		return grpc.NewClient("passthrough:///"+addr,
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q.got = nil
			if got := ids(t, Spec{Collector: "bufconn", Dial: dial, Filter: tc.filter, Limit: tc.limit}); got != tc.want {
				t.Errorf("selected %q, want %q", got, tc.want)
			}
			if len(q.got) != 1 || !proto.Equal(q.got[0].GetFilter(), tc.filter) || q.got[0].GetLimit() != int32(tc.limit) {
				t.Errorf("collector asked %v, want filter %v limit %d", q.got, tc.filter, tc.limit)
			}
		})
	}
	// Stopping early ends the stream; the server sees the cancellation.
	seq, err := Open(context.Background(), Spec{Collector: "bufconn", Dial: dial})
	if err != nil {
		t.Fatal(err)
	}
	for range seq {
		break
	}
}

func TestErrors(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	lis.Close()
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{\"id\":\"1\"}\nnot json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		spec Spec
		want string
	}{
		{Spec{}, "exactly one of"},
		{Spec{Collector: "x", File: "y"}, "exactly one of"},
		{Spec{File: "y", Limit: -1}, "limit must not be negative"},
		{Spec{File: filepath.Join(t.TempDir(), "missing.jsonl")}, "missing.jsonl"},
		{Spec{File: bad}, "read exchanges from " + bad},
		{Spec{Collector: closed}, "stream exchanges from collector " + closed},
	}
	for _, tt := range tests {
		seq, err := Open(context.Background(), tt.spec)
		if err == nil {
			for _, e := range seq {
				if e != nil {
					err = e
				}
			}
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(%+v): error %v, want %q", tt.spec, err, tt.want)
		}
	}
}
