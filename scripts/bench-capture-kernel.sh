#!/bin/sh
# Kernel-side cost of the capture programs, interleaved in one run: a
# non-socket read(2), an untraced syscall (getppid) and a loopback TCP
# round trip, without programs and with them. With a git revision as
# argument (e.g. HEAD), that revision's committed programs
# (bpf/capture_bpfel.o) are measured in the same rounds as "base".
# Needs root.
set -eu
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then
	base=$(mktemp)
	trap 'rm -f "$base"' EXIT
	git show "$1:bpf/capture_bpfel.o" >"$base"
	export REPRISE_BENCH_BASELINE="$base"
fi
go test -run '^$' -bench 'NonSocketRead|UntracedSyscall|SocketRoundTrip' -benchtime=1x ./agent/capture
