#!/usr/bin/env bash
# Local end-to-end run: capture an example service's traffic in the kernel,
# store it in the embedded SQLite store, query it, then replay it against a
# changed build of the service and show the mismatch the replay finds.
# Needs root (the agent loads eBPF programs). Stops everything it starts.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: run as root: the agent loads eBPF programs" >&2
  exit 2
fi

work=.demo
grpc_addr=127.0.0.1:7070
v1_addr=127.0.0.1:8081
v2_addr=127.0.0.1:8082
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# wait_for URL: poll until it answers, for up to 15 s.
wait_for() {
  for _ in $(seq 150); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo: $1 did not come up; logs are in $work/" >&2
  exit 2
}

step "build"
make --no-print-directory build
go build -o bin/orders ./examples/orders
rm -rf "$work" && mkdir -p "$work"

step "start the collector (store: $work/reprise.db) and the example service v1 on $v1_addr"
bin/collector serve --grpc-listen "$grpc_addr" --http-listen 127.0.0.1:7071 --store "$work/reprise.db" >"$work/collector.log" 2>&1 &
pids+=($!)
bin/orders --listen "$v1_addr" --version v1 >"$work/orders-v1.log" 2>&1 &
pids+=($!)
wait_for http://127.0.0.1:7071/healthz
wait_for "http://$v1_addr/healthz"

step "start the agent, capturing port ${v1_addr##*:}"
bin/agent --collector "$grpc_addr" --ports "${v1_addr##*:}" --http-listen 127.0.0.1:7072 >"$work/agent.log" 2>&1 &
pids+=($!)
wait_for http://127.0.0.1:7072/healthz

step "drive real traffic at v1 with curl"
base="http://$v1_addr/api/orders"
run() { echo "\$ curl $*"; curl -sS "$@"; echo; }
run -X POST -H 'Content-Type: application/json' -H 'Authorization: Bearer demo-secret-token' \
  -d '{"item":"espresso beans","quantity":2,"unit_price":12.5}' "$base"
run -X POST -H 'Content-Type: application/json' -d '{"item":"milk frother","quantity":1,"unit_price":39.9}' "$base"
run "$base"
run "$base/1"
run "$base/2"
run "$base/404"
requests=6

step "wait for the collector to store the $requests exchanges"
for _ in $(seq 100); do
  n=$(bin/collector query --addr "$grpc_addr" --direction inbound --count)
  [ "$n" -ge "$requests" ] && break
  sleep 0.1
done
echo "stored: $n inbound exchanges"
if [ "$n" -lt "$requests" ]; then
  echo "demo: expected $requests captured exchanges; see $work/agent.log" >&2
  exit 1
fi

step "what was captured (bin/collector query --direction inbound), one line each"
bin/collector query --addr "$grpc_addr" --direction inbound |
  jq -r '"\(.request.method) \(.request.target) -> \(.response.statusCode)  \(.duration)  redactions: \([.redactions[]?.location] | join(","))"'
echo
echo "one exchange in full (the Authorization value was redacted before storing):"
bin/collector query --addr "$grpc_addr" --method POST --limit 1 | jq '{request: .request | {method, target, headers}, response: .response | {statusCode, body: (.body | @base64d)}, redactions}'

step "stop the agent and v1; start v2 (one deliberate change) on $v2_addr"
kill "${pids[2]}" "${pids[1]}"
wait "${pids[2]}" "${pids[1]}" 2>/dev/null || true
bin/orders --listen "$v2_addr" --version v2 >"$work/orders-v2.log" 2>&1 &
pids+=($!)
wait_for "http://$v2_addr/healthz"

step "replay the recording against v2"
set +e
bin/replayer run --collector "$grpc_addr" --target "http://$v2_addr" --allow-writes --report-json "$work/report.json"
code=$?
set -e
echo "replayer exit code: $code (1 = mismatches found)"
echo
echo "report ($work/report.json), failed exchanges:"
jq '{total, passed, failed, mismatches: [.exchanges[] | select(.passed | not) | {method, target, differences}]}' "$work/report.json"
if [ "$code" -ne 1 ] || [ "$(jq .failed "$work/report.json")" -ne 1 ]; then
  echo "demo: expected the replay to find exactly one mismatch" >&2
  exit 1
fi
step "done: the replay caught v2's change"
