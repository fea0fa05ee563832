#!/bin/sh
# Creates or updates the Secrets the default deployment (kubectl apply -k
# deploy/) reads, in namespace reprise, with kubectl's current context:
#   reprise-agent-tokens    one key per node, the token of that node's agent
#   reprise-collector-auth  agents.yaml (each agent's id and the SHA-256 of
#                           its token, for --agents-file) and query-token
#   reprise-token-key       token-key, the HMAC key of the tokenize rules
#   reprise-collector-tls   only with --self-signed: a CA (ca.crt) and the
#                           collector's certificate and key signed by it.
#                           Otherwise cert-manager makes it (docs/collector.md).
# Tokens already issued are kept, so run it again after nodes join.
set -eu
ns=reprise
self_signed=false
[ "${1:-}" = --self-signed ] && self_signed=true
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077

# existing SECRET KEY prints a key of a Secret, decoded, or nothing.
existing() {
  kubectl -n "$ns" get secret "$1" -o go-template="{{ index .data \"$2\" | base64decode }}" 2>/dev/null || true
}
token() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"
mkdir "$work/tokens"
echo "agents:" >"$work/agents.yaml"
for node in $(kubectl get nodes -o jsonpath='{.items[*].metadata.name}'); do
  tok=$(existing reprise-agent-tokens "$node")
  [ -n "$tok" ] || tok=$(token)
  printf '%s' "$tok" >"$work/tokens/$node"
  printf '  - id: %s\n    token_sha256: %s\n' "$node" "$(printf '%s' "$tok" | sha256sum | cut -d' ' -f1)" >>"$work/agents.yaml"
done
query=$(existing reprise-collector-auth query-token)
[ -n "$query" ] || query=$(token)
printf '%s' "$query" >"$work/query-token"

tokenkey=$(existing reprise-token-key token-key)
[ -n "$tokenkey" ] || tokenkey=$(token)
printf '%s' "$tokenkey" >"$work/token-key"

apply() { kubectl -n "$ns" create secret generic "$@" --dry-run=client -o yaml | kubectl apply -f -; }
apply reprise-agent-tokens --from-file="$work/tokens"
apply reprise-collector-auth --from-file=agents.yaml="$work/agents.yaml" --from-file=query-token="$work/query-token"
apply reprise-token-key --from-file=token-key="$work/token-key"

if $self_signed; then
  name=reprise-collector.$ns.svc
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj /CN=reprise-ca \
    -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s,DNS:%s.cluster.local,DNS:reprise-collector\n' "$name" "$name" >"$work/ext"
  openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days 825 \
    -extfile "$work/ext" -out "$work/tls.crt" 2>/dev/null
  apply reprise-collector-tls --from-file="$work/tls.crt" --from-file="$work/tls.key" --from-file="$work/ca.crt"
fi
echo "the query token, for the replayer and the CLI (--token-file):"
echo "  kubectl -n $ns get secret reprise-collector-auth -o go-template='{{ index .data \"query-token\" | base64decode }}'"
