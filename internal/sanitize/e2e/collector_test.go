// Package e2e tests the sanitizer on the collector's full path, apart
// from package sanitize so that the fuzzing of that package does not build
// the collector.
package e2e

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
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// TestCollectorStoresNoSecret sends exchanges with crafted secrets in every
// field and body form to the collector's ingest over real gRPC on
// loopback, into the SQLite store, then looks for each secret in the
// store's files and in every stored exchange, its bodies decoded as far as
// their bytes allow.
// Synthetic secrets, each planted where a client or production could put one.
const (
	card     = "4111111111111111"
	email    = "jane.doe@example.com"
	password = "correct horse battery staple"
	awsKey   = "AKIAIOSFODNN7EXAMPL3"
	ghToken  = "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
	token    = "zP9xQ2vL7mK4nR8tW1yB6cF3hJ5sD0gA"
	ssn      = "078-05-1120"
	iban     = "GB82WEST12345698765432"
)

func compress(t *testing.T, coding string, b []byte) []byte {
	var buf bytes.Buffer
	var w io.WriteCloser
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "zlib":
		w = zlib.NewWriter(&buf)
	case "zstd":
		var err error
		if w, err = zstd.NewWriter(&buf); err != nil {
			t.Fatal(err)
		}
	}
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func hdrs(kv ...string) []*reprisev1.Header {
	var hs []*reprisev1.Header
	for i := 0; i < len(kv); i += 2 {
		hs = append(hs, &reprisev1.Header{Name: kv[i], Value: kv[i+1]})
	}
	return hs
}

// TestCollectorStoresNoSecret sends exchanges with crafted secrets in every
// field and body form to the collector's ingest over real gRPC on
// loopback, into the SQLite store, then looks for each secret in the
// store's files and in every stored exchange, its bodies decompressed as
// far as their bytes allow.
func TestCollectorStoresNoSecret(t *testing.T) {
	secrets := []string{card, email, password, awsKey, ghToken, token, ssn, iban, "flagpass-1234", "labelkey-4321",
		"hdr-key-5566", "sess-7788", "oauthcode-55", "st-66", "urlpass-77", "client-rule-99"}
	cardJSON := []byte(`{"payment":{"note":"card ` + card + `"}}`)
	exs := []*reprisev1.Exchange{{
		// Every string field a client sets.
		Id:           "id-" + email,
		ConnectionId: "conn-" + awsKey,
		Service:      "svc " + card,
		Local:        &reprisev1.Endpoint{Ip: ssn},
		Process: &reprisev1.Process{
			Exe:    "/usr/bin/app --password=flagpass-1234 postgres://u:urlpass-77@db/x " + ghToken,
			Comm:   ssn,
			Labels: map[string]string{"api-key": "labelkey-4321", "owner": email, iban: "x"},
		},
		Capture: &reprisev1.Capture{AgentId: "agent-" + token, Hostname: "host-" + email},
		Request: &reprisev1.HttpRequest{Method: "POST", Target: "/u/" + email + "?" + email + "=1&q=" + card, Host: "h-" + email,
			Headers: hdrs("X-"+email, "v", "X-Api-Key", "hdr-key-5566", "Cookie", "sid=sess-7788", "Authorization", "Bearer "+token),
			Body:    []byte(`{"password":"` + password + `","iban":"` + iban + `"}`)},
		Response: &reprisev1.HttpResponse{StatusCode: 302, Headers: hdrs("Location", "https://a.example/cb?code=oauthcode-55&state=st-66")},
		Redactions: []*reprisev1.Redaction{
			{Location: "request.headers.Authorization", Rule: "client-rule-99", Action: "redact"},
			{Location: "note " + email, Rule: awsKey, Action: ssn},
		},
	}}
	for _, b := range []struct {
		headers []*reprisev1.Header
		body    []byte
	}{
		// The leak: gzip JSON labelled application/json, no Content-Encoding.
		{hdrs("Content-Type", "application/json"), compress(t, "gzip", cardJSON)},
		{nil, compress(t, "zlib", cardJSON)},
		{hdrs("Content-Encoding", "gzip"), compress(t, "gzip", compress(t, "zstd", cardJSON))},
		{hdrs("Content-Encoding", "zstd"), compress(t, "zstd", cardJSON)},
		{nil, compress(t, "gzip", bytes.Repeat(cardJSON, 40))[:60]}, // cut
		{hdrs("Content-Type", "application/x-protobuf"), append([]byte{0x0a, 0x14}, "x "+email+"\x00\xff"...)},
		{hdrs("Content-Type", "text/html"), []byte(`<p>mail ` + email + ` card ` + card + `</p>`)},
	} {
		exs = append(exs, &reprisev1.Exchange{
			Request:  &reprisev1.HttpRequest{Method: "POST", Target: "/echo", Headers: b.headers, Body: b.body, BodySize: int64(len(b.body))},
			Response: &reprisev1.HttpResponse{StatusCode: 200, Headers: b.headers, Body: b.body, BodySize: int64(len(b.body))},
		})
	}
	for i, ex := range exs {
		if ex.Id == "" {
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
	leaks := 0
	for _, s := range secrets {
		for _, form := range []string{s, url.QueryEscape(s), base64.StdEncoding.EncodeToString([]byte(s))} {
			if slices.ContainsFunc(stored, func(b []byte) bool { return bytes.Contains(b, []byte(form)) }) {
				t.Errorf("secret %q stored (as %q)", s, form)
				leaks++
				break
			}
		}
	}
	t.Logf("%d exchanges, %d secrets, %d leaked", len(exs), len(secrets), leaks)
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
