#!/usr/bin/env python3
"""Called by bench/cli-start.sh: times each case N times, the cases interleaved (this machine's
speed drifts), each run from the spawn (subprocess.run, output captured, as a script runs a
command) until the process has exited; prints medians and the shipped build against the default
one."""

import os
import random
import socket
import statistics
import subprocess
import sys
import time

SHIPPED, PIE, SOCK, N = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ENV = dict(os.environ, VINE_SOCKET=SOCK)


def run(argv):
    t = time.monotonic()
    out = subprocess.run(argv, env=ENV, capture_output=True)
    d = time.monotonic() - t
    if out.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {out.stderr.decode(errors='replace')}")
    return d


def http_list():
    """GET /api/vms over the daemon's socket from this script: the request without any process."""
    t = time.monotonic()
    s = socket.socket(socket.AF_UNIX)
    s.connect(SOCK)
    s.sendall(b"GET /api/vms HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    s.close()
    d = time.monotonic() - t
    if b" 200 " not in answer.split(b"\r\n", 1)[0]:
        sys.exit(f"GET /api/vms failed: {answer[:200]!r}")
    return d


CASES = {
    "/bin/true (any process)": lambda: run(["/bin/true"]),
    "vine --version, shipped": lambda: run([SHIPPED, "--version"]),
    "vine --version, default build": lambda: run([PIE, "--version"]),
    "GET /api/vms from the script (no process)": http_list,
    "vine vm list, shipped": lambda: run([SHIPPED, "vm", "list"]),
    "vine vm list, default build": lambda: run([PIE, "vm", "list"]),
}


def main():
    res = {k: [] for k in CASES}
    order = list(CASES)
    rng = random.Random(1)
    for _ in range(N):
        rng.shuffle(order)
        for k in order:
            res[k].append(CASES[k]() * 1000)
    print("\n| case | median | 10th percentile |")
    print("|---|---:|---:|")
    for k, v in res.items():
        v = sorted(v)
        print(f"| {k} | {statistics.median(v):.3f} ms | {v[len(v) // 10]:.3f} ms |")
    m = {k: statistics.median(v) for k, v in res.items()}
    for what in ("vine --version", "vine vm list"):
        s, p = m[f"{what}, shipped"], m[f"{what}, default build"]
        print(f"\n{what}: shipped / default build {s / p:.3f} ({s - p:+.3f} ms); shipped − /bin/true "
              f"{s - m['/bin/true (any process)']:+.3f} ms")
    print(f"\nvine vm list, shipped, − GET from the script: "
          f"{m['vine vm list, shipped'] - m['GET /api/vms from the script (no process)']:+.3f} ms (the command's own cost)")


main()
