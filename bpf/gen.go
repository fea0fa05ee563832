// Package bpf holds reprise's kernel side: eBPF programs on syscall
// tracepoints that capture TCP traffic, compiled and embedded by bpf2go.
// The generated capture_bpfel.go and capture_bpfel.o are committed so that
// building the agent needs no clang.
package bpf

//go:generate go tool bpf2go -target bpfel -cflags "-O2 -g -Wall -Werror -Wpadded -mcpu=v3 -I./include" -type event -type counters Capture capture.c
