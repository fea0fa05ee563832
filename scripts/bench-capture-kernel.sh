#!/bin/sh
# Per-call cost of a non-socket read(2) with and without the capture
# programs, interleaved in one run. Needs root.
set -eu
cd "$(dirname "$0")/.."
go test -run '^$' -bench NonSocketRead -benchtime=1x ./agent/capture
