#!/bin/sh
# What the capture programs add to a file read, to a syscall no program is
# for, and to a captured loopback round trip: rounds without and with the
# programs, interleaved in one run. Needs root.
set -eu
cd "$(dirname "$0")/.."
go test -run '^$' -bench KernelCost -benchtime=1x ./agent/capture
