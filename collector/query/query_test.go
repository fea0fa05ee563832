package query_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/collector/internal/grpctest"
	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/query"
	"github.com/reprise-dev/reprise/collector/store"
	"github.com/reprise-dev/reprise/collector/tail"
	"github.com/reprise-dev/reprise/internal/grpcclient"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// start serves a store holding n exchanges ex-0000… in time order; every
// tenth one is a POST.
func start(t *testing.T, n int) reprisev1.QueryServiceClient {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "reprise.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var exs []*reprisev1.Exchange
	for i := range n {
		method := "GET"
		if i%10 == 0 {
			method = "POST"
		}
		exs = append(exs, &reprisev1.Exchange{
			Id:        fmt.Sprintf("ex-%04d", i),
			StartTime: timestamppb.New(t0.Add(time.Duration(i) * time.Second)),
			Request:   &reprisev1.HttpRequest{Method: method, Target: "/items"},
			Response:  &reprisev1.HttpResponse{StatusCode: 200},
		})
	}
	if err := st.Put(context.Background(), exs); err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	reprisev1.RegisterQueryServiceServer(srv, query.New(st, tail.NewHub(), metrics.Nop{}))
	return reprisev1.NewQueryServiceClient(grpctest.Dial(t, srv))
}

func ids(exs []*reprisev1.Exchange) []string {
	var out []string
	for _, ex := range exs {
		out = append(out, ex.GetId())
	}
	return out
}

func TestListExchanges(t *testing.T) {
	client := start(t, 1005)
	ctx := context.Background()
	tests := []struct {
		name     string
		req      *reprisev1.ListExchangesRequest
		wantLen  int
		wantNext bool
	}{
		{"default page size", &reprisev1.ListExchangesRequest{}, 100, true},
		{"page size", &reprisev1.ListExchangesRequest{PageSize: 7}, 7, true},
		{"page size capped", &reprisev1.ListExchangesRequest{PageSize: 5000}, 1000, true},
		{"filter", &reprisev1.ListExchangesRequest{Filter: &reprisev1.ExchangeFilter{Method: "post"}, PageSize: 1000}, 101, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.ListExchanges(ctx, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetExchanges()) != tt.wantLen || (resp.GetNextPageToken() != "") != tt.wantNext {
				t.Errorf("got %d exchanges, next %q; want %d, next %v", len(resp.GetExchanges()), resp.GetNextPageToken(), tt.wantLen, tt.wantNext)
			}
		})
	}

	// Every page in turn gives every exchange once, in order.
	var got []string
	req := &reprisev1.ListExchangesRequest{PageSize: 300}
	for {
		resp, err := client.ListExchanges(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(resp.GetExchanges())...)
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if len(got) != 1005 || !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Errorf("paged through %d exchanges, want 1005 distinct in order", len(got))
	}
}

func TestGetExchange(t *testing.T) {
	client := start(t, 3)
	resp, err := client.GetExchange(context.Background(), &reprisev1.GetExchangeRequest{Id: "ex-0001"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetExchange().GetId() != "ex-0001" {
		t.Errorf("GetExchange = %v, want ex-0001", resp.GetExchange())
	}
}

func stream(ctx context.Context, client reprisev1.QueryServiceClient, req *reprisev1.StreamExchangesRequest) ([]string, error) {
	s, err := client.StreamExchanges(ctx, req)
	if err != nil {
		return nil, err
	}
	var got []string
	for {
		resp, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, resp.GetExchange().GetId())
	}
}

func TestStreamExchanges(t *testing.T) {
	client := start(t, 600)
	tests := []struct {
		name  string
		req   *reprisev1.StreamExchangesRequest
		first string
		n     int
	}{
		{"all", &reprisev1.StreamExchangesRequest{}, "ex-0000", 600},
		{"limit", &reprisev1.StreamExchangesRequest{Limit: 5}, "ex-0000", 5},
		{"filter", &reprisev1.StreamExchangesRequest{Filter: &reprisev1.ExchangeFilter{
			Method: "POST", StartTime: timestamppb.New(t0.Add(100 * time.Second)),
		}}, "ex-0100", 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := stream(context.Background(), client, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.n || got[0] != tt.first || !slices.IsSorted(got) {
				t.Errorf("streamed %d exchanges from %v, want %d from %s in order", len(got), got[:min(len(got), 1)], tt.n, tt.first)
			}
		})
	}
}

func TestErrorCodes(t *testing.T) {
	client := start(t, 3)
	ctx := context.Background()
	badTime := &timestamppb.Timestamp{Seconds: -1 << 62}
	tests := []struct {
		name    string
		call    func() error
		code    codes.Code
		mention string
	}{
		{"negative page size", func() error {
			_, err := client.ListExchanges(ctx, &reprisev1.ListExchangesRequest{PageSize: -1})
			return err
		}, codes.InvalidArgument, "page_size"},
		{"bad page token", func() error {
			_, err := client.ListExchanges(ctx, &reprisev1.ListExchangesRequest{PageToken: "%%%"})
			return err
		}, codes.InvalidArgument, "page_token"},
		{"bad start time", func() error {
			_, err := client.ListExchanges(ctx, &reprisev1.ListExchangesRequest{Filter: &reprisev1.ExchangeFilter{StartTime: badTime}})
			return err
		}, codes.InvalidArgument, "filter.start_time"},
		{"unknown direction", func() error {
			_, err := stream(ctx, client, &reprisev1.StreamExchangesRequest{Filter: &reprisev1.ExchangeFilter{Direction: 9}})
			return err
		}, codes.InvalidArgument, "filter.direction"},
		{"negative limit", func() error {
			_, err := stream(ctx, client, &reprisev1.StreamExchangesRequest{Limit: -1})
			return err
		}, codes.InvalidArgument, "limit"},
		{"empty id", func() error {
			_, err := client.GetExchange(ctx, &reprisev1.GetExchangeRequest{})
			return err
		}, codes.InvalidArgument, "id"},
		{"page token of another filter", func() error {
			resp, err := client.ListExchanges(ctx, &reprisev1.ListExchangesRequest{PageSize: 1})
			if err != nil {
				return err
			}
			_, err = client.ListExchanges(ctx, &reprisev1.ListExchangesRequest{PageSize: 1, PageToken: resp.GetNextPageToken(),
				Filter: &reprisev1.ExchangeFilter{Method: "POST"}})
			return err
		}, codes.InvalidArgument, "page_token"},
		{"bad cursor", func() error {
			_, err := stream(ctx, client, &reprisev1.StreamExchangesRequest{AfterCursor: "nope"})
			return err
		}, codes.InvalidArgument, "after_cursor"},
		{"status class", func() error {
			_, err := client.CountExchanges(ctx, &reprisev1.CountExchangesRequest{Filter: &reprisev1.ExchangeFilter{StatusClass: 6}})
			return err
		}, codes.InvalidArgument, "filter.status_class"},
		{"negative min duration", func() error {
			_, err := client.GetStats(ctx, &reprisev1.GetStatsRequest{Filter: &reprisev1.ExchangeFilter{MinDuration: durationpb.New(-time.Second)}})
			return err
		}, codes.InvalidArgument, "filter.min_duration"},
		{"bad glob", func() error {
			_, err := client.ListExchanges(ctx, &reprisev1.ListExchangesRequest{Filter: &reprisev1.ExchangeFilter{PathGlob: "/a/[b"}})
			return err
		}, codes.InvalidArgument, "filter.path_glob"},
		{"a million-character glob", func() error {
			_, err := client.ListExchanges(ctx, &reprisev1.ListExchangesRequest{Filter: &reprisev1.ExchangeFilter{PathGlob: "/" + strings.Repeat("*a", 500_000)}})
			return err
		}, codes.InvalidArgument, "filter.path_glob is 1000001 bytes"},
		{"long cursor", func() error {
			_, err := stream(ctx, client, &reprisev1.StreamExchangesRequest{AfterCursor: strings.Repeat("c", 5000)})
			return err
		}, codes.InvalidArgument, "after_cursor is 5000 bytes"},
		{"services end time", func() error {
			_, err := client.ListServices(ctx, &reprisev1.ListServicesRequest{EndTime: badTime})
			return err
		}, codes.InvalidArgument, "end_time: "},
		{"missing id", func() error {
			_, err := client.GetExchange(ctx, &reprisev1.GetExchangeRequest{Id: "nope"})
			return err
		}, codes.NotFound, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.mention) {
				t.Errorf("error %v, want code %v mentioning %q", err, tt.code, tt.mention)
			}
		})
	}
}

// TestPageFitsInOneMessage checks the relation PageBytes documents: a full
// page and its reply's own fields fit in one gRPC message.
func TestPageFitsInOneMessage(t *testing.T) {
	if store.PageBytes > grpcclient.MaxMessageBytes/2 {
		t.Errorf("store.PageBytes %d is over half of grpcclient.MaxMessageBytes %d", store.PageBytes, grpcclient.MaxMessageBytes)
	}
}
