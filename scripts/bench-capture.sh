#!/usr/bin/env bash
# Capture overhead and completeness: wrk against a keep-alive Go server
# (scripts/benchserver) without capture (A) and with the agent capturing the
# server's connections (B), interleaved A B A B A B per workload so that a
# loaded machine affects both alike. Workloads (WORKLOADS, default all):
# get, a GET with a 215-byte response; post, a 64 KiB POST answered with a
# few bytes; echo, a 64 KiB POST whose body the server sends back in one
# write, so 64 KiB move each way.
#
# In B the agent exports to scripts/benchsink, an IngestService that counts,
# acknowledges and discards every batch: in production the collector runs on
# other nodes (a Deployment), so putting it on the traced host's cores
# measures the collector's sanitizing and storage, not the agent.
# SINK=collector exports to a real collector with a fresh store instead (the
# full stack on one machine).
#
# Prints median ratios B/A of throughput and latency, the agent's CPU
# seconds and peak RSS, the CPU of server and wrk in A and B (the kernel
# programs run in the server's syscalls, so they show as server CPU), and
# completeness: exchanges assembled whole by the agent / requests the server
# handled, and whole exchanges the sink received / the same.
# PROFILE_DIR=dir saves a 10 s CPU profile of the agent in each workload's
# first B run. AGENT_BIN runs another agent binary (default bin/agent, built
# here). Needs root (eBPF) and wrk. Stops everything it starts.
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
WORKLOADS=${WORKLOADS:-get post echo}
SINK=${SINK:-sink}
PROFILE_DIR=${PROFILE_DIR:-}
AGENT_FLAGS=${AGENT_FLAGS:-}
AGENT_BIN=${AGENT_BIN:-bin/agent} # e.g. an older build, to compare two agents
case $SINK in
sink | collector) ;;
*) echo "bench-capture: SINK must be sink or collector, got $SINK" >&2; exit 2 ;;
esac
srv_addr=127.0.0.1:18099
grpc_addr=127.0.0.1:17070
sink_http=127.0.0.1:17071
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

# cpu PID: user+system CPU seconds of a process so far.
cpu() { awk -v t="$(getconf CLK_TCK)" '{ print ($14 + $15) / t }' "/proc/$1/stat"; }

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
go build -o "$work/benchsink" ./scripts/benchsink
head -c 49152 /dev/urandom | base64 -w0 >"$work/body" # 65536 bytes
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
local f = io.open("$work/body", "rb")
wrk.body = f:read("*a")
f:close()
LUA

# run_wrk NAME SERVER-PID ARGS...: runs wrk, writes "rps p50ms p99ms
# server-cpu-s wrk-cpu-s" to $work/NAME.res.
run_wrk() {
  local name=$1 srv=$2
  shift 2
  local s0
  s0=$(cpu "$srv")
  /usr/bin/time -f "%U %S" -o "$work/$name.time" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" >"$work/$name.out" 2>&1
  local rps p50 p99 scpu wcpu
  scpu=$(awk -v a="$s0" -v b="$(cpu "$srv")" 'BEGIN { print b - a }')
  wcpu=$(awk 'END { print $1 + $2 }' "$work/$name.time")
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$work/$name.out")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$work/$name.out")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$work/$name.out")")
  echo "$rps $p50 $p99 $scpu $wcpu" >"$work/$name.res"
}

# start_sink: the IngestService the agent exports to; sets $sink.
start_sink() {
  if [ "$SINK" = sink ]; then
    "$work/benchsink" --grpc-listen "$grpc_addr" --http-listen "$sink_http" >"$work/sink.log" 2>&1 &
  else
    rm -rf "$work/store" && mkdir "$work/store"
    bin/collector serve --grpc-listen "$grpc_addr" --http-listen "$sink_http" --store "$work/store/reprise.db" >"$work/sink.log" 2>&1 &
  fi
  sink=$!
  wait_for "http://$sink_http/healthz"
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
    run_wrk "$workload-A-$round" "$srv" "$@" "http://$srv_addr$path"

    start_sink
    # shellcheck disable=SC2086 # AGENT_FLAGS is a list of flags
    "$AGENT_BIN" --collector "$grpc_addr" --http-listen "$agent_http" --pids "$srv" --paths "$path" --pprof $AGENT_FLAGS >"$work/agent.log" 2>&1 &
    local agent=$!
    wait_for "http://$agent_http/healthz"
    local before after prof=
    if [ -n "$PROFILE_DIR" ] && [ "$round" = 1 ]; then
      mkdir -p "$PROFILE_DIR"
      (sleep 2 && curl -fsS -o "$PROFILE_DIR/agent-$workload.pprof" "http://$agent_http/debug/pprof/profile?seconds=10") &
      prof=$!
    fi
    before=$(curl -fsS "http://$srv_addr/count")
    run_wrk "$workload-B-$round" "$srv" "$@" "http://$srv_addr$path"
    after=$(curl -fsS "http://$srv_addr/count")
    [ -z "$prof" ] || wait "$prof" || true
    # wrk closes its connections at the end; wait until the agent has
    # emitted them and the sink acknowledged (or the agent dropped) them.
    local handled=$((after - before)) ex=0 acked=0 backlog=0
    for _ in $(seq 300); do
      ex=$(metric reprise_agent_exchanges_total)
      acked=$(metric reprise_agent_exported_exchanges_total)
      backlog=$(metric reprise_agent_drops_total 'reason="export_backlog"')
      [ "$ex" -ge "$handled" ] && [ $((acked + backlog)) -ge "$ex" ] && break
      sleep 0.2
    done
    local incomplete drops truncated acpu hwm scpu received=-1
    incomplete=$(metric reprise_agent_incomplete_exchanges_total)
    truncated=$(metric reprise_agent_kernel_truncated_bytes_total)
    drops=$(curl -fsS "http://$agent_http/metrics" | awk '/^reprise_agent_drops_total/ && $2 > 0 { printf "%s=%s ", $1, $2 }')
    acpu=$(cpu "$agent")
    scpu=$(cpu "$sink")
    hwm=$(awk '/^VmHWM:/ { print $2 / 1024 }' "/proc/$agent/status")
    if [ "$SINK" = sink ]; then
      received=$(curl -fsS "http://$sink_http/stats" | cut -d' ' -f2)
    fi
    kill "$agent" "$sink"
    wait "$agent" "$sink" 2>/dev/null || true
    local whole=$((ex - incomplete))
    echo "$acpu $hwm $handled $whole $received $acked $scpu" >>"$work/$workload-B-$round.res"
    printf '%-5s round %d: A %s req/s, B %s req/s; server handled %d, whole in the agent %d (emitted %d, incomplete %d), whole received by the %s %s, acked %d; CPU s: agent %.1f, %s %.1f, server A %.1f B %.1f, wrk A %.1f B %.1f; agent peak rss %.0f MB; kernel truncated %d bytes %s\n' \
      "$workload" "$round" "$(cut -d' ' -f1 "$work/$workload-A-$round.res")" "$(head -1 "$work/$workload-B-$round.res" | cut -d' ' -f1)" \
      "$handled" "$whole" "$ex" "$incomplete" "$SINK" "$([ "$received" -ge 0 ] && echo "$received" || echo n/a)" "$acked" \
      "$acpu" "$SINK" "$scpu" "$(cut -d' ' -f4 "$work/$workload-A-$round.res")" "$(head -1 "$work/$workload-B-$round.res" | cut -d' ' -f4)" \
      "$(cut -d' ' -f5 "$work/$workload-A-$round.res")" "$(head -1 "$work/$workload-B-$round.res" | cut -d' ' -f5)" \
      "$hwm" "$truncated" "${drops:+drops: $drops}"
  done
  kill "$srv"
  wait "$srv" 2>/dev/null || true

  col() { for f in "$work/$workload-$1-"*.res; do awk -v c="$2" 'NR == 1 { print $c }' "$f"; done | median; }
  colB2() { for f in "$work/$workload-B-"*.res; do awk -v c="$1" 'NR == 2 { print $c }' "$f"; done | median; }
  maxB2() { for f in "$work/$workload-B-"*.res; do awk -v c="$1" 'NR == 2 { print $c }' "$f"; done | sort -g | tail -1; }
  sum() { for f in "$work/$workload-B-"*.res; do awk -v c="$1" 'NR == 2 { print $c }' "$f"; done | paste -sd+ | bc; }
  local handled whole received
  handled=$(sum 3) whole=$(sum 4) received=$(sum 5)
  awk -v w="$workload" -v ra="$(col A 1)" -v rb="$(col B 1)" -v la="$(col A 2)" -v lb="$(col B 2)" \
    -v pa="$(col A 3)" -v pb="$(col B 3)" -v cpu="$(colB2 1)" -v rss="$(maxB2 2)" -v h="$handled" -v wh="$whole" -v rc="$received" \
    -v sa="$(col A 4)" -v sb="$(col B 4)" -v wa="$(col A 5)" -v wb="$(col B 5)" -v kc="$(colB2 7)" -v sink="$SINK" 'BEGIN {
    printf "%-5s median: throughput %.0f -> %.0f req/s (%.3fx), p50 %.3f -> %.3f ms (%.2fx), p99 %.3f -> %.3f ms (%.2fx); CPU s per run: agent %.1f, %s %.1f, server %.1f -> %.1f, wrk %.1f -> %.1f; agent peak rss (max) %.0f MB; whole in the agent %d/%d = %.2f%%",
      w, ra, rb, rb / ra, la, lb, lb / la, pa, pb, pb / pa, cpu, sink, kc, sa, sb, wa, wb, rss, wh, h, 100 * wh / h
    if (rc >= 0) printf ", whole received by the sink %d/%d = %.2f%%", rc, h, 100 * rc / h
    printf "\n" }' | tee -a "$work/summary"
}

echo "bench-capture: wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds, A = no capture, B = agent exporting to the $SINK; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for w in $WORKLOADS; do
  case $w in
  get) bench get /small ;;
  post) bench post /upload -s "$work/post.lua" ;;
  echo) bench echo /echo -s "$work/post.lua" ;;
  *) echo "bench-capture: unknown workload $w (get, post, echo)" >&2; exit 2 ;;
  esac
done
echo
cat "$work/summary"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
