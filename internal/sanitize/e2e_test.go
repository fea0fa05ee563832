package sanitize_test

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/reprise-dev/reprise/collector/metrics"
	"github.com/reprise-dev/reprise/collector/server"
	"github.com/reprise-dev/reprise/collector/store"
	"github.com/reprise-dev/reprise/internal/sanitize"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// TestCollectorStoresNoSecret sends exchanges with crafted secrets in every
// field and body form to the collector's ingest over real gRPC on
// loopback, into the SQLite store, then looks for each secret in the
// store's files and in every stored exchange, its bodies decoded as far as
// their bytes allow.
func TestCollectorStoresNoSecret(t *testing.T) {
	exs, secrets := sanitize.SecretExchanges(t)
	crafted, craftedSecrets := sanitize.CraftedExchange()
	exs, secrets = append(exs, crafted), append(secrets, craftedSecrets)
	card := []byte(`{"payment":{"note":"card ` + sanitize.SecCard + `"}}`)
	for _, b := range []struct {
		headers []*reprisev1.Header
		body    []byte
	}{
		// The leak: gzip JSON labelled application/json, no Content-Encoding.
		{[]*reprisev1.Header{{Name: "Content-Type", Value: "application/json"}}, sanitize.Compress(t, "gzip", card)},
		{nil, sanitize.Compress(t, "deflate", card)},
		{[]*reprisev1.Header{{Name: "Content-Encoding", Value: "gzip"}}, sanitize.Compress(t, "gzip", sanitize.Compress(t, "zstd", card))},
		{nil, sanitize.Compress(t, "gzip", bytes.Repeat(card, 40))[:60]}, // cut
		{[]*reprisev1.Header{{Name: "Content-Type", Value: "application/x-protobuf"}}, append([]byte{0x0a, 0x14}, "x "+sanitize.SecEmail+"\x00\xff"...)},
	} {
		exs = append(exs, &reprisev1.Exchange{
			Request:  &reprisev1.HttpRequest{Method: "POST", Target: "/echo", Headers: b.headers, Body: b.body, BodySize: int64(len(b.body))},
			Response: &reprisev1.HttpResponse{StatusCode: 200, Headers: b.headers, Body: b.body, BodySize: int64(len(b.body))},
		})
		secrets = append(secrets, []string{sanitize.SecCard, sanitize.SecEmail})
	}
	for i, ex := range exs {
		if ex.Id == "" || ex.Id == "ex-1" {
			ex.Id = fmt.Sprintf("e2e-%03d", i)
		}
		ex.StartTime = timestamppb.New(time.Date(2026, 12, 7, 12, 0, i, 0, time.UTC))
	}

	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, "reprise.db"))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.NewGRPC(st, metrics.Nop{}, server.Config{})
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := reprisev1.NewIngestServiceClient(conn).Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reprisev1.IngestRequest{BatchId: "e2e-1", AgentId: "agent-e2e", Exchanges: exs}); err != nil {
		t.Fatal(err)
	}
	ack, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if int(ack.GetStored()) != len(exs) {
		t.Fatalf("ack %v, want %d stored", ack, len(exs))
	}

	var stored [][]byte
	err = st.Stream(ctx, &reprisev1.ExchangeFilter{}, "", 0, func(ex *reprisev1.Exchange, _ string) error {
		b, err := proto.Marshal(ex)
		stored = append(stored, append(b, decodedBodies(ex)...))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != len(exs) {
		t.Fatalf("%d exchanges stored, want %d", len(stored), len(exs))
	}
	srv.Stop()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, b)
	}
	distinct := map[string]bool{}
	for _, set := range secrets {
		for _, s := range set {
			distinct[s] = true
		}
	}
	leaks := 0
	for s := range distinct {
		for _, form := range []string{s, url.QueryEscape(s), base64.StdEncoding.EncodeToString([]byte(s))} {
			if slices.ContainsFunc(stored, func(b []byte) bool { return bytes.Contains(b, []byte(form)) }) {
				t.Errorf("secret %q stored (as %q)", s, form)
				leaks++
				break
			}
		}
	}
	t.Logf("%d exchanges, %d distinct secrets, %d leaked", len(exs), len(distinct), leaks)
}

// decodedBodies returns the bodies of ex decompressed as far as gzip, zlib
// and zstd readers get (layer by layer, a cut stream as far as it goes),
// as anyone reading the store could.
func decodedBodies(ex *reprisev1.Exchange) []byte {
	var out []byte
	for _, b := range [][]byte{ex.GetRequest().GetBody(), ex.GetResponse().GetBody()} {
		for range 8 {
			d := tryDecompress(b)
			if len(d) == 0 {
				break
			}
			out, b = append(out, d...), d
		}
		out = append(out, b...)
	}
	return out
}

func tryDecompress(b []byte) []byte {
	var r io.Reader
	if gr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
		r = gr
	} else if zr, err := zlib.NewReader(bytes.NewReader(b)); err == nil {
		r = zr
	} else if zd, err := zstd.NewReader(bytes.NewReader(b)); err == nil {
		defer zd.Close()
		r = zd
	}
	if r == nil {
		return nil
	}
	d, _ := io.ReadAll(io.LimitReader(r, 1<<24)) // what decodes before an error counts too
	return d
}
