// Package bpf holds reprise's kernel side: eBPF programs on the socket
// layer's tracepoints that capture TCP traffic, compiled and embedded by
// bpf2go. The C reads x86-64 registers and syscall numbers, so it is built
// for amd64 only. The generated capture_x86_bpfel.go and
// capture_x86_bpfel.o are committed so that building the agent needs no
// clang.
package bpf

//go:generate go tool bpf2go -target amd64 -cflags "-O2 -g -Wall -Werror -Wpadded -mcpu=v3 -I./include" -type event -type counters -type conn_key -type skip_to Capture capture.c
