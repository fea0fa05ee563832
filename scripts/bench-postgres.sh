#!/usr/bin/env bash
# Ingest rate of real `collector serve` processes into PostgreSQL, with one
# and with two collectors sharing the database, next to one collector on the
# embedded SQLite store measured in the same run, interleaved round by round
# so a loaded machine slows all alike. The load is BenchmarkIngest's (sample
# checkout exchange, batches of 500, 4 unacked per stream) from
# scripts/benchingest, STREAMS agents spread over the collectors. PostgreSQL
# is a throwaway local cluster (scripts/postgres.sh) with fsync on, as the
# SQLite store runs synchronous=FULL; every measurement starts on an empty
# store (a new database or file).
#
#   scripts/bench-postgres.sh
#   ROUNDS=5 INGEST_N=100000 STREAMS=4 scripts/bench-postgres.sh
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
INGEST_N=${INGEST_N:-60000}
STREAMS=${STREAMS:-4}
work=$(mktemp -d)
chmod 711 "$work" # the postgres user reaches its cluster inside
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -d "$work/pg/data" ] && scripts/postgres.sh stop "$work/pg"
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/collector" ./collector
go build -o "$work/benchingest" ./scripts/benchingest
url=$(scripts/postgres.sh start "$work/pg")
psql=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/psql

# collectors STORE N: starts N collectors on STORE; targets lists their gRPC addresses.
collectors() {
	local addrs=()
	for i in $(seq "$2"); do
		local g=$((17070 + 10 * i)) h=$((17071 + 10 * i))
		"$work/collector" serve --store "$1" --grpc-listen "127.0.0.1:$g" --http-listen "127.0.0.1:$h" >>"$work/collector.log" 2>&1 &
		pids+=($!)
		for _ in $(seq 100); do curl -fs "http://127.0.0.1:$h/readyz" >/dev/null && break; sleep 0.1; done
		addrs+=("127.0.0.1:$g")
	done
	targets=$(IFS=,; echo "${addrs[*]}")
}

stop_collectors() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}

# measure NAME STORE N
measure() {
	collectors "$2" "$3"
	echo "$1 $("$work/benchingest" --target "$targets" --streams "$STREAMS" --n "$INGEST_N" | awk '{ print $1 }')"
	stop_collectors
}

echo "== ingest into collector serve, $INGEST_N exchanges per run, $STREAMS streams, $ROUNDS interleaved rounds (exchanges/s)"
echo "load before: $(cat /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
	measure sqlite "$work/r$r.db" 1
	rm -f "$work/r$r.db"*
	for n in 1 2; do
		db="bench_${r}_$n"
		"$psql" -q "$url" -c "CREATE DATABASE $db"
		measure "postgres-$n" "${url%/*}/$db" "$n"
		"$psql" -q "$url" -c "DROP DATABASE $db"
	done
done | tee "$work/ingest.txt"
echo "load after: $(cat /proc/loadavg)"
awk '{ n[$1]++; s[$1] += $2 }
	END { b = s["sqlite"] / n["sqlite"]; p1 = s["postgres-1"] / n["postgres-1"]; p2 = s["postgres-2"] / n["postgres-2"];
		printf "mean: sqlite %.0f/s, postgres one collector %.0f/s (%.2fx sqlite), two collectors %.0f/s (%.2fx one)\n",
			b, p1, p1 / b, p2, p2 / p1 }' "$work/ingest.txt"
echo "(on a shared machine: compare each figure with its baseline from the same run)"
