#!/usr/bin/env bash
# Replay throughput and rate accuracy of bin/replayer against a local Go
# server, each measured next to vegeta at the same settings in the same run
# (interleaved, so a loaded machine slows both alike). Prints a table.
#
#   scripts/bench-replay.sh                 # rates 1000 5000 10000 20000, 5s each
#   RATES="20000" DURATION=10 scripts/bench-replay.sh
set -euo pipefail

cd "$(dirname "$0")/.."
VEGETA_VERSION=v12.12.0
RATES=${RATES:-"1000 5000 10000 20000"}
DURATION=${DURATION:-5}         # seconds per rate measurement
WORKERS=${WORKERS:-64}          # requests in flight for the throughput test
THROUGHPUT_N=${THROUGHPUT_N:-100000}

work=$(mktemp -d)
server_pid=""
cleanup() {
	if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

go build -o bin/replayer ./replayer
if [[ ! -x bin/tools/vegeta ]]; then
	GOBIN="$PWD/bin/tools" go install "github.com/tsenart/vegeta/v12@$VEGETA_VERSION"
fi

# The target: the smallest Go HTTP server, so the client is what is measured.
mkdir -p "$work/server"
cat >"$work/server/main.go" <<'GO'
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(ln.Addr())
	os.Stdout.Close()
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok"))
	}))
}
GO
(cd "$work/server" && go build -o server main.go)
"$work/server/server" >"$work/addr" &
server_pid=$!
for _ in $(seq 50); do [[ -s "$work/addr" ]] && break; sleep 0.1; done
addr=$(cat "$work/addr")

# recording N writes N independent GET exchanges (no connection, so no
# ordering between them) as the JSONL the collector exports.
recording() {
	awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "{\"id\":\"b%d\",\"direction\":\"DIRECTION_INBOUND\",\"startTime\":\"2026-11-24T09:00:00Z\",\"request\":{\"method\":\"GET\",\"target\":\"/bench/%d\",\"host\":\"bench\"},\"response\":{\"statusCode\":200,\"headers\":[{\"name\":\"Content-Type\",\"value\":\"text/plain\"}],\"body\":\"b2s=\"}}\n", i, i }' >"$work/rec.jsonl"
}

# replayer_rate ARGS... prints the achieved send rate the replayer reports.
replayer_rate() {
	bin/replayer run --file "$work/rec.jsonl" --target "http://$addr" --progress 0 "$@" >"$work/out" 2>"$work/err" ||
		{ cat "$work/err" "$work/out" >&2; exit 1; }
	sed -n 's/^sent \([0-9]*\) requests at \([0-9.]*\) req\/s.*dropped$/\1 \2/p' "$work/out"
}

# vegeta_rate ARGS... prints requests and achieved rate of a vegeta attack.
vegeta_rate() {
	echo "GET http://$addr/bench/1" | bin/tools/vegeta attack "$@" | bin/tools/vegeta report -type json |
		python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["requests"], "%.1f" % r["rate"], "%.1f" % (100*r["success"]))'
}

echo "# replay benchmark: $(nproc) CPUs, $(date -u +%FT%TZ), ${DURATION}s per rate"
printf '%-22s %10s %12s %9s %12s %9s %8s\n' "test" "asked/s" "replayer/s" "error%" "vegeta/s" "error%" "ratio"
for rate in $RATES; do
	recording $((rate * DURATION))
	read -r _ r_rate < <(replayer_rate --rate "$rate")
	read -r _ v_rate _ < <(vegeta_rate -rate "$rate" -duration "${DURATION}s")
	printf '%-22s %10d %12.1f %+8.2f%% %12.1f %+8.2f%% %8.3f\n' "rate" "$rate" "$r_rate" \
		"$(python3 -c "print(100*($r_rate-$rate)/$rate)")" "$v_rate" \
		"$(python3 -c "print(100*($v_rate-$rate)/$rate)")" "$(python3 -c "print($r_rate/$v_rate)")"
done

# Throughput: as fast as $WORKERS requests in flight allow.
recording "$THROUGHPUT_N"
start=$(date +%s.%N)
read -r r_n r_rate < <(replayer_rate --workers "$WORKERS")
r_wall=$(python3 -c "print($r_n/($(date +%s.%N)-$start))")
read -r _ v_rate _ < <(vegeta_rate -rate 0 -max-workers "$WORKERS" -workers "$WORKERS" -duration "${DURATION}s")
printf '%-22s %10s %12.1f %9s %12.1f %9s %8.3f\n' "throughput ($WORKERS)" "max" "$r_rate" "" "$v_rate" "" "$(python3 -c "print($r_rate/$v_rate)")"
printf '(replayer throughput including start-up, reading the file and the report: %.1f req/s)\n' "$r_wall"
