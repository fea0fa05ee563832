#!/bin/sh
# Builds reprise/agent, reprise/collector and reprise/replayer (tag $TAG,
# default latest) with deploy/Dockerfile and no registry: the binaries are
# built here, imported as the BUILDER image with busybox's sh for the build
# stage's one RUN, and the final stages start from scratch. Starts
# containerd and dockerd when none runs, and stops what it started. Run from
# the repository's root, as root (make images).
set -eu
tag=${TAG:-latest}
docker=${DOCKER:-docker}
work=$(mktemp -d)
started=""
cleanup() {
  for pid in $started; do kill "$pid" 2>/dev/null && while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done; done
  rm -rf "$work"
}
trap cleanup EXIT

# wait_for CMD...: up to 30 s for CMD to succeed.
wait_for() {
  for _ in $(seq 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "images: timed out waiting for: $*" >&2
  return 1
}

if ! "$docker" info >/dev/null 2>&1; then
  # dockerd stops before the containerd it uses, so it is listed first.
  if ! ctr version >/dev/null 2>&1; then
    containerd >"$work/containerd.log" 2>&1 &
    cpid=$!
    wait_for ctr version
  fi
  dockerd --containerd=/run/containerd/containerd.sock >"$work/dockerd.log" 2>&1 &
  started="$!"
  [ -n "${cpid:-}" ] && started="$started $cpid"
  wait_for "$docker" info || { cat "$work/dockerd.log" >&2; exit 1; }
fi

./deploy/image/build.sh "$work/root/out"
mkdir -p "$work/root/bin"
cp "$(command -v busybox)" "$work/root/bin/busybox"
ln -s busybox "$work/root/bin/sh"
tar -C "$work/root" -c . | "$docker" import - "reprise/builder:$tag" >/dev/null
for target in agent collector replayer; do
  "$docker" build -q -f deploy/Dockerfile --build-arg "BUILDER=reprise/builder:$tag" \
    --target "$target" -t "reprise/$target:$tag" .
done
"$docker" image rm "reprise/builder:$tag" >/dev/null
"$docker" image ls --filter reference='reprise/*'
