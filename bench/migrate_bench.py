"""Live migration, vine beside QEMU driven by hand over QMP, between the same two lab hosts.

Called by bench/migrate.sh with the lab's environment file. For each guest (idle 256 MiB, idle
1 GiB, a 512 MiB guest dirtying 256 MiB), ROUNDS migrations each way of measuring:

- vine: `vine vm migrate NAME --to HOST --json` (vine's defaults: 100 ms downtime limit, no
  bandwidth cap, auto-converge, pause before switchover), alternately h1 -> h2 and back;
- by hand: a QEMU started in h1's namespace with the same kernel, memory and serial console, a
  QEMU in h2's namespace with `-incoming tcp:...`, and `migrate` over QMP with QEMU's defaults
  (300 ms downtime limit, 128 MiB/s), polled every 50 ms until it completes.

Figures: QEMU's own total time and downtime, the wall time of the whole operation, and the gap
the guest's timestamp loop shows: the guest prints "VINE-TICK n" every 10 ms; this script reads
both hosts' console files every millisecond and takes the longest time between two consecutive
ticks arriving. (Under TCG the guest's clocks stop with the VM, so the guest cannot see its own
pause; the ticks' arrival is what anyone talking to it sees.)
"""

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from qmp_client import Qmp  # noqa: E402
from lab_env import ENV, load_env, vine  # noqa: E402

TICK = re.compile(rb"VINE-TICK (\d+)")


class Ticks:
    """Reads console files as they grow and records when each tick arrived."""

    def __init__(self, paths):
        self.paths = paths
        self.arrived = {}
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        files = {}
        rest = {}
        while not self.stop.is_set():
            for p in self.paths:
                if p not in files:
                    try:
                        f = open(p, "rb")
                        f.seek(0, os.SEEK_END)
                        files[p] = f
                        rest[p] = b""
                    except OSError:
                        continue
                data = files[p].read()
                if not data:
                    continue
                now = time.monotonic()
                buf = rest[p] + data
                lines = buf.split(b"\n")
                rest[p] = lines.pop()
                for line in lines:
                    m = TICK.search(line)
                    if m:
                        self.arrived.setdefault(int(m.group(1)), now)
            time.sleep(0.001)

    def wait_for_some(self, n=20, timeout=180):
        deadline = time.monotonic() + timeout
        while len(self.arrived) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no ticks from {self.paths}")
            time.sleep(0.05)

    def gap_ms(self, since, until):
        """The longest time between two consecutive ticks arriving in [since, until]."""
        self.stop.set()
        self.t.join()
        seq = sorted((n, t) for n, t in self.arrived.items() if since - 1 <= t <= until + 1)
        gaps = [(b[1] - a[1]) * 1e3 for a, b in zip(seq, seq[1:]) if b[0] == a[0] + 1]
        return max(gaps) if gaps else None


def console_path(host, vm):
    return os.path.join(ENV[f"LAB_{host}_DATA"], "vms", vm, "run", "console.log")


def baseline_ms(ticks, seconds=2.0):
    """The longest gap between ticks while nothing happens (the floor of the measurement)."""
    t = time.monotonic()
    time.sleep(seconds)
    seq = sorted((n, a) for n, a in ticks.arrived.items() if a >= t)
    gaps = [(b[1] - a[1]) * 1e3 for a, b in zip(seq, seq[1:]) if b[0] == a[0] + 1]
    return max(gaps) if gaps else None


def vine_round(name, src, dst):
    ticks = Ticks([console_path(src, name), console_path(dst, name)])
    ticks.wait_for_some()
    base = baseline_ms(ticks)
    t0 = time.monotonic()
    r = vine(src, "vm", "migrate", name, "--to", dst, "--timeout", "60", "--json", check=False)
    t1 = time.monotonic()
    time.sleep(0.5)
    gap = ticks.gap_ms(t0, t1 + 0.4)
    if r.returncode != 0:
        return {"ok": False, "error": r.stderr.strip()[-200:], "wall_ms": (t1 - t0) * 1e3, "gap_ms": gap,
                "baseline_ms": base}
    v = json.loads(r.stdout)
    p = v["progress"]
    return {
        "ok": True,
        "wall_ms": (t1 - t0) * 1e3,
        "qemu_total_ms": v["qemu"]["qemu_total_ms"],
        "downtime_ms": p["downtime_ms"],
        "ram_mib": p["ram_transferred"] / 2**20,
        "gap_ms": gap,
        "baseline_ms": base,
    }


def hand_round(work, memory, append, i):
    """One migration of a QEMU started by hand in h1's namespace to one in h2's."""
    kit = ENV["KIT"]
    base = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", str(memory), "-smp", "1", "-display", "none",
        "-kernel", f"{kit}/vmlinuz", "-initrd", f"{kit}/initrd.img", "-append", append,
        "-no-shutdown", "-nodefaults", "-no-user-config",
    ]
    src_log, dst_log = f"{work}/hand-src-{i}.log", f"{work}/hand-dst-{i}.log"
    src_qmp, dst_qmp = f"{work}/hand-src-{i}.qmp", f"{work}/hand-dst-{i}.qmp"
    port = 47000 + i
    dst_ip = ENV["LAB_h2_IP"]
    procs = []
    try:
        procs.append(subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{ENV['LAB_h1_NS']}", *base,
             "-serial", f"file:{src_log}", "-qmp", f"unix:{src_qmp},server=on,wait=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{ENV['LAB_h2_NS']}", *base,
             "-serial", f"file:{dst_log}", "-qmp", f"unix:{dst_qmp},server=on,wait=off",
             "-incoming", f"tcp:{dst_ip}:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in (src_log, dst_log):
            deadline = time.monotonic() + 10
            while not os.path.exists(p) and time.monotonic() < deadline:
                time.sleep(0.01)
        ticks = Ticks([src_log, dst_log])
        ticks.wait_for_some()
        base = baseline_ms(ticks)
        src = Qmp(src_qmp)
        t0 = time.monotonic()
        src.cmd("migrate", uri=f"tcp:{dst_ip}:{port}")
        while True:
            s = src.cmd("query-migrate")
            if s.get("status") in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() - t0 > 60:
                src.cmd("migrate_cancel")
                time.sleep(0.5)
                s = {"status": "did not converge within 60 s"}
                break
            time.sleep(0.05)
        t1 = time.monotonic()
        time.sleep(0.5)
        gap = ticks.gap_ms(t0, t1 + 0.4)
        if s.get("status") != "completed":
            return {"ok": False, "error": s.get("status"), "wall_ms": (t1 - t0) * 1e3, "gap_ms": gap,
                    "baseline_ms": base}
        return {
            "ok": True,
            "wall_ms": (t1 - t0) * 1e3,
            "qemu_total_ms": s.get("total-time"),
            "downtime_ms": s.get("downtime"),
            "ram_mib": s["ram"]["transferred"] / 2**20,
            "gap_ms": gap,
            "baseline_ms": base,
        }
    finally:
        for p in procs:
            p.kill()
            p.wait()


def veth_bandwidth():
    """Bytes per second one TCP stream carries from h1 to h2 over the lab's veths."""
    size = 1 << 30
    recv = subprocess.Popen(
        ["nsenter", f"--net=/var/run/netns/{ENV['LAB_h2_NS']}", "python3", "-c",
         "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         f"s.bind(('{ENV['LAB_h2_IP']}', 46999)); s.listen(1); c,_=s.accept()\n"
         "n=0\nwhile True:\n b=c.recv(1<<20)\n if not b: break\n n+=len(b)\nprint(n)"],
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    send = subprocess.run(
        ["nsenter", f"--net=/var/run/netns/{ENV['LAB_h1_NS']}", "python3", "-c",
         "import socket,time\ns=socket.create_connection(('%s', 46999)); b=bytes(1<<20)\n"
         "t=time.monotonic()\nfor _ in range(%d): s.sendall(b)\ns.shutdown(socket.SHUT_WR); s.recv(1)\n"
         "print(time.monotonic()-t)" % (ENV["LAB_h2_IP"], size >> 20)],
        capture_output=True, text=True, check=True)
    recv.wait()
    return size / float(send.stdout.strip())


def med(rows, key):
    vals = [r[key] for r in rows if r.get("ok") and r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, unit=""):
    return "—" if v is None else f"{v:.0f}{unit}"


def main():
    env_file, vine_bin, kit, results = sys.argv[1:5]
    rounds = int(os.environ.get("ROUNDS", "3"))
    load_env(env_file)
    ENV["VINE_BIN"], ENV["KIT"] = vine_bin, kit
    work = os.path.join(ENV["LAB_DIR"], "hand")
    os.makedirs(work, exist_ok=True)
    cmdline = json.load(open(f"{kit}/kit.json"))["cmdline"]
    out = {"date": time.strftime("%Y-%m-%d"), "rounds": rounds, "guests": {}}
    bw = veth_bandwidth()
    out["veth_bytes_per_s"] = bw
    print(f"veth between the hosts: {bw / 2**20:.0f} MiB/s (one TCP stream)", file=sys.stderr)
    guests = [
        ("idle 256 MiB", 256, "vine.tick=1"),
        ("idle 1 GiB", 1024, "vine.tick=1"),
        ("dirtying 256 of 512 MiB", 512, "vine.tick=1 vine.dirty=256"),
    ]
    for i, (label, memory, opts) in enumerate(guests):
        append = f"{cmdline} {opts}"
        name = f"m{i}"
        vine("h1", "vm", "create", name, "--memory", str(memory), "--kernel", f"{kit}/vmlinuz",
             "--initrd", f"{kit}/initrd.img", "--append", append, "--host", "h1")
        vine("h1", "vm", "start", name)
        rows_v, rows_h = [], []
        where = "h1"
        for r in range(rounds):
            to = "h2" if where == "h1" else "h1"
            print(f"{label}: vine round {r + 1}, {where} -> {to}", file=sys.stderr)
            row = vine_round(name, where, to)
            rows_v.append(row)
            if row["ok"]:
                where = to
            print(f"{label}: by hand round {r + 1}", file=sys.stderr)
            rows_h.append(hand_round(work, memory, append, i * 10 + r))
        vine(where, "vm", "off", name)
        vine("h1", "vm", "delete", name, check=False)
        out["guests"][label] = {"memory_mib": memory, "vine": rows_v, "by_hand": rows_h}
    with open(results, "w") as f:
        json.dump(out, f, indent=1)
    print("| guest | who | completed | total (QEMU) ms | downtime (QEMU) ms | gap the ticks show ms "
          "| ticks' gap at rest ms | wall ms | memory sent MiB | physical limit ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, g in out["guests"].items():
        limit = g["memory_mib"] * 2**20 / bw * 1e3
        for who, rows in (("vine", g["vine"]), ("by hand (QEMU defaults)", g["by_hand"])):
            ok = sum(r["ok"] for r in rows)
            print(f"| {label} | {who} | {ok}/{len(rows)} | {fmt(med(rows, 'qemu_total_ms'))} "
                  f"| {fmt(med(rows, 'downtime_ms'))} | {fmt(med(rows, 'gap_ms'))} "
                  f"| {fmt(med(rows, 'baseline_ms'))} "
                  f"| {fmt(med(rows, 'wall_ms'))} | {fmt(med(rows, 'ram_mib'))} | {limit:.0f} |")
    for label, g in out["guests"].items():
        for who, rows in (("vine", g["vine"]), ("by hand", g["by_hand"])):
            for r in rows:
                if not r["ok"]:
                    print(f"- {label}, {who}: {r['error']}")


if __name__ == "__main__":
    main()
