#!/usr/bin/env python3
"""The measurements of bench/pool.sh on a pool lab (scripts/pool-lab.sh), one phase per call.

Runs inside host h1's network namespace (so etcd's addresses are reachable); the daemons' local
sockets are files, reached from any namespace. Each phase adds its figures to RESULTS (a JSON
file); `report` prints them as a Markdown table.

    pool_bench.py RESULTS create HOSTS VMS WORKERS KERNEL    10,000 pinned creates, in parallel
    pool_bench.py RESULTS placed N KERNEL                     N creates without a host, through h1
    pool_bench.py RESULTS etcd LABEL                          etcd's size and the pool's keys
    pool_bench.py RESULTS list ROUNDS                         GET /api/vms on h1 against etcd's range read
    pool_bench.py RESULTS control VM ROUNDS                   pause/resume to the owner h2 and through h1
    pool_bench.py RESULTS set JSON                            adds the figures of a JSON object
    pool_bench.py RESULTS report                              the table

Environment: the lab's file (LAB_DIR, LAB_ETCD, LAB_hI_SOCKET, LAB_hI_URL), as bench/pool.sh
exports it.
"""

import base64
import http.client
import json
import os
import queue
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time

RESULTS = sys.argv[1]
ETCD = os.environ["LAB_ETCD"]
ETCD_H1 = ETCD.split(",")[0].removeprefix("http://")


def sock(h):
    return os.environ[f"LAB_{h}_SOCKET"]


def log(msg):
    print(f"pool-bench: {msg}", file=sys.stderr, flush=True)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def ms(xs):
    return {"p50": pct(xs, 50) * 1e3, "p99": pct(xs, 99) * 1e3, "n": len(xs)}


def save(**figures):
    data = json.load(open(RESULTS)) if os.path.exists(RESULTS) else {}
    data.update(figures)
    json.dump(data, open(RESULTS, "w"), indent=1)


class Unix(http.client.HTTPConnection):
    """HTTP/1.1 over a daemon's local socket (root on it is the administrator), kept alive."""

    def __init__(self, path):
        super().__init__("localhost", timeout=120)
        self.unix = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(120)
        s.connect(self.unix)
        self.sock = s


def call(conn, method, path, body=None, ok=(200, 201)):
    """One request; returns (seconds from sending to the whole answer read, body bytes)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    t = time.perf_counter()
    conn.request(method, path, data, headers)
    r = conn.getresponse()
    raw = r.read()
    dt = time.perf_counter() - t
    if r.status not in ok:
        sys.exit(f"pool-bench: {method} {path} on {getattr(conn, 'unix', conn.host)}: {r.status} {raw[:300]!r}")
    return dt, raw


def new_vm(name, kernel, host=None):
    v = {"name": name, "memory": 64 << 20, "kernel": kernel}
    if host:
        v["host"] = host
    return v


def create(hosts, vms, workers, kernel):
    """VM i goes to host h(i mod HOSTS + 1), each sent to its own host's socket; WORKERS threads."""
    jobs = queue.Queue()
    for i in range(vms):
        jobs.put((f"vm-{i:05d}", f"h{i % hosts + 1}"))
    lat, failed, done, end, stamps = [], [], [0], [0.0], []
    lock = threading.Lock()

    def worker():
        while True:
            try:
                name, h = jobs.get_nowait()
            except queue.Empty:
                return
            # A connection per create: a worker comes back to a host only every HOSTS creates.
            c = Unix(sock(h))
            try:
                dt, _ = call(c, "POST", "/api/vms", new_vm(name, kernel, h))
            except (SystemExit, OSError, http.client.HTTPException) as e:
                with lock:
                    failed.append(f"{name} on {h}: {e!r}")
                continue
            finally:
                c.close()
            with lock:
                lat.append(dt)
                done[0] += 1
                end[0] = time.perf_counter()
                stamps.append(end[0])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    last = 0
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        el = time.perf_counter() - t0
        if el - last >= 10:
            last = el
            log(f"created {done[0]}/{vms} in {el:.0f} s ({done[0] / el:.0f}/s), {len(failed)} failed")
    wall = end[0] - t0
    if failed:
        sys.exit(f"pool-bench: {len(failed)} creates failed, the first: {failed[0]}")
    # The rate over each tenth of the run's VMs: does it fall as the pool fills?
    tenth = max(1, vms // 10)
    marks = [t0] + stamps[tenth - 1::tenth]
    tenths = [tenth / (b - a) for a, b in zip(marks, marks[1:])]
    save(create={"vms": vms, "hosts": hosts, "workers": workers, "seconds": wall, "per_s": vms / wall,
                 "tenths_per_s": tenths, **ms(lat)})
    log(f"{vms} VMs in {wall:.1f} s: {vms / wall:.0f} creates/s")


def placed(n, kernel):
    """N creates without a host, one after another, through h1 (placement reads the whole pool)."""
    c, lat, where = Unix(sock("h1")), [], {}
    t0 = time.perf_counter()
    for i in range(n):
        dt, raw = call(c, "POST", "/api/vms", new_vm(f"placed-{i:03d}", kernel))
        lat.append(dt)
        h = json.loads(raw).get("host")
        where[h] = where.get(h, 0) + 1
    wall = time.perf_counter() - t0
    save(placed={"vms": n, "seconds": wall, "per_s": n / wall, "hosts": len(where), "on_h1": where.get("h1", 0), **ms(lat)})
    log(f"{n} placed creates in {wall:.1f} s: {n / wall:.1f}/s on {len(where)} hosts")


def b64(s):
    return base64.b64encode(s.encode()).decode()


def prefix_end(p):
    return p[:-1] + chr(ord(p[-1]) + 1)


def etcd_range(conn, prefix, keys_only=False, count_only=False):
    body = {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}
    if keys_only:
        body["keys_only"] = True
    if count_only:
        body["count_only"] = True
    return call(conn, "POST", "/v3/kv/range", body)


def etcd(label):
    """etcd's database size (every member) and the keys and value bytes under the pool's prefixes."""
    out = subprocess.run(["etcdctl", "--endpoints", ETCD, "endpoint", "status", "-w", "json"],
                         check=True, capture_output=True, text=True).stdout
    members = json.loads(out)
    db = max(m["Status"]["dbSize"] for m in members)
    in_use = max(m["Status"].get("dbSizeInUse", 0) for m in members)
    revision = members[0]["Status"]["header"]["revision"]
    c = http.client.HTTPConnection(ETCD_H1, timeout=120)
    keys = {}
    for p in ("/vine/vms/", "/vine/owners/", "/vine/"):
        _, raw = etcd_range(c, p)
        kvs = json.loads(raw).get("kvs", [])
        keys[p] = {"keys": len(kvs),
                   "key_bytes": sum(len(base64.b64decode(kv["key"])) for kv in kvs),
                   "value_bytes": sum(len(base64.b64decode(kv.get("value", ""))) for kv in kvs)}
    save(**{f"etcd_{label}": {"db": db, "in_use": in_use, "revision": int(revision), "keys": keys}})
    log(f"etcd {label}: dbSize {db / 1e6:.1f} MB, in use {in_use / 1e6:.1f} MB, revision {revision}, "
        f"{keys['/vine/vms/']['keys']} VM records ({keys['/vine/vms/']['value_bytes'] / 1e6:.1f} MB of values)")


def list_vs_etcd(rounds):
    """Interleaved, ROUNDS times each: vine's GET /api/vms on h1 (its socket, kept alive) against
    the same range read on etcd: its HTTP gateway (same client, kept alive) and etcdctl (a process
    each time), with etcdctl reading one key as the floor of its own start and connection."""
    vine, gw = Unix(sock("h1")), http.client.HTTPConnection(ETCD_H1, timeout=120)
    n_vms = len(json.loads(call(vine, "GET", "/api/vms")[1]))
    n_kvs = int(json.loads(etcd_range(gw, "/vine/vms/")[1])["count"])
    ctl = ["etcdctl", "--endpoints", ETCD, "get"]

    def run(cmd):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t

    sides = {
        "vine GET /api/vms (h1)": lambda: call(vine, "GET", "/api/vms")[0],
        "etcd range read (HTTP gateway)": lambda: etcd_range(gw, "/vine/vms/")[0],
        "etcdctl get --prefix (a process)": lambda: run(ctl + ["/vine/vms/", "--prefix"]),
        "etcdctl get one key (a process)": lambda: run(ctl + ["/vine/pool"]),
        "vine GET /api/hosts (h1)": lambda: call(vine, "GET", "/api/hosts")[0],
    }
    times = {k: [] for k in sides}
    names = list(sides)
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            times[k].append(sides[k]())
        if (r + 1) % 10 == 0:
            log(f"list: {r + 1}/{rounds} rounds")
    save(list={"vms": n_vms, "etcd_keys": n_kvs, "rounds": rounds, "sides": {k: ms(v) for k, v in times.items()}})


def control(vm, rounds):
    """ROUNDS pause/resume pairs to the owner h2 and through h1 (forwarded over HTTPS), interleaved,
    each side on its own kept-alive connection to the local socket; and the floor of forwarding:
    a new TLS connection from h1's namespace to h2 and one request on it."""
    conns = {"h2": Unix(sock("h2")), "h1": Unix(sock("h1"))}
    info = json.loads(call(conns["h1"], "GET", f"/api/vms/{vm}")[1])
    if info.get("host") != "h2" or info.get("state") != "running":
        sys.exit(f"pool-bench: {vm} should run on h2, found {info.get('state')} on {info.get('host')}")
    url = os.environ["LAB_h2_URL"].removeprefix("https://")
    host, port = url.rsplit(":", 1)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE

    def tls_round_trip():
        t = time.perf_counter()
        c = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
        c.request("GET", f"/api/vms/{vm}")
        c.getresponse().read()
        c.close()
        return time.perf_counter() - t

    gw = http.client.HTTPConnection(ETCD_H1, timeout=30)

    def etcd_get():
        return call(gw, "POST", "/v3/kv/range", {"key": b64(f"/vine/owners/{vm}")})[0]

    times = {k: [] for k in ("pause h2", "resume h2", "pause h1", "resume h1", "tls", "etcd")}
    for r in range(rounds):
        for h in (["h2", "h1"] if r % 2 == 0 else ["h1", "h2"]):
            for action in ("pause", "resume"):
                times[f"{action} {h}"].append(call(conns[h], "POST", f"/api/vms/{vm}/actions/{action}")[0])
        times["tls"].append(tls_round_trip())
        times["etcd"].append(etcd_get())
        if (r + 1) % 10 == 0:
            log(f"control: {r + 1}/{rounds} rounds")
    save(control={"vm": vm, "rounds": rounds, "sides": {k: ms(v) for k, v in times.items()}})


def report():
    d = json.load(open(RESULTS))
    out = [f"# bench/pool.sh, {d['date']}, commit {d['commit']} (vine binary: {d['vine']})", ""]
    out.append(f"{d['hosts']} hosts (real vine daemons, none hollow), {d['create']['vms']} VMs (off: no emulator runs "
               f"for them), one real guest ({d['control']['vm']}, guest kit, TCG) on h2.")
    out += ["", "| measurement | p50 | p99 | n |", "|---|---:|---:|---:|"]
    L = d["list"]["sides"]
    for k, v in L.items():
        out.append(f"| {k} | {v['p50']:.1f} ms | {v['p99']:.1f} ms | {v['n']} |")
    C = d["control"]["sides"]
    labels = {"pause h2": "pause, to the owner h2", "resume h2": "resume, to the owner h2",
              "pause h1": "pause, through h1 (forwarded)", "resume h1": "resume, through h1 (forwarded)",
              "tls": "new TLS connection h1 → h2 + one GET (python)", "etcd": "one etcd key read (HTTP gateway)"}
    for k, v in C.items():
        out.append(f"| {labels[k]} | {v['p50']:.2f} ms | {v['p99']:.2f} ms | {v['n']} |")
    vl, gw, ctl = L["vine GET /api/vms (h1)"], L["etcd range read (HTTP gateway)"], L["etcdctl get --prefix (a process)"]
    out += ["", f"- list: {d['list']['vms']} VMs listed, {d['list']['etcd_keys']} keys read; vine / gateway p50 "
            f"{vl['p50'] / gw['p50']:.2f}×, p99 {vl['p99'] / gw['p99']:.2f}×; vine / etcdctl p50 "
            f"{vl['p50'] / ctl['p50']:.2f}×, p99 {vl['p99'] / ctl['p99']:.2f}× (goal: within 2×)"]
    for a in ("pause", "resume"):
        out.append(f"- {a} through h1 − to h2: p50 {C[a + ' h1']['p50'] - C[a + ' h2']['p50']:+.2f} ms, "
                   f"p99 {C[a + ' h1']['p99'] - C[a + ' h2']['p99']:+.2f} ms (goal: at most +10 ms at p50)")
    cr, pl = d["create"], d["placed"]
    out.append(f"- creates, pinned (`host`), {cr['workers']} in parallel, each to its host's socket: {cr['vms']} in "
               f"{cr['seconds']:.1f} s, **{cr['per_s']:.0f}/s**; one create p50 {cr['p50']:.1f} ms, p99 {cr['p99']:.1f} ms")
    out.append("  rate over each tenth of them: " + ", ".join(f"{r:.0f}" for r in cr["tenths_per_s"]) + " /s")
    out.append(f"- creates without a host (placement), one at a time through h1: {pl['vms']} in {pl['seconds']:.1f} s, "
               f"**{pl['per_s']:.1f}/s**; p50 {pl['p50']:.0f} ms, p99 {pl['p99']:.0f} ms; on {pl['hosts']} hosts "
               f"({pl['on_h1']} on h1 itself, the rest forwarded)")
    e0, e1 = d["etcd_empty"], d["etcd_vms"]
    per = 1000 / cr["vms"]
    k = e1["keys"]
    out.append(f"- etcd dbSize: {e0['db'] / 1e6:.2f} MB with no VM, {e1['db'] / 1e6:.1f} MB after {cr['vms']} "
               f"(in use {e1['in_use'] / 1e6:.1f} MB, revision {e1['revision']}): **{(e1['db'] - e0['db']) * per / 1e6:.2f} MB "
               f"per 1,000 VMs** ({(e1['in_use'] - e0['in_use']) * per / 1e6:.2f} MB in use); live data per 1,000 VMs: "
               f"/vine/vms/ {k['/vine/vms/']['keys'] * per:.0f} keys, "
               f"{(k['/vine/vms/']['key_bytes'] + k['/vine/vms/']['value_bytes']) * per / 1e3:.0f} kB; /vine/owners/ "
               f"{k['/vine/owners/']['keys'] * per:.0f} keys, "
               f"{(k['/vine/owners/']['key_bytes'] + k['/vine/owners/']['value_bytes']) * per / 1e3:.0f} kB")
    m = d["memory"]
    out.append(f"- memory: {d['hosts']} daemons' RSS {m['daemons_mb']:.0f} MB in all ({m['daemons_mb'] / d['hosts']:.1f} MB "
               f"each; h1 {m['h1_mb']:.0f} MB); 3 etcd members {m['etcd_mb']:.0f} MB")
    r = d["rest"]
    out.append(f"- CPU at rest over {r['seconds']} s (the guest idle): the daemons together {float(r['daemons_cpu']) * 100:.0f} % "
               f"of one core, etcd's members {float(r['etcd_cpu']) * 100:.0f} %")
    print("\n".join(out))


def main():
    phase, a = sys.argv[2], sys.argv[3:]
    if phase == "create":
        create(int(a[0]), int(a[1]), int(a[2]), a[3])
    elif phase == "placed":
        placed(int(a[0]), a[1])
    elif phase == "etcd":
        etcd(a[0])
    elif phase == "list":
        list_vs_etcd(int(a[0]))
    elif phase == "control":
        control(a[0], int(a[1]))
    elif phase == "set":
        save(**json.loads(a[0]))
    elif phase == "report":
        report()
    else:
        sys.exit(f"pool-bench: unknown phase {phase}")


if __name__ == "__main__":
    main()
