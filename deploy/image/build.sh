#!/bin/sh
# Writes to OUT what the images' final stages copy: the three static
# binaries (CGO off: the SQLite driver is pure Go, the eBPF objects are
# embedded), the CA certificates, and passwd and group files naming the
# users the images run as (root for the agent, nonroot 65532 for the
# others), and the empty /data the collector's store volume mounts on. It
# runs in the golang build stage of deploy/Dockerfile and, for
# make images, on the host. Run from the repository's root.
set -eu
out=${1:?usage: build.sh OUT}
mkdir -p "$out/etc/ssl/certs" "$out/data"
for cmd in agent collector replayer; do
  CGO_ENABLED=0 go build -ldflags='-s -w' -o "$out/$cmd" "./$cmd"
done
cp /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$out/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$out/etc/group"
