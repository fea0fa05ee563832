//go:build amd64

package capture

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/agent/event"
	"github.com/reprise-dev/reprise/internal/privileged"
)

// 32-bit syscalls are numbered differently: ia32 read (3) is x86-64's
// close, and its buffer is in other registers. The programs must not read
// it as a 64-bit syscall: its byte is counted as unavailable, in its place
// in the stream. A 64-bit child writes "hello" on an inherited TCP socket
// (fd 3), reads a byte from it with an ia32 read through int 0x80, and
// writes "bye".
func TestCompatSyscallsCountedNotCopied(t *testing.T) {
	ln := listen(t, "tcp4", "127.0.0.1:0")
	c := open(t, Config{Ports: []uint16{port(ln)}})
	evs := collect(c)
	conn, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := srv.Write([]byte("x")); err != nil { // for the ia32 read
		t.Fatal(err)
	}
	f, err := conn.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	bin := filepath.Join(t.TempDir(), "compat")
	if err := os.WriteFile(bin, compatChild(), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.ExtraFiles = []*os.File{f}
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signaled() {
		privileged.SkipMissingFeature(t, "32-bit syscalls are not available here (int 0x80 killed the child): "+err.Error())
	}
	if cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("child: ia32 read returned %d, want 1 (%v)", cmd.ProcessState.ExitCode(), err)
	}

	pid := uint32(cmd.Process.Pid)
	var got []event.Event
	timeout := time.After(5 * time.Second)
	// The child is one thread: its events arrive in order, "bye" last.
	for len(got) == 0 || string(got[len(got)-1].Data) != "bye" {
		select {
		case ev := <-evs:
			if ev.Conn.TGID == pid {
				got = append(got, ev)
			}
		case <-timeout:
			t.Fatalf("no \"bye\" from the child; got %+v", got)
		}
	}
	// The test process dialled (its own traffic is not captured): the
	// connection's first data comes from the child, after its open event.
	ok := len(got) == 4 && got[0].Kind == event.KindOpen && got[0].Role == event.RoleClient
	for i, want := range []struct {
		dir         event.Direction
		pos         uint64
		size        uint32
		data        string
		unavailable bool
	}{{event.Egress, 0, 5, "hello", false}, {event.Ingress, 0, 1, "", true}, {event.Egress, 5, 3, "bye", false}} {
		if !ok {
			break
		}
		ev := got[i+1]
		ok = ev.Kind == event.KindData && ev.Conn == got[0].Conn && ev.Dir == want.dir && ev.Pos == want.pos &&
			ev.Size == want.size && string(ev.Data) == want.data && ev.Unavailable == want.unavailable
	}
	if !ok {
		t.Errorf("child's events: %+v; want open (client), \"hello\" out at 0, 1 unavailable byte in at 0, \"bye\" out at 5", got)
	}
}

// compatChild is a static x86-64 ELF executable: write(3, "hello", 5),
// ia32 read(3, buf, 1) through int 0x80, write(3, "bye", 3), exit with the
// ia32 read's result.
func compatChild() []byte {
	const (
		base    = 0x400000
		hdrs    = 64 + 56 // ELF header, one program header
		eax     = 0
		ecx     = 1
		edx     = 2
		ebx     = 3
		esi     = 6
		edi     = 7
		codeLen = 77
	)
	hello, bye, buf := base+hdrs+codeLen, base+hdrs+codeLen+5, base+hdrs+codeLen+8
	mov := func(reg byte, v uint32) []byte { return binary.LittleEndian.AppendUint32([]byte{0xb8 + reg}, v) }
	sys := []byte{0x0f, 0x05}
	var code []byte
	for _, part := range [][]byte{
		mov(eax, 1), mov(edi, 3), mov(esi, uint32(hello)), mov(edx, 5), sys,
		mov(eax, 3), mov(ebx, 3), mov(ecx, uint32(buf)), mov(edx, 1), {0xcd, 0x80}, // int 0x80
		{0x89, 0xc5}, // mov ebp, eax
		mov(eax, 1), mov(edi, 3), mov(esi, uint32(bye)), mov(edx, 3), sys,
		mov(eax, 60), {0x89, 0xef}, sys, // exit(ebp)
	} {
		code = append(code, part...)
	}
	if len(code) != codeLen {
		panic("compatChild: code length changed")
	}
	data := []byte("hellobye")
	size := uint64(hdrs + len(code) + len(data))
	le := binary.LittleEndian
	elf := []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	elf = le.AppendUint16(elf, 2)    // ET_EXEC
	elf = le.AppendUint16(elf, 0x3e) // x86-64
	elf = le.AppendUint32(elf, 1)
	elf = le.AppendUint64(elf, base+hdrs) // entry
	elf = le.AppendUint64(elf, 64)        // program headers
	elf = le.AppendUint64(elf, 0)         // no section headers
	elf = le.AppendUint32(elf, 0)
	for _, v := range []uint16{64, 56, 1, 64, 0, 0} {
		elf = le.AppendUint16(elf, v)
	}
	elf = le.AppendUint32(elf, 1) // PT_LOAD
	elf = le.AppendUint32(elf, 7) // RWX
	for _, v := range []uint64{0, base, base, size, size + 64, 0x1000} {
		elf = le.AppendUint64(elf, v) // offset, vaddr, paddr, filesz, memsz (buf after), align
	}
	return append(append(elf, code...), data...)
}
