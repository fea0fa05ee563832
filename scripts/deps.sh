#!/usr/bin/env bash
# Installs the Debian packages the demo and the tests use, when they are
# missing: clang/llvm/libbpf-dev/bpftool regenerate the eBPF objects; curl and
# jq drive the demo; wrk, nginx, node and python are the fidelity matrix's
# servers and clients; bc is used by the capture benchmark; postgresql is the
# shared store the store tests and bench-postgres run against. Without root or
# apt it only says what is missing (the tests that need a tool then skip,
# except in CI).
set -euo pipefail
packages=(clang llvm libbpf-dev bpftool curl jq wrk bc nginx-light nodejs python3 postgresql)
packages+=(python3-requests) # Python requests, a client of the fidelity matrix (agent/fidelity)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "deps: missing Debian packages: ${missing[*]} (install them as root)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
