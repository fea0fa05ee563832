#!/usr/bin/env bash
# Collector benchmarks, each next to a baseline measured in the same run and
# interleaved, so a loaded machine slows both alike:
#   1. ingest of ~2 KB exchanges over real gRPC with the default sanitizer
#      into the SQLite store, against putting the same batches straight into
#      the store; plus a CPU profile of the gRPC path;
#   2. the sanitizer's MB/s on one core (internal/sanitize BenchmarkSanitize)
#      against its parse-only baseline;
#   3. query latency (p50/p99 over gRPC) with ROWS stored exchanges, against
#      a primary-key lookup ("get"); stats over all of them take 10 calls.
#
#   scripts/bench-collector.sh
#   ROUNDS=5 INGEST_N=100000 ROWS=1000000 BENCH_DB=/tmp/reprise-bench.db scripts/bench-collector.sh
# (a kept BENCH_DB takes ~530 MB: delete it when done)
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
INGEST_N=${INGEST_N:-60000}     # exchanges per ingest measurement
ROWS=${ROWS:-1000000}           # stored exchanges for the query benchmark
QUERY_N=${QUERY_N:-300}         # calls per query measurement
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
BENCH_DB=${BENCH_DB:-$work/query.db} # set it to keep the filled store between runs

go test -c -o "$work/collector.test" ./collector
go test -c -o "$work/sanitize.test" ./internal/sanitize

metric() { # metric UNIT: the value before UNIT on each benchmark line
	awk -v u="$1" '/^Benchmark/ { for (i = 2; i <= NF; i++) if ($i == u) print $1, $(i-1) }'
}

echo "== ingest, $INGEST_N exchanges per run, $ROUNDS interleaved rounds (exchanges/s)"
for r in $(seq "$ROUNDS"); do
	for b in grpc store; do
		"$work/collector.test" -test.run '^$' -test.bench "BenchmarkIngest/$b\$" -test.benchtime "${INGEST_N}x" |
			metric exchanges/s
	done
done | tee "$work/ingest.txt"
awk '{ split($1, p, "/"); n[p[2]]++; s[p[2]] += $2 }
	END { g = s["grpc-2"] / n["grpc-2"]; st = s["store-2"] / n["store-2"];
		printf "mean: grpc+sanitize %.0f/s, store only %.0f/s, ratio %.2f\n", g, st, g / st }' "$work/ingest.txt"

echo "== ingest CPU profile (grpc path, top 15 by cumulative time)"
"$work/collector.test" -test.run '^$' -test.bench 'BenchmarkIngest/grpc$' -test.benchtime "${INGEST_N}x" \
	-test.cpuprofile "$work/cpu.out" >/dev/null
go tool pprof -top -cum -nodecount 15 "$work/collector.test" "$work/cpu.out" 2>/dev/null | sed -n '4,22p'

echo "== sanitizer, one core, $ROUNDS interleaved rounds (MB/s)"
for r in $(seq "$ROUNDS"); do
	for b in 'BenchmarkSanitize$' 'BenchmarkSanitizeBaseline$'; do
		(cd internal/sanitize && "$work/sanitize.test" -test.run '^$' -test.bench "$b" -test.cpu 1 -test.benchtime 2s) |
			metric MB/s
	done
done | tee "$work/sanitize.txt"
awk '{ n[$1]++; s[$1] += $2 } END { a = s["BenchmarkSanitize"] / n["BenchmarkSanitize"];
	b = s["BenchmarkSanitizeBaseline"] / n["BenchmarkSanitizeBaseline"];
	printf "mean: sanitize %.1f MB/s, parse-only baseline %.1f MB/s, ratio %.2f\n", a, b, a / b }' "$work/sanitize.txt"

echo "== queries with $ROWS stored exchanges, $QUERY_N calls each (filling the store the first time takes minutes)"
query() { # query BENCH-REGEXP CALLS
	REPRISE_BENCH_ROWS=$ROWS REPRISE_BENCH_DB=$BENCH_DB "$work/collector.test" -test.run '^$' \
		-test.bench "$1" -test.benchtime "$2x" -test.timeout 60m
}
{ query 'BenchmarkQuery/(get|page|page-glob|count|stats-service)$' "$QUERY_N"; query 'BenchmarkQuery/stats-all$' 10; } |
	awk '/^Benchmark/ { p50 = p99 = ""; for (i = 2; i <= NF; i++) { if ($i == "p50-ms") p50 = $(i-1); if ($i == "p99-ms") p99 = $(i-1) }
		printf "%-40s p50 %8s ms  p99 %8s ms\n", $1, p50, p99 }'
echo "(on a shared machine: compare each figure with its baseline from the same run)"
