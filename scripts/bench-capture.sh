#!/usr/bin/env bash
# Capture overhead and completeness: wrk against a keep-alive Go server
# (scripts/benchserver) without capture (A) and with the agent capturing the
# server's connections and exporting to a collector (B), interleaved
# A B A B A B per workload so that a loaded machine affects both alike.
# Prints median ratios B/A of throughput and latency, the agent's CPU
# seconds and peak RSS, and completeness: exchanges captured whole and
# delivered to the collector / requests the server handled.
# Needs root (eBPF) and wrk. Stops everything it starts.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "bench-capture: run as root: the agent loads eBPF programs" >&2
  exit 2
fi
command -v wrk >/dev/null || { echo "bench-capture: needs wrk (apt-get install wrk)" >&2; exit 2; }

DURATION=${DURATION:-15s}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
CONNS=${CONNS:-50}
WORKLOADS=${WORKLOADS:-get post}
srv_addr=127.0.0.1:18099
grpc_addr=127.0.0.1:17070
agent_http=127.0.0.1:17072
work=$(mktemp -d /tmp/bench-capture.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_for() {
  for _ in $(seq 150); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench-capture: $1 did not come up" >&2
  exit 2
}

# metric NAME [LABEL]: one value from the agent's /metrics.
metric() {
  curl -fsS "http://$agent_http/metrics" | awk -v n="$1" -v l="${2:-}" \
    '$1 == n || (l != "" && index($1, n "{") == 1 && index($1, l)) { v += $2 } END { printf "%d", v }'
}

# to_ms VALUE: wrk's "1.23ms" / "850.00us" / "1.02s" in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
    else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 }
    else print v }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

make --no-print-directory build >/dev/null
go build -o "$work/benchserver" ./scripts/benchserver
head -c 49152 /dev/urandom | base64 -w0 >"$work/body" # 65536 bytes
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
local f = io.open("$work/body", "rb")
wrk.body = f:read("*a")
f:close()
LUA

# run_wrk NAME ARGS...: runs wrk, writes "rps p50ms p99ms" to $work/NAME.res.
run_wrk() {
  local name=$1
  shift
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" >"$work/$name.out" 2>&1
  local rps p50 p99
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$work/$name.out")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$work/$name.out")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$work/$name.out")")
  echo "$rps $p50 $p99" >"$work/$name.res"
}

# bench WORKLOAD PATH WRK-ARGS...
bench() {
  local workload=$1 path=$2
  shift 2
  "$work/benchserver" --listen "$srv_addr" >"$work/server.log" 2>&1 &
  local srv=$!
  pids+=("$srv")
  wait_for "http://$srv_addr/count"
  for round in $(seq "$ROUNDS"); do
    run_wrk "$workload-A-$round" "$@" "http://$srv_addr$path"

    rm -rf "$work/store" && mkdir "$work/store"
    bin/collector serve --grpc-listen "$grpc_addr" --http-listen 127.0.0.1:17071 --store "$work/store/reprise.db" >"$work/collector.log" 2>&1 &
    local coll=$!
    wait_for http://127.0.0.1:17071/healthz
    bin/agent --collector "$grpc_addr" --http-listen "$agent_http" --pids "$srv" --paths "$path" >"$work/agent.log" 2>&1 &
    local agent=$!
    wait_for "http://$agent_http/healthz"
    local before after
    before=$(curl -fsS "http://$srv_addr/count")
    run_wrk "$workload-B-$round" "$@" "http://$srv_addr$path"
    after=$(curl -fsS "http://$srv_addr/count")
    # wrk closes its connections at the end; wait until the agent has
    # emitted them and the collector acknowledged everything.
    local handled=$((after - before)) ex=0 acked=0 backlog=0
    for _ in $(seq 300); do
      ex=$(metric reprise_agent_exchanges_total)
      acked=$(metric reprise_agent_exported_exchanges_total)
      backlog=$(metric reprise_agent_drops_total 'reason="export_backlog"')
      [ "$ex" -ge "$handled" ] && [ $((acked + backlog)) -ge "$ex" ] && break
      sleep 0.2
    done
    local incomplete drops cpu hwm ccpu
    incomplete=$(metric reprise_agent_incomplete_exchanges_total)
    drops=$(curl -fsS "http://$agent_http/metrics" | awk '/^reprise_agent_drops_total/ && $2 > 0 { printf "%s=%s ", $1, $2 }')
    cpu=$(awk -v t="$(getconf CLK_TCK)" '{ print ($14 + $15) / t }' "/proc/$agent/stat")
    ccpu=$(awk -v t="$(getconf CLK_TCK)" '{ print ($14 + $15) / t }' "/proc/$coll/stat")
    hwm=$(awk '/^VmHWM:/ { print $2 / 1024 }' "/proc/$agent/status")
    kill "$agent" "$coll"
    wait "$agent" "$coll" 2>/dev/null || true
    local whole=$((ex - incomplete < acked ? ex - incomplete : acked))
    echo "$cpu $hwm $handled $whole $ex $incomplete $acked" >>"$work/$workload-B-$round.res"
    printf '%-6s round %d: A %s req/s, B %s req/s; server handled %d, captured whole %d (emitted %d, incomplete %d, delivered %d); agent cpu %.1fs, peak rss %.0f MB; collector cpu %.1fs %s\n' \
      "$workload" "$round" "$(cut -d' ' -f1 "$work/$workload-A-$round.res")" "$(head -1 "$work/$workload-B-$round.res" | cut -d' ' -f1)" \
      "$handled" "$whole" "$ex" "$incomplete" "$acked" "$cpu" "$hwm" "$ccpu" "${drops:+drops: $drops}"
  done
  kill "$srv"
  wait "$srv" 2>/dev/null || true

  col() { for f in "$work/$workload-$1-"*.res; do awk -v c="$2" 'NR == 1 { print $c }' "$f"; done | median; }
  colB2() { for f in "$work/$workload-B-"*.res; do awk -v c="$1" 'NR == 2 { print $c }' "$f"; done | median; }
  local handled whole emitted
  sum() { for f in "$work/$workload-B-"*.res; do awk -v c="$1" 'NR == 2 { print $c }' "$f"; done | paste -sd+ | bc; }
  handled=$(sum 3) whole=$(sum 4)
  # Whole in the agent, whatever the collector then accepted.
  emitted=$(($(sum 5) - $(sum 6)))
  awk -v w="$workload" -v ra="$(col A 1)" -v rb="$(col B 1)" -v la="$(col A 2)" -v lb="$(col B 2)" \
    -v pa="$(col A 3)" -v pb="$(col B 3)" -v cpu="$(colB2 1)" -v rss="$(colB2 2)" -v h="$handled" -v wh="$whole" -v em="$emitted" 'BEGIN {
    printf "%-6s median: throughput %.0f -> %.0f req/s (%.3fx), p50 %.3f -> %.3f ms (%.2fx), p99 %.3f -> %.3f ms (%.2fx), agent cpu %.1fs, peak rss %.0f MB, completeness (whole and delivered) %d/%d = %.2f%%, whole in the agent %.2f%%\n",
      w, ra, rb, rb / ra, la, lb, lb / la, pa, pb, pb / pa, cpu, rss, wh, h, 100 * wh / h, 100 * em / h }' | tee -a "$work/summary"
}

echo "bench-capture: wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds, A = no capture, B = agent + collector; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for w in $WORKLOADS; do
  case $w in
  get) bench get /small ;;
  post) bench post /upload -s "$work/post.lua" ;;
  *) echo "bench-capture: unknown workload $w (get, post)" >&2; exit 2 ;;
  esac
done
echo
cat "$work/summary"
