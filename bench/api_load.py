#!/usr/bin/env python3
"""The management API under load: vine's HTTPS API against libvirt's, side by side in one run.

Called by bench/api-load.sh with a private vine daemon and a libvirtd running, each holding four
running VMs (the same guest-kit kernel and initrd, 256 MiB, one vCPU, TCG).

    api_load.py VINE_DATA PORT TOKEN PASSWORD DURATION_S CONCURRENCY...

For each side, first the operations with no load (one client, nothing else happening), then at
each concurrency C: C clients, each with its own connection, go round list, show, console page
and metrics as fast as they are answered (or, with THINK_MS set, pausing 0 to 2 × THINK_MS
between requests, as people and dashboards do), 20 more clients log in over and over (pausing
likewise), and the four VMs
cycle start, save, restore, off, for DURATION_S seconds. The sides take turns; they never run at
the same time.

* vine: `GET /api/vms`, `GET /api/vms/NAME`, `GET /api/vms/NAME/console?limit=65536` (the
  newest 64 KiB of the serial log), `GET /metrics` (Prometheus text) over HTTPS keep-alive
  connections with an API token; a login is a new TLS connection and `POST /api/login`.
* libvirt (Python binding on qemu:///system, one connection per client): list is what
  `virsh list --all` does (all domains, then each one's state); show is what `virsh dominfo`
  does; metrics is `virConnectGetAllDomainStats` (what `virsh domstats` does); a login is
  `virConnectOpen` + close. libvirt has no call that pages through a console's history (its
  log file is read from disk), so that row has no libvirt figure.

Last, for vine only: 1,000 connections held open by a slow client (500 finished their TLS
handshake and trickle a request header a byte at a time, 500 never finish it) while another
client sends `GET /api/vms/NAME` every 100 ms; the slowest answer is reported.

Prints Markdown tables (stdout) and progress (stderr). Exits 1 if any request failed.
"""

import http.client
import json
import multiprocessing as mp
import os
import random
import resource
import socket
import ssl
import statistics
import sys
import threading
import time

import libvirt

DATA, PORT, TOKEN, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
DURATION = float(sys.argv[5])
LEVELS = [int(c) for c in sys.argv[6:]] or [10, 50, 200]
VMS = [f"load-{i}" for i in range(4)]
LOGINS = int(os.environ.get("LOGINS", "20"))
IDLE_ROUNDS = int(os.environ.get("IDLE_ROUNDS", "1000"))
# Each client's pause between requests, uniformly 0 to 2 × THINK_MS (0: back to back).
THINK_S = float(os.environ.get("THINK_MS", "0")) / 1000
# For finding where time goes: SIDES=vine measures one side, CYCLE=0 leaves the VMs running.
SIDES = os.environ.get("SIDES", "vine libvirt").split()
CYCLE = os.environ.get("CYCLE", "1") != "0"
OPS = ["list", "show", "console", "metrics"]
CA = f"{DATA}/tls/cert.pem"
# The clients share this machine's cores with the guests. A client woken by its answer may wait
# for a core behind a guest's QEMU (up to a scheduler slice, 1.4 ms here), which is the client's
# delay, not the server's; with CLIENT_SLICE_US (default 100) each client thread asks Linux
# (>= 6.12, EEVDF) for that short a slice, as vine's request threads do, so it runs when woken, as
# a client on another machine would. The same clients measure both sides. CLIENT_SLICE_US=0
# leaves the default slice.
CLIENT_SLICE_NS = int(os.environ.get("CLIENT_SLICE_US", "100")) * 1000
CLIENT_RT = os.environ.get("CLIENT_RT", "1") == "1"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


# --- clients -----------------------------------------------------------------------------------


def short_slice():
    """Asks for CLIENT_SLICE_NS as this thread's scheduler slice (sched_setattr, normal policy);
    by default (CLIENT_RT=1), the round-robin real-time policy instead."""
    if CLIENT_RT:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
        return
    if not CLIENT_SLICE_NS:
        return
    import ctypes
    import struct
    libc = ctypes.CDLL(None, use_errno=True)
    # struct sched_attr, first version: size, policy, flags, nice, priority, runtime, deadline, period
    attr = ctypes.create_string_buffer(struct.pack("IIQiIQQQ", 48, 0, 0, os.getpriority(os.PRIO_PROCESS, 0),
                                                   0, CLIENT_SLICE_NS, 0, 0))
    if libc.syscall(314, 0, attr, 0) != 0:  # SYS_sched_setattr on x86_64
        log(f"cannot shorten a client's scheduler slice: {os.strerror(ctypes.get_errno())}")


class VineClient:
    def __init__(self):
        self.ctx = ssl.create_default_context(cafile=CA)
        self.c = http.client.HTTPSConnection("127.0.0.1", PORT, context=self.ctx, timeout=60)
        self.h = {"Authorization": f"Bearer {TOKEN}"}

    def get(self, path):
        try:
            self.c.request("GET", path, headers=self.h)
            r = self.c.getresponse()
            body = r.read()
        except (OSError, http.client.HTTPException):
            self.c.close()
            self.c = http.client.HTTPSConnection("127.0.0.1", PORT, context=self.ctx, timeout=60)
            raise
        if r.status != 200:
            raise RuntimeError(f"GET {path}: {r.status} {body[:200]!r}")
        return body

    def op(self, name, i):
        vm = VMS[i % len(VMS)]
        if name == "list":
            assert len(json.loads(self.get("/api/vms"))) == len(VMS)
        elif name == "show":
            assert json.loads(self.get(f"/api/vms/{vm}"))["name"] == vm
        elif name == "console":
            json.loads(self.get(f"/api/vms/{vm}/console?limit=65536"))
        elif name == "metrics":
            assert b"vine_" in self.get("/metrics")
        elif name == "login":
            c = http.client.HTTPSConnection("127.0.0.1", PORT, context=self.ctx, timeout=60)
            try:
                c.request("POST", "/api/login", json.dumps({"user": "admin", "password": PASSWORD}),
                          {"Content-Type": "application/json"})
                r = c.getresponse()
                body = r.read()
                if r.status != 200:
                    raise RuntimeError(f"login: {r.status} {body[:200]!r}")
            finally:
                c.close()
        else:
            return False
        return True

    def control(self, vm, action):
        c = http.client.HTTPSConnection("127.0.0.1", PORT, context=self.ctx, timeout=120)
        c.request("POST", f"/api/vms/{vm}/actions/{action}", "", self.h)
        r = c.getresponse()
        body = r.read()
        c.close()
        if r.status >= 300:
            raise RuntimeError(f"{action} {vm}: {r.status} {body[:200]!r}")


class LibvirtClient:
    def __init__(self):
        self.conn = libvirt.open("qemu:///system")

    def op(self, name, i):
        vm = VMS[i % len(VMS)]
        if name == "list":
            doms = self.conn.listAllDomains(0)
            assert len([d.state()[0] for d in doms if d.name().startswith("load-")]) == len(VMS)
        elif name == "show":
            d = self.conn.lookupByName(vm)
            d.info()
            d.OSType()
            d.autostart()
            d.isPersistent()
            d.hasManagedSaveImage(0)
        elif name == "metrics":
            self.conn.getAllDomainStats(0, 0)
        elif name == "login":
            libvirt.open("qemu:///system").close()
        else:
            return False
        return True

    def control(self, vm, action):
        d = self.conn.lookupByName(vm)
        if action in ("start", "restore"):
            d.create()
        elif action == "save":
            d.managedSave(0)
        elif action == "off":
            d.destroy()


CLIENTS = {"vine": VineClient, "libvirt": LibvirtClient}


# --- load --------------------------------------------------------------------------------------


def queued_s():
    """Seconds this thread has spent runnable but waiting for a CPU (Linux schedstat): the part of
    a request's time that is the client's own delay, not the server's."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def client_thread(side, ops, seed, deadline, out):
    """One client: its own connection, round the operations until the deadline."""
    short_slice()
    try:
        c = CLIENTS[side]()
    except Exception as e:  # noqa: BLE001 - a failed connect is a failed request
        out.append(("connect", 0.0, repr(e)))
        return
    i = seed
    rng = random.Random(seed)
    if THINK_S:
        time.sleep(rng.uniform(0, 2 * THINK_S))
    while time.time() < deadline:
        name = ops[i % len(ops)]
        w, t, at = queued_s(), time.perf_counter(), time.time()
        try:
            if c.op(name, i):
                out.append((name, time.perf_counter() - t, None, at, queued_s() - w))
        except Exception as e:  # noqa: BLE001 - counted and reported
            out.append((name, time.perf_counter() - t, repr(e)[:300], at, queued_s() - w))
        i += 1
        if THINK_S:
            time.sleep(rng.uniform(0, 2 * THINK_S))


def client_process(side, ops, threads, first_seed, start_at, deadline, queue):
    # Python hands its lock between threads every 5 ms by default, which would show up as the
    # clients' own latency; 0.5 ms keeps the harness out of the tail.
    sys.setswitchinterval(0.0005)
    out = []
    while time.time() < start_at:
        time.sleep(0.01)
    ts = [threading.Thread(target=client_thread, args=(side, ops, first_seed + k, deadline, out))
          for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    queue.put(out)


def cycler(side, vm, stop, out):
    """start, save, restore, off, over and over (the VM is running when this begins)."""
    c = CLIENTS[side]()
    steps = ["save", "restore", "off", "start"]
    k = 0
    while not stop.is_set():
        action = steps[k % 4]
        t, at = time.perf_counter(), time.time()
        try:
            c.control(vm, action)
            out.append((f"vm {action} {vm}", time.perf_counter() - t, None, at))
        except Exception as e:  # noqa: BLE001
            out.append((f"vm {action} {vm}", time.perf_counter() - t, repr(e)[:300], at))
            time.sleep(1)
        k += 1
        stop.wait(1.0)
    # Leave it running, as it was found.
    if steps[(k - 1) % 4] in ("save", "off"):
        try:
            c.control(vm, "restore" if steps[(k - 1) % 4] == "save" else "start")
        except Exception as e:  # noqa: BLE001
            log(f"{side}: could not bring {vm} back: {e}")


def under_load(side, concurrency):
    ops = OPS if side == "vine" else [o for o in OPS if o != "console"]
    procs_n = min(25, concurrency)
    per = [concurrency // procs_n + (1 if k < concurrency % procs_n else 0) for k in range(procs_n)]
    queue = mp.Queue()
    start_at = time.time() + 3 + concurrency / 50
    deadline = start_at + DURATION
    procs = []
    seed = 0
    for n in per:
        procs.append(mp.Process(target=client_process, args=(side, ops, n, seed, start_at, deadline, queue)))
        seed += n
    procs.append(mp.Process(target=client_process, args=(side, ["login"], LOGINS, 0, start_at, deadline, queue)))
    for p in procs:
        p.start()
    stop = threading.Event()
    cyc_out = []
    while time.time() < start_at:
        time.sleep(0.01)
    cyclers = [threading.Thread(target=cycler, args=(side, vm, stop, cyc_out)) for vm in VMS if CYCLE]
    for t in cyclers:
        t.start()
    samples = []
    for _ in procs:
        samples.extend(queue.get())
    for p in procs:
        p.join()
    stop.set()
    for t in cyclers:
        t.join()
    return samples, cyc_out


def idle(side):
    short_slice()
    c = CLIENTS[side]()
    samples = []
    for name in OPS + ["login"]:
        for i in range(3):
            c.op(name, i)
        for i in range(IDLE_ROUNDS if name != "login" else IDLE_ROUNDS // 4):
            t = time.perf_counter()
            try:
                if c.op(name, i):
                    samples.append((name, time.perf_counter() - t, None))
            except Exception as e:  # noqa: BLE001
                samples.append((name, time.perf_counter() - t, repr(e)[:300]))
    return samples


def slowest(side, samples, cyc, n=8):
    """Logs the slowest requests of a phase with when they began, beside the VM operations under
    way then (times in seconds from the phase's first request): where a tail comes from."""
    timed = [s for s in samples if len(s) > 4 and s[0] != "login"]
    if not timed:
        return
    for op in ("list", "show"):
        xs = sorted((s for s in timed if s[0] == op), key=lambda s: -s[1])
        tail = xs[:max(1, len(xs) // 100)]
        if tail:
            log(f"{side}: the slowest 1% of {op} ({len(tail)} requests, {tail[-1][1] * 1e3:.1f} ms and over): "
                f"the clients waited for a CPU {sum(s[4] for s in tail) / sum(s[1] for s in tail):.0%} of their time")
    t0 = min(s[3] for s in timed)
    for name, dt, err, at, queued in sorted(timed, key=lambda s: -s[1])[:n]:
        during = [f"{c[0]} ({c[3] - t0:.2f}+{c[1]:.2f} s)" for c in cyc if c[3] <= at + dt and at <= c[3] + c[1]]
        clock = time.strftime("%H:%M:%S", time.gmtime(at)) + f".{int(at * 1e6) % 1000000:06d}"
        log(f"{side}: slow {name} {dt * 1e3:.0f} ms (the client waited {queued * 1e3:.0f} ms of it for a CPU) "
            f"at {at - t0:.3f} s ({clock} UTC); "
            f"VM operations then: {', '.join(during) or 'none'}")


def by_op(samples):
    ops = {}
    for name, dt, err, *_ in samples:
        o = ops.setdefault(name, {"ok": [], "errors": []})
        (o["errors"].append(err) if err else o["ok"].append(dt))
    return ops


# --- slow clients ------------------------------------------------------------------------------


def slow_clients(n=1000, hold_s=20.0):
    """vine only: n connections held open by a slow client while another client asks every 100 ms."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    ctx = ssl.create_default_context(cafile=CA)
    held = []
    for k in range(n):
        s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        if k % 2 == 0:
            s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
            s.sendall(b"G")
        held.append(s)
    log(f"vine: {n} slow connections open")
    stop = threading.Event()

    def trickle():
        header = b"ET /api/vms HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 64
        pos = 0
        while not stop.wait(1.0):
            for s in held[::2]:
                try:
                    s.sendall(header[pos % len(header):pos % len(header) + 1])
                except OSError:
                    pass
            pos += 1

    t = threading.Thread(target=trickle)
    t.start()
    c = VineClient()
    worst, times, errors = 0.0, [], 0
    end = time.time() + hold_s
    while time.time() < end:
        t0 = time.perf_counter()
        try:
            c.op("show", 0)
        except Exception:  # noqa: BLE001
            errors += 1
        dt = time.perf_counter() - t0
        times.append(dt)
        worst = max(worst, dt)
        time.sleep(0.1)
    stop.set()
    t.join()
    open_after = 0
    for s in held:
        try:
            s.settimeout(0)
            open_after += 1 if s.recv(1) is None else 0
        except (BlockingIOError, ssl.SSLWantReadError):
            open_after += 1
        except OSError:
            pass
        s.close()
    return {"n": n, "requests": len(times), "errors": errors, "worst": worst, "p50": statistics.median(times),
            "still_open": open_after}


# --- report ------------------------------------------------------------------------------------


def ms(x):
    return f"{x * 1e3:.1f} ms" if x == x else "–"


def main():
    results = {}
    failed = 0
    order = [s for s in ["vine", "libvirt"] if s in SIDES]
    for side in order:
        log(f"{side}: idle")
        results[(side, "idle")] = (by_op(idle(side)), [])
    for c in LEVELS:
        for side in (order if c % 2 == 0 else order[::-1]):
            log(f"{side}: {c} clients + {LOGINS} logins + 4 VMs cycling, {DURATION:.0f} s")
            samples, cyc = under_load(side, c)
            results[(side, c)] = (by_op(samples), cyc)
            slowest(side, samples, cyc)
            n = len(samples)
            errs = sum(1 for s in samples if s[2])
            log(f"{side}: {n} requests, {errs} failed, {len(cyc)} VM operations "
                f"({sum(1 for s in cyc if s[2])} failed)")
    slow = slow_clients()
    log(f"vine: slowest answer with 1,000 slow connections open: {slow['worst'] * 1e3:.0f} ms")

    print("| operation | side | idle p50 | idle p99 | " + " | ".join(f"{c} clients p50 | {c} clients p99" for c in LEVELS)
          + " | p99 at " + str(max(LEVELS)) + " / idle p99 | requests | failed |")
    print("|---|---|---:|---:|" + "---:|---:|" * len(LEVELS) + "---:|---:|---:|")
    for op in OPS + ["login"]:
        for side in order:
            idle_o = results[(side, "idle")][0].get(op)
            if not idle_o:
                continue
            row = [op, side, ms(statistics.median(idle_o["ok"])), ms(pct(idle_o["ok"], 99))]
            total, errs = 0, len(idle_o["errors"])
            for c in LEVELS:
                o = results[(side, c)][0].get(op, {"ok": [], "errors": []})
                row += [ms(statistics.median(o["ok"]) if o["ok"] else float("nan")), ms(pct(o["ok"], 99))]
                total += len(o["ok"]) + len(o["errors"])
                errs += len(o["errors"])
            top = results[(side, max(LEVELS))][0].get(op, {"ok": []})["ok"]
            ratio = pct(top, 99) / pct(idle_o["ok"], 99) if top else float("nan")
            row += [f"{ratio:.1f}×", str(total), str(errs)]
            failed += errs
            print("| " + " | ".join(row) + " |")
    print()
    print("| side | concurrency | requests/s (all clients) | VM operations done | VM operations failed |")
    print("|---|---:|---:|---:|---:|")
    for c in LEVELS:
        for side in order:
            ops, cyc = results[(side, c)]
            n = sum(len(o["ok"]) for name, o in ops.items() if name != "login")
            print(f"| {side} | {c} | {n / DURATION:.0f} | {len(cyc)} | {sum(1 for s in cyc if s[2])} |")
            failed += sum(len(o["errors"]) for name, o in ops.items() if name == "connect")
    print()
    print(f"VM cycling: {'on' if CYCLE else 'off'}.")
    print(f"Pause between a client's requests: {'none' if not THINK_S else f'0 to {2 * THINK_S * 1e3:.0f} ms'}.")
    print(f"Slow clients: {slow['n']} connections held open (half mid-header, half mid-handshake); another "
          f"client's {slow['requests']} requests: p50 {ms(slow['p50'])}, slowest {ms(slow['worst'])}, "
          f"{slow['errors']} failed; {slow['still_open']} slow connections still open at the end.")
    failed += slow["errors"]
    for (side, c), (ops, cyc) in results.items():
        for name, o in ops.items():
            for e in o["errors"][:3]:
                log(f"{side} {c} {name}: {e}")
    if failed or slow["worst"] >= 1.0:
        sys.exit(1)


if __name__ == "__main__":
    mp.set_start_method("fork")
    main()
