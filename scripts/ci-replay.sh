#!/usr/bin/env bash
# Replay recorded production traffic against a freshly deployed build and
# fail the CI job when it misbehaves. The exit code of `replayer run` is
# passed through: 0 every check and goal passed, 1 a check failed, 2 error
# (including "nothing selected", so a broken filter never passes).
#
# Environment:
#   REPRISE_TARGET      base URL of the build under test (required unless
#                       the config maps targets)
#   REPRISE_COLLECTOR   collector gRPC address            (default 127.0.0.1:7070)
#   REPRISE_KUBE_SERVICE  reach the collector of a Kubernetes cluster through
#                       `kubectl port-forward svc/<this>` (e.g. reprise-collector)
#                       instead of REPRISE_COLLECTOR; the job needs kubectl
#                       access to the namespace
#   REPRISE_KUBE_NAMESPACE  its namespace                  (default reprise)
#   KUBECTL             kubectl binary                     (default kubectl)
#   REPRISE_TLS_CA      CA of the collector's certificate: enables TLS
#   REPRISE_TLS_SERVER_NAME  name in that certificate, needed through a
#                       port-forward (e.g. reprise-collector.reprise.svc)
#   REPRISE_TLS_CERT, REPRISE_TLS_KEY  client certificate, for mutual TLS
#   REPRISE_FILE        replay this exported recording instead of the collector
#   REPRISE_CONFIG      replay config file (targets, safety, transforms, compare, goals)
#   REPRISE_SERVICE, REPRISE_SINCE, REPRISE_PATH_PREFIX, REPRISE_METHOD,
#   REPRISE_LIMIT       selection
#   REPRISE_RUN_ID      run id (default: CI_PIPELINE_ID / GITHUB_RUN_ID)
#   REPRISE_REPORT_DIR  where report.json, junit.xml and report.html go (default reports)
#   REPRISE_TOKEN       collector token (read by the replayer itself)
#   REPLAYER            replayer binary (default bin/replayer)
#   Any arguments are passed on, e.g. --allow-writes or --rate 50.
set -uo pipefail

replayer=${REPLAYER:-bin/replayer}
report_dir=${REPRISE_REPORT_DIR:-reports}
mkdir -p "$report_dir" || exit 2

# forward starts a port-forward to the cluster's collector and sets
# collector to its local end; the forward ends with this script.
forward() {
	local ns=${REPRISE_KUBE_NAMESPACE:-reprise} log line
	log=$(mktemp) || exit 2
	"${KUBECTL:-kubectl}" -n "$ns" port-forward "svc/$REPRISE_KUBE_SERVICE" :7070 >"$log" 2>&1 &
	forward_pid=$!
	trap 'kill "$forward_pid" 2>/dev/null; rm -f "$log"' EXIT
	for _ in $(seq 100); do
		line=$(grep -m1 -o '127\.0\.0\.1:[0-9]*' "$log")
		if [[ -n "$line" ]]; then
			collector=$line
			return
		fi
		if ! kill -0 "$forward_pid" 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	echo "ci-replay: port-forward to svc/$REPRISE_KUBE_SERVICE in namespace $ns did not start:" >&2
	cat "$log" >&2
	exit 2
}

collector=${REPRISE_COLLECTOR:-127.0.0.1:7070}
if [[ -n "${REPRISE_KUBE_SERVICE:-}" && -z "${REPRISE_FILE:-}" ]]; then
	forward
fi

args=(run --report-json "$report_dir/report.json" --junit "$report_dir/junit.xml" --report-html "$report_dir/report.html")
if [[ -n "${REPRISE_FILE:-}" ]]; then
	args+=(--file "$REPRISE_FILE")
else
	args+=(--collector "$collector")
fi
[[ -n "${REPRISE_TLS_CA:-}" ]] && args+=(--tls-ca "$REPRISE_TLS_CA")
[[ -n "${REPRISE_TLS_SERVER_NAME:-}" ]] && args+=(--tls-server-name "$REPRISE_TLS_SERVER_NAME")
[[ -n "${REPRISE_TLS_CERT:-}" ]] && args+=(--tls-cert "$REPRISE_TLS_CERT" --tls-key "${REPRISE_TLS_KEY:-}")
[[ -n "${REPRISE_TARGET:-}" ]] && args+=(--target "$REPRISE_TARGET")
[[ -n "${REPRISE_CONFIG:-}" ]] && args+=(--config "$REPRISE_CONFIG")
[[ -n "${REPRISE_SERVICE:-}" ]] && args+=(--service "$REPRISE_SERVICE")
[[ -n "${REPRISE_SINCE:-}" ]] && args+=(--since "$REPRISE_SINCE")
[[ -n "${REPRISE_PATH_PREFIX:-}" ]] && args+=(--path-prefix "$REPRISE_PATH_PREFIX")
[[ -n "${REPRISE_METHOD:-}" ]] && args+=(--method "$REPRISE_METHOD")
[[ -n "${REPRISE_LIMIT:-}" ]] && args+=(--limit "$REPRISE_LIMIT")
run_id=${REPRISE_RUN_ID:-${CI_PIPELINE_ID:-${GITHUB_RUN_ID:-}}}
[[ -n "$run_id" ]] && args+=(--run-id "ci-$run_id")

"$replayer" "${args[@]}" "$@"
code=$?
case $code in
0) echo "ci-replay: replay passed" ;;
1) echo "ci-replay: replay found differences or missed a goal; see $report_dir/report.html" >&2 ;;
*) echo "ci-replay: replay could not run (exit $code)" >&2 ;;
esac
exit "$code"
