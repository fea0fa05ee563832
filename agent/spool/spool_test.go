package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

func batch(id string, n, bodyLen int) *reprisev1.IngestRequest {
	req := &reprisev1.IngestRequest{BatchId: id, AgentId: "node-1"}
	for i := range n {
		req.Exchanges = append(req.Exchanges, &reprisev1.Exchange{
			Id:      fmt.Sprintf("%s-%d", id, i),
			Request: &reprisev1.HttpRequest{Method: "POST", Target: "/orders", Body: make([]byte, bodyLen)},
		})
	}
	return req
}

func open(t *testing.T, dir string, max int64) *Spool {
	t.Helper()
	s, err := Open(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestWriteTakeReadRemoveSurvivesReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s := open(t, dir, 1<<20)
	for i := range 3 {
		if ev, err := s.Write(batch(fmt.Sprint("b", i), i+1, 10)); err != nil || len(ev) != 0 {
			t.Fatalf("Write: evicted %v, %v", ev, err)
		}
	}
	for _, p := range []string{dir, filepath.Join(dir, "00000000000000000000-1.batch")} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s: mode %v, %v; want no group or other access", p, fi.Mode(), err)
		}
	}
	if _, err := Open(dir, 1<<20); err == nil {
		t.Fatal("a second Open of a spool in use succeeded")
	}
	s.Close()

	// A new process sees the same batches, oldest first.
	s = open(t, dir, 1<<20)
	if files, _, exs := s.Len(); files != 3 || exs != 6 {
		t.Fatalf("after reopen: %d files, %d exchanges; want 3, 6", files, exs)
	}
	for i := range 3 {
		f, ok := s.Take()
		if !ok {
			t.Fatalf("Take %d: nothing", i)
		}
		req, err := s.Read(f)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(req, batch(fmt.Sprint("b", i), i+1, 10)) {
			t.Fatalf("file %d holds %v", i, req)
		}
		if err := s.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := s.Take(); ok {
		t.Fatal("Take after all were removed returned a file")
	}
	if files, bytes, _ := s.Len(); files != 0 || bytes != 0 {
		t.Fatalf("%d files, %d bytes left", files, bytes)
	}
	// A new Open continues the sequence after a restart with an empty spool.
	if _, err := s.Write(batch("b9", 1, 1)); err != nil {
		t.Fatal(err)
	}
}

func TestBoundEvictsOldestNotInUse(t *testing.T) {
	one, _ := Encode(batch("b0", 1, 1000))
	// Room for three files of this size, not four.
	s := open(t, t.TempDir(), 3*int64(len(one))+10)
	for i := range 3 {
		if _, err := s.Write(batch(fmt.Sprint("b", i), 1, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	taken, _ := s.Take() // b0 is on the wire: not evicted
	ev, err := s.Write(batch("b3", 1, 1000))
	if err != nil || len(ev) != 1 || ev[0].Seq != 1 {
		t.Fatalf("Write past the bound: evicted %v, %v; want b1 (the oldest not in use)", ev, err)
	}
	if req, err := s.Read(taken); err != nil || req.BatchId != "b0" {
		t.Fatalf("taken file: %v, %v", req, err)
	}
	if _, bytes, _ := s.Len(); bytes != 3*int64(len(one)) {
		t.Fatalf("spool holds %d bytes, want %d", bytes, 3*len(one))
	}
	if _, err := s.Write(batch("huge", 1, 10000)); !errors.Is(err, ErrFull) {
		t.Fatalf("a batch larger than the bound: %v, want ErrFull", err)
	}
}

func TestCorruptFilesAreReportedNotFatal(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20)
	for i := range 4 {
		if _, err := s.Write(batch(fmt.Sprint("b", i), 2, 100)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	name := func(seq int) string { return filepath.Join(dir, fmt.Sprintf("%020d-2.batch", seq)) }
	data, err := os.ReadFile(name(0))
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)-3] ^= 0xff
	for seq, b := range map[int][]byte{0: data[:len(data)-5], 1: flipped, 2: nil} {
		if err := os.WriteFile(name(seq), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A temporary file a crash left behind is removed at Open.
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000009-2.batch.tmp"), data[:7], 0o600); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, 1<<20)
	corrupt, good := 0, 0
	for {
		f, ok := s.Take()
		if !ok {
			break
		}
		if _, err := s.Read(f); errors.Is(err, ErrCorrupt) {
			corrupt++
		} else if err != nil {
			t.Fatal(err)
		} else {
			good++
		}
		s.Remove(f)
	}
	if corrupt != 3 || good != 1 {
		t.Fatalf("%d corrupt, %d good; want 3, 1", corrupt, good)
	}
	if _, err := os.Stat(filepath.Join(dir, "00000000000000000009-2.batch.tmp")); !os.IsNotExist(err) {
		t.Fatalf("temporary file kept: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := Encode(batch("b", 1, 1))
	noID, _ := Encode(&reprisev1.IngestRequest{})
	for name, b := range map[string][]byte{
		"empty":       nil,
		"short":       good[:5],
		"bad magic":   append([]byte("XXXX"), good[4:]...),
		"truncated":   good[:len(good)-1],
		"extra bytes": append(append([]byte(nil), good...), 0),
		"no batch id": noID,
	} {
		if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

// FuzzDecode: any file contents give a batch or ErrCorrupt, never a panic,
// and a batch that decodes encodes back to a file that decodes the same.
func FuzzDecode(f *testing.F) {
	good, _ := Encode(batch("b", 2, 3))
	f.Add(good)
	f.Add(good[:headerLen])
	f.Add([]byte("RPS\x01\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := Encode(req)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(again)
		if err != nil || !proto.Equal(req, back) {
			t.Fatalf("re-encoded batch decodes to %v, %v", back, err)
		}
	})
}
