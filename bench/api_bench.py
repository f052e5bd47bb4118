#!/usr/bin/env python3
"""List and show with 1,000 VMs defined: vine's REST API against libvirt, side by side.

Called by bench/api.sh with a private vine daemon and a libvirtd running. Two levels, each side
measured alternately in the same run:

* API: vine's HTTPS API (one keep-alive connection, an API token) `GET /api/vms` and
  `GET /api/vms/NAME`, against libvirt's Python binding doing what `virsh list --all` does
  (list all domains, then each one's state) and what `virsh dominfo` does (lookup by name, info,
  OS type, autostart, persistence, managed save);
* CLI: `vine vm list --json` and `vine vm show NAME --json` against `virsh list --all` and
  `virsh dominfo NAME` (a process each time, as an operator or a script would run them).

Prints a Markdown table: p50 and p99 latency and sequential throughput for each.
"""

import http.client
import json
import os
import ssl
import statistics
import subprocess
import sys
import time

import libvirt

VINE, SOCK, DATA, PORT, TOKEN, N_VMS = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
API_ROUNDS = int(os.environ.get("API_ROUNDS", "300"))
CLI_ROUNDS = int(os.environ.get("CLI_ROUNDS", "40"))
ENV = dict(os.environ, VINE_SOCKET=SOCK)
NAMES = [f"bench-{i:04d}" for i in range(N_VMS)]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class Vine:
    def __init__(self):
        ctx = ssl.create_default_context(cafile=f"{DATA}/tls/cert.pem")
        self.c = http.client.HTTPSConnection("127.0.0.1", PORT, context=ctx)
        self.h = {"Authorization": f"Bearer {TOKEN}"}

    def get(self, path):
        self.c.request("GET", path, headers=self.h)
        r = self.c.getresponse()
        body = r.read()
        if r.status != 200:
            sys.exit(f"GET {path}: {r.status} {body[:200]!r}")
        return json.loads(body)


def main():
    conn = libvirt.open("qemu:///system")
    vine = Vine()
    # Both sides know the same 1,000 VMs.
    assert len(vine.get("/api/vms")) == N_VMS
    assert len([d for d in conn.listAllDomains(0) if d.name().startswith("bench-")]) == N_VMS

    def vine_list():
        v = vine.get("/api/vms")
        assert len(v) == N_VMS

    def vine_show(name):
        v = vine.get(f"/api/vms/{name}")
        assert v["name"] == name

    def lv_list():
        doms = conn.listAllDomains(0)
        states = [d.state()[0] for d in doms]
        assert len(states) >= N_VMS

    def lv_show(name):
        d = conn.lookupByName(name)
        d.info()
        d.OSType()
        d.autostart()
        d.isPersistent()
        d.hasManagedSaveImage(0)

    def cli(cmd):
        out = subprocess.run(cmd, env=ENV, capture_output=True)
        if out.returncode != 0:
            sys.exit(f"{cmd}: {out.stderr.decode()}")

    cases = [
        ("API", "list", lambda i: vine_list(), lambda i: lv_list(), API_ROUNDS),
        ("API", "show", lambda i: vine_show(NAMES[i * 7 % N_VMS]), lambda i: lv_show(NAMES[i * 7 % N_VMS]), API_ROUNDS),
        ("CLI", "list", lambda i: cli([VINE, "vm", "list", "--json"]),
         lambda i: cli(["virsh", "-c", "qemu:///system", "list", "--all"]), CLI_ROUNDS),
        ("CLI", "show", lambda i: cli([VINE, "vm", "show", NAMES[i * 7 % N_VMS], "--json"]),
         lambda i: cli(["virsh", "-c", "qemu:///system", "dominfo", NAMES[i * 7 % N_VMS]]), CLI_ROUNDS),
    ]
    rows = []
    for level, op, fv, fl, rounds in cases:
        for f in (fv, fl):  # warm up
            for i in range(3):
                f(i)
        tv, tl = [], []
        for i in range(rounds):
            for f, acc in ((fv, tv), (fl, tl)) if i % 2 == 0 else ((fl, tl), (fv, tv)):
                t = time.perf_counter()
                f(i)
                acc.append(time.perf_counter() - t)
        rows.append((level, op, tv, tl))
        print(f"{level} {op}: vine p50 {statistics.median(tv) * 1e3:.2f} ms, libvirt p50 {statistics.median(tl) * 1e3:.2f} ms",
              file=sys.stderr)
    print(f"| level | operation (1,000 VMs defined) | vine p50 | vine p99 | vine ops/s | libvirt p50 | libvirt p99 "
          f"| libvirt ops/s | libvirt / vine (p50) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    names = {("API", "list"): "list all (GET /api/vms vs listAllDomains + state)",
             ("API", "show"): "show one (GET /api/vms/NAME vs dominfo calls)",
             ("CLI", "list"): "`vine vm list --json` vs `virsh list --all`",
             ("CLI", "show"): "`vine vm show --json` vs `virsh dominfo`"}
    for level, op, tv, tl in rows:
        fmt = lambda xs: (f"{statistics.median(xs) * 1e3:.2f} ms", f"{pct(xs, 99) * 1e3:.2f} ms",
                          f"{len(xs) / sum(xs):.0f}")
        v, l = fmt(tv), fmt(tl)
        print(f"| {level} | {names[(level, op)]} | {v[0]} | {v[1]} | {v[2]} | {l[0]} | {l[1]} | {l[2]} "
              f"| {statistics.median(tl) / statistics.median(tv):.2f}× |")


main()
