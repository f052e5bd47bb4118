#!/usr/bin/env python3
"""The measurements of bench/pool.sh on a pool lab (scripts/pool-lab.sh), one phase per call.

Runs inside host h1's network namespace (so etcd's addresses are reachable); the daemons' local
sockets are files, reached from any namespace. Each phase adds its figures to RESULTS (a JSON
file); `report` prints them as a Markdown table.

    pool_bench.py RESULTS create HOSTS FIRST LAST WORKERS KERNEL   VMs FIRST..LAST-1, pinned, in parallel
    pool_bench.py RESULTS rest N HOSTS SECONDS      CPU at rest, hosts online, memory (exit 4: a host offline)
    pool_bench.py RESULTS etcd N                    etcd's size and the pool's keys
    pool_bench.py RESULTS list N ROUNDS             GET /api/vms on h1 against etcd's range read
    pool_bench.py RESULTS control N VM ROUNDS       pause/resume to the owner h2 and through h1
    pool_bench.py RESULTS placed N KERNEL           N creates without a host, through h1
    pool_bench.py RESULTS hollow N HOSTS TEMPLATE   N hollow VMs: records written straight into etcd
    pool_bench.py RESULTS set JSON                  adds the figures of a JSON object
    pool_bench.py RESULTS report                    the tables

N is the number of VMs created when the figures are taken (a step of the run).

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
import subprocess
import sys
import threading
import time

RESULTS = sys.argv[1]
ETCD = os.environ.get("LAB_ETCD", "")
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


def save_step(n, **figures):
    """Adds figures to the measurements taken with N VMs created."""
    data = json.load(open(RESULTS)) if os.path.exists(RESULTS) else {}
    data.setdefault("steps", {}).setdefault(str(n), {}).update(figures)
    json.dump(data, open(RESULTS, "w"), indent=1)


class Unix(http.client.HTTPConnection):
    """HTTP/1.1 over a daemon's local socket (root on it is the administrator), kept alive."""

    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.unix = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
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


def create(hosts, first, last, workers, kernel):
    """VMs FIRST..LAST-1: VM i goes to host h(i mod HOSTS + 1), each sent to its own host's
    socket by WORKERS threads. The first failure stops the step (exit status 3)."""
    jobs = queue.Queue()
    for i in range(first, last):
        jobs.put((f"vm-{i:05d}", f"h{i % hosts + 1}"))
    lat, failed, done, end = [], [], [0], [0.0]
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
                return
            finally:
                c.close()
            with lock:
                lat.append(dt)
                done[0] += 1
                end[0] = time.perf_counter()

    n = last - first
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    shown = 0
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        el = time.perf_counter() - t0
        if el - shown >= 10:
            shown = el
            log(f"created {first + done[0]}/{last} ({done[0] / el:.0f}/s in this step), {len(failed)} failed")
    wall = max(end[0] - t0, 1e-9)
    save_step(last, create={"vms": n, "created": done[0], "reached": first + done[0], "workers": workers, "seconds": wall,
                            "per_s": done[0] / wall, "failed": len(failed),
                            "first_failure": failed[0] if failed else None, **ms(lat or [0])})
    log(f"VMs {first}..{last - 1}: {done[0]} in {wall:.1f} s, {done[0] / wall:.0f} creates/s, {len(failed)} failed")
    if failed:
        log(f"the first failure: {failed[0]}")
        sys.exit(3)


def placed(n, kernel):
    """N creates without a host, one after another, through h1 (placement reads the whole pool)."""
    lat, where, failed = [], {}, []
    t0 = time.perf_counter()
    for i in range(n):
        c = Unix(sock("h1"))
        try:
            dt, raw = call(c, "POST", "/api/vms", new_vm(f"placed-{i:03d}", kernel))
        except (SystemExit, OSError, http.client.HTTPException) as e:
            failed.append(f"placed-{i:03d}: {e!r}")
            continue
        finally:
            c.close()
        lat.append(dt)
        h = json.loads(raw).get("host")
        where[h] = where.get(h, 0) + 1
    wall = time.perf_counter() - t0
    save(placed={"vms": n, "created": len(lat), "failed": len(failed), "first_failure": failed[0] if failed else None,
                 "seconds": wall, "per_s": len(lat) / wall, "hosts": len(where), "on_h1": where.get("h1", 0),
                 **ms(lat or [0])})
    log(f"{n} placed creates in {wall:.1f} s: {n / wall:.1f}/s on {len(where)} hosts")


def hollow(n, hosts, template):
    """Writes N hollow VMs straight into etcd: VM i's owner key and record (TEMPLATE's record,
    an off VM's, with its name and host h(i mod HOSTS + 1)), as an owner would publish them; no
    daemon has them. They measure the pool-wide list without N VM actors on this machine."""
    gw = http.client.HTTPConnection(ETCD_H1, timeout=60)
    _, raw = call(gw, "POST", "/v3/kv/range", {"key": b64(f"/vine/vms/{template}")})
    record = json.loads(base64.b64decode(json.loads(raw)["kvs"][0]["value"]))
    jobs = queue.Queue()
    for i in range(n):
        jobs.put((f"hollow-{i:05d}", f"h{i % hosts + 1}"))

    def worker():
        c = http.client.HTTPConnection(ETCD_H1, timeout=60)
        while True:
            try:
                name, h = jobs.get_nowait()
            except queue.Empty:
                return
            rec = dict(record, name=name, host=h)
            call(c, "POST", "/v3/kv/txn", {"success": [
                {"requestPut": {"key": b64(f"/vine/owners/{name}"), "value": b64(h)}},
                {"requestPut": {"key": b64(f"/vine/vms/{name}"), "value": b64(json.dumps(rec))}}]})

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    save(hollow={"vms": n, "template": template, "record_bytes": len(json.dumps(record))})
    log(f"{n} hollow VMs written to etcd in {time.perf_counter() - t0:.1f} s")


def proc_ticks(pidfiles):
    t = 0
    for f in pidfiles:
        with open(f"/proc/{open(f).read().strip()}/stat") as st:
            fields = st.read().rsplit(")", 1)[1].split()
        t += int(fields[11]) + int(fields[12])  # utime, stime
    return t


def rss_mb(pidfile):
    for line in open(f"/proc/{open(pidfile).read().strip()}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rest(n, hosts, seconds):
    """With N VMs: hosts online (as h1 lists them), the CPU the daemons and etcd's members use
    over SECONDS with nothing asked of them, and the daemons' memory."""
    lab = os.environ["LAB_DIR"]
    daemons = [f"{lab}/h{i}/daemon.pid" for i in range(1, hosts + 1)]
    etcds = [f"{lab}/h{i}/etcd.pid" for i in (1, 2, 3)]
    hz = os.sysconf("SC_CLK_TCK")
    d0, e0 = proc_ticks(daemons), proc_ticks(etcds)
    time.sleep(seconds)
    d1, e1 = proc_ticks(daemons), proc_ticks(etcds)
    c = Unix(sock("h1"))
    online = sum(h["state"] == "online" for h in json.loads(call(c, "GET", "/api/hosts")[1]))
    figures = {"seconds": seconds, "daemons_cpu": (d1 - d0) / hz / seconds, "etcd_cpu": (e1 - e0) / hz / seconds,
               "online": online, "daemons_mb": sum(rss_mb(f) for f in daemons), "h1_mb": rss_mb(daemons[0]),
               "etcd_mb": sum(rss_mb(f) for f in etcds), "threads": sum(len(os.listdir(f"/proc/{open(f).read().strip()}/task")) for f in daemons)}
    save_step(n, rest=figures)
    log(f"at rest with {n} VMs: daemons {figures['daemons_cpu'] * 100:.0f} % of a core, etcd {figures['etcd_cpu'] * 100:.0f} %, "
        f"{online}/{hosts} hosts online, {figures['threads']} daemon threads")
    return online


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


def etcd(n):
    """etcd's database size (every member) and the keys and value bytes under the pool's prefixes."""
    out = subprocess.run(["etcdctl", "--endpoints", ETCD, "endpoint", "status", "-w", "json"],
                         check=True, capture_output=True, text=True).stdout
    members = json.loads(out)
    db = max(m["Status"]["dbSize"] for m in members)
    in_use = max(m["Status"].get("dbSizeInUse", 0) for m in members)
    revision = members[0]["Status"]["header"]["revision"]
    c = http.client.HTTPConnection(ETCD_H1, timeout=60)
    keys = {}
    for p in ("/vine/vms/", "/vine/owners/", "/vine/"):
        _, raw = etcd_range(c, p)
        kvs = json.loads(raw).get("kvs", [])
        keys[p] = {"keys": len(kvs),
                   "key_bytes": sum(len(base64.b64decode(kv["key"])) for kv in kvs),
                   "value_bytes": sum(len(base64.b64decode(kv.get("value", ""))) for kv in kvs)}
    save_step(n, etcd={"db": db, "in_use": in_use, "revision": int(revision), "keys": keys})
    log(f"etcd with {n} VMs: dbSize {db / 1e6:.1f} MB, in use {in_use / 1e6:.1f} MB, revision {revision}, "
        f"{keys['/vine/vms/']['keys']} VM records ({keys['/vine/vms/']['value_bytes'] / 1e6:.1f} MB of values)")


def list_vs_etcd(n, rounds):
    """Interleaved, ROUNDS times each: vine's GET /api/vms on h1 (its socket, kept alive) against
    the same range read on etcd: its HTTP gateway (same client, kept alive) and etcdctl (a process
    each time), with etcdctl reading one key as the floor of its own start and connection."""
    vine, gw = Unix(sock("h1")), http.client.HTTPConnection(ETCD_H1, timeout=60)
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
    log(f"list: vine p50 {ms(times[names[0]])['p50']:.1f} ms, etcd gateway {ms(times[names[1]])['p50']:.1f} ms")
    save_step(n, list={"vms": n_vms, "etcd_keys": n_kvs, "rounds": rounds, "sides": {k: ms(v) for k, v in times.items()}})


def control(n, vm, rounds):
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
    save_step(n, control={"vm": vm, "rounds": rounds, "sides": {k: ms(v) for k, v in times.items()}})
    log(f"control: pause p50 {ms(times['pause h2'])['p50']:.1f} ms to h2, {ms(times['pause h1'])['p50']:.1f} ms through h1")


def report():
    d = json.load(open(RESULTS))
    steps = sorted((int(k), v) for k, v in d["steps"].items())
    top = max(n for n, _ in steps)
    out = [f"# bench/pool.sh, {d['date']}, commit {d['commit']} (vine binary: {d['vine']})", "",
           f"{d['hosts']} hosts (real vine daemons, none hollow); VMs created pinned, {top // max(1, d['hosts'])} a host "
           "at the last step, all off (no emulator runs for them); one real guest (g1, guest kit, TCG) on h2.",
           f"Reached: {d.get('reached', top)} VMs. {d.get('stopped', '')}", ""]
    if d.get("hollow"):
        out[2] = (f"{d['hosts']} hosts (real vine daemons); {d['hollow']['vms']:,} hollow VMs: records of an off VM "
                  f"({d['hollow']['record_bytes']} bytes) written straight into etcd, no daemon has them; one real "
                  "guest (g1, guest kit, TCG) on h2.")

    def f(x, fmt="{:.1f}"):
        return fmt.format(x) if x is not None else "–"

    out += ["| VMs | creates/s (this step) | create p50 / p99 | failed | hosts online | daemons' CPU at rest | "
            "etcd's CPU at rest | daemon threads | daemons' RSS | etcd dbSize | in use |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, st in steps:
        c, r, e = st.get("create"), st.get("rest"), st.get("etcd")
        out.append(f"| {n:,} | {f(c and c['per_s'], '{:.0f}')} | "
                   f"{f(c and c['p50'], '{:.0f}')} / {f(c and c['p99'], '{:.0f}')} ms | {f(c and c['failed'], '{}')} | "
                   f"{f(r and r['online'], '{}')} | {f(r and r['daemons_cpu'] * 100, '{:.0f}')} % | "
                   f"{f(r and r['etcd_cpu'] * 100, '{:.0f}')} % | {f(r and r['threads'], '{:,}')} | "
                   f"{f(r and r['daemons_mb'], '{:,.0f}')} MB | {f(e and e['db'] / 1e6, '{:.1f}')} MB | "
                   f"{f(e and e['in_use'] / 1e6, '{:.1f}')} MB |")
    out += ["", "| VMs | vine GET /api/vms p50 / p99 | etcd range (gateway) p50 / p99 | etcdctl get --prefix p50 / p99 | "
            "etcdctl one key p50 | vine GET /api/hosts p50 | vine / gateway p50 | vine / etcdctl p50 |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, st in steps:
        if "list" not in st:
            continue
        L = st["list"]["sides"]
        v, g, c1, c0, h = (L["vine GET /api/vms (h1)"], L["etcd range read (HTTP gateway)"],
                           L["etcdctl get --prefix (a process)"], L["etcdctl get one key (a process)"], L["vine GET /api/hosts (h1)"])
        out.append(f"| {n:,} | {v['p50']:.1f} / {v['p99']:.1f} ms | {g['p50']:.1f} / {g['p99']:.1f} ms | "
                   f"{c1['p50']:.1f} / {c1['p99']:.1f} ms | {c0['p50']:.1f} ms | {h['p50']:.1f} ms | "
                   f"{v['p50'] / g['p50']:.2f}× | {v['p50'] / c1['p50']:.2f}× |")
    out += ["", "| VMs | pause to h2 p50 / p99 | pause through h1 p50 / p99 | resume to h2 p50 / p99 | "
            "resume through h1 p50 / p99 | through h1 − to h2, p50 (pause, resume) | new TLS connection h1 → h2 + GET p50 | "
            "one etcd read p50 |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, st in steps:
        if "control" not in st:
            continue
        C = st["control"]["sides"]
        pp = lambda k: f"{C[k]['p50']:.1f} / {C[k]['p99']:.1f} ms"
        out.append(f"| {n:,} | {pp('pause h2')} | {pp('pause h1')} | {pp('resume h2')} | {pp('resume h1')} | "
                   f"{C['pause h1']['p50'] - C['pause h2']['p50']:+.1f}, {C['resume h1']['p50'] - C['resume h2']['p50']:+.1f} ms | "
                   f"{C['tls']['p50']:.1f} ms | {C['etcd']['p50']:.1f} ms |")
    pl = d.get("placed")
    if pl:
        out += ["", f"Creates without a host (placement), one at a time through h1, after the last step: {pl['created']} of "
                f"{pl['vms']} in {pl['seconds']:.1f} s, {pl['per_s']:.1f}/s; p50 {pl['p50']:.0f} ms, p99 {pl['p99']:.0f} ms; "
                f"on {pl['hosts']} hosts ({pl['on_h1']} on h1 itself, the rest forwarded); {pl['failed']} failed"
                + (f" (the first: {pl['first_failure']})" if pl["first_failure"] else "")]
    e0 = d["steps"]["0"]["etcd"]
    out.append("")
    for n, st in steps:
        e = st.get("etcd")
        if n == 0 or not e:
            continue
        k = e["keys"]
        per = 1000 / max(1, k["/vine/vms/"]["keys"])  # g1 and any placed VM counted too
        out.append(f"- etcd with {n:,} VMs created ({k['/vine/vms/']['keys']:,} records): dbSize {(e['db'] - e0['db']) * per / 1e6:.2f} MB per 1,000 VMs above the empty "
                   f"pool's {e0['db'] / 1e6:.2f} MB ({(e['in_use'] - e0['in_use']) * per / 1e6:.2f} MB in use; revision "
                   f"{e['revision']:,}); live data per 1,000 VMs: /vine/vms/ {k['/vine/vms/']['keys'] * per:.0f} keys, "
                   f"{(k['/vine/vms/']['key_bytes'] + k['/vine/vms/']['value_bytes']) * per / 1e3:.0f} kB; /vine/owners/ "
                   f"{k['/vine/owners/']['keys'] * per:.0f} keys, "
                   f"{(k['/vine/owners/']['key_bytes'] + k['/vine/owners/']['value_bytes']) * per / 1e3:.0f} kB")
    print("\n".join(out))


def main():
    phase, a = sys.argv[2], sys.argv[3:]
    if phase == "create":
        create(int(a[0]), int(a[1]), int(a[2]), int(a[3]), a[4])
    elif phase == "rest":
        if rest(int(a[0]), int(a[1]), float(a[2])) < int(a[1]):
            sys.exit(4)
    elif phase == "placed":
        placed(int(a[0]), a[1])
    elif phase == "etcd":
        etcd(int(a[0]))
    elif phase == "list":
        list_vs_etcd(int(a[0]), int(a[1]))
    elif phase == "control":
        control(int(a[0]), a[1], int(a[2]))
    elif phase == "hollow":
        hollow(int(a[0]), int(a[1]), a[2])
    elif phase == "set":
        save(**json.loads(a[0]))
    elif phase == "report":
        report()
    else:
        sys.exit(f"pool-bench: unknown phase {phase}")


if __name__ == "__main__":
    main()
