#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL cluster for tests and benchmarks,
# with the Debian binaries (package postgresql), as the postgres user when
# run as root. It listens on 127.0.0.1 on a free port, trusts local
# connections, and prints the URL of its database "reprise":
#
#   url=$(scripts/postgres.sh start /tmp/reprise-pg)   # then --store "$url"
#   REPRISE_TEST_POSTGRES=$url go test ./collector/store/
#   scripts/postgres.sh stop /tmp/reprise-pg           # stops it, deletes DIR
#
# FSYNC=off trades durability for speed (tests); the default keeps it on.
set -euo pipefail
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] || { echo "postgres.sh: no /usr/lib/postgresql/*/bin: install the postgresql package (scripts/deps.sh)" >&2; exit 2; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case $cmd in
start)
	[ -e "$dir" ] && { echo "postgres.sh: $dir exists" >&2; exit 2; }
	mkdir -p "$dir"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
	as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C >"$dir/initdb.log"
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
		"-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=${FSYNC:-on}" start >/dev/null
	as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres reprise
	echo "postgres://postgres@127.0.0.1:$port/reprise"
	;;
stop)
	[ -d "$dir/data" ] || { echo "postgres.sh: no cluster in $dir" >&2; exit 2; }
	as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
	rm -rf "$dir"
	;;
*)
	echo "usage: $0 start|stop DIR" >&2
	exit 2
	;;
esac
