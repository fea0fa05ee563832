#!/usr/bin/env python3
"""Plays kubectl for scripts/ci-replay.sh's test: answers
`kubectl -n NS port-forward svc/NAME :7070` the way kubectl does, by
forwarding a fresh loopback port to $REPRISE_TEST_FORWARD_TO, and records its
arguments and pid in $REPRISE_TEST_KUBECTL_LOG. A service named "missing"
fails as kubectl does for a service that does not exist."""
import os
import socket
import sys
import threading

with open(os.environ["REPRISE_TEST_KUBECTL_LOG"], "w") as log:
    log.write("%d %s\n" % (os.getpid(), " ".join(sys.argv[1:])))
if sys.argv[1:3] != ["-n", sys.argv[2]] or sys.argv[3:4] != ["port-forward"] or sys.argv[5:] != [":7070"]:
    sys.exit("unexpected arguments: %s" % sys.argv[1:])
if sys.argv[4] == "svc/missing":
    sys.exit('error: services "missing" not found')

host, port = os.environ["REPRISE_TEST_FORWARD_TO"].rsplit(":", 1)
lis = socket.socket()
lis.bind(("127.0.0.1", 0))
lis.listen()
print("Forwarding from 127.0.0.1:%d -> 7070" % lis.getsockname()[1], flush=True)


def pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        dst.close()


while True:
    conn, _ = lis.accept()
    upstream = socket.create_connection((host, int(port)))
    threading.Thread(target=pipe, args=(conn, upstream), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, conn), daemon=True).start()
