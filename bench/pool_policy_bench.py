"""Energy and SLA of a live mini-pool under a load schedule, the pool's policy off against on.

Called by bench/pool-policy.sh with the lab's environment file (three hosts in a pool, each
host's VMs confined to a third of this machine's two cores by its cgroup parent's CPU quota).
For each mode, six guest-kit guests start as the pool_policy test places them (v1, v2, v5 on
h1; v3, v4 on h2; v6 on h3) with the test's load schedule: 2 % of a vCPU for LOW_S seconds from
boot, then 17 % (v5: 48 %). Once every guest idles after its boot, the run begins and lasts
until HIGH_S seconds into the high load. `off`: the policy never acts. `on`: from then, the
pool runs bench/pool-policy.toml (the pool_policy test's policy) in `automatic` mode (interval
3 s, migration threshold 5, two migrations at once). Every SAMPLE_S seconds the script reads,
per host:

- its state (`vine host list`): a host in `standby` counts as powered off (0 W), as in the
  simulator;
- the CPU its VMs used (`cpuacct.usage` of its cgroup parent), as a fraction of its capacity
  (the quota): the utilisation the power model takes;
- how many of the quota's 100 ms periods it was throttled in (`cpu.stat`): the live form of the
  simulator's SLATAH (time a host spent at 100 % of its CPU, when its guests wanted more than
  it had).

Energy is each online host's power at its utilisation by the simulator's power model (HP
ProLiant ML110 G5, SPECpower figures; policy::model::PowerCurve::HP_ML110_G5, docs/policy.md),
integrated over the run. The physical limit beside it: the fewest hosts the measured load needs
at each sample (filled to 90 % of their capacity), each at its share of that load.
"""

import json
import math
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from lab_env import ENV, load_env, vine  # noqa: E402

SAMPLE_S = 2.0
LOW_S = int(os.environ.get("LOW_S", "120"))
HIGH_S = int(os.environ.get("HIGH_S", "120"))
LOW_PCT, HIGH_PCT, V5_HIGH_PCT = 2, 17, 48
# policy::model::PowerCurve::HP_ML110_G5: watts at 0, 10, ..., 100 % CPU.
G5 = [93.7, 97.0, 101.0, 105.0, 110.0, 116.0, 121.0, 125.0, 129.0, 133.0, 135.0]
PLACEMENT = [("v1", "h1"), ("v2", "h1"), ("v5", "h1"), ("v3", "h2"), ("v4", "h2"), ("v6", "h3")]


def watts(u):
    u = min(max(u, 0.0), 1.0) * 10
    lo = int(math.floor(u))
    hi = min(lo + 1, 10)
    return G5[lo] + (G5[hi] - G5[lo]) * (u - lo)


def vine_json(host, *args):
    return json.loads(vine(host, *args, "--json").stdout)


def cgroup(controller, host, name):
    with open(f"/sys/fs/cgroup/{controller}/{os.environ['VINE_LAB']}-{host}/{name}") as f:
        return f.read()


def usage_ns(host):
    try:
        return int(cgroup("cpuacct", host, "cpuacct.usage"))
    except FileNotFoundError:
        return 0


def throttling(host):
    try:
        stat = dict(line.split() for line in cgroup("cpu", host, "cpu.stat").splitlines())
        return int(stat["nr_periods"]), int(stat["nr_throttled"])
    except FileNotFoundError:
        return 0, 0


def run(mode, kit, capacity, hosts):
    cmdline = kit["cmdline"]
    for vm, host in PLACEMENT:
        high = V5_HIGH_PCT if vm == "v5" else HIGH_PCT
        append = f"{cmdline} vine.load={LOW_PCT}:{LOW_S},{high}:100000"
        vine("h1", "vm", "create", vm, "--kernel", kit["vmlinuz"], "--initrd", kit["initrd"],
             "--append", append, "--memory", "128", "--host", host)
    starts = [threading.Thread(target=vine, args=("h1", "vm", "start", vm)) for vm, _ in PLACEMENT]
    for t in starts:
        t.start()
    for t in starts:
        t.join()
    booted = time.monotonic()
    # Booting under TCG keeps a guest busy for a while: both runs begin once every guest idles,
    # the policy on from then in the `on` run (as an operator turns it on over a running pool).
    while True:
        d = vine_json("h1", "policy", "dry-run")
        loads = [v["history"][0] for v in d["snapshot"]["vms"] if v["history"]]
        if len(loads) == len(PLACEMENT) and max(loads) < 0.08:
            break
        if time.monotonic() - booted > LOW_S / 2:
            raise RuntimeError(f"the guests did not idle within {LOW_S / 2} s of their start: {loads}")
        time.sleep(1)
    if mode == "on":
        vine("h1", "policy", "use", os.path.join(os.path.dirname(__file__), "pool-policy.toml"))
        vine("h1", "policy", "set", "--interval", "3", "--threshold", "5", "--parallel", "2")
        vine("h1", "policy", "mode", "automatic")
    t0 = time.monotonic()
    low_left = LOW_S - (t0 - booted)
    before = {h: (usage_ns(h), throttling(h)) for h in hosts}
    last = t0
    energy_j = ideal_j = 0.0
    online_s = 0.0
    periods = throttled = 0
    samples = []
    while time.monotonic() - t0 < low_left + HIGH_S:
        time.sleep(SAMPLE_S)
        now = time.monotonic()
        dt = now - last
        last = now
        states = {h["name"]: h["state"] for h in vine_json("h1", "host", "list")}
        total_used = 0.0
        row = {"t": round(now - t0, 1), "hosts": {}}
        for h in hosts:
            used_ns, (p, th) = usage_ns(h), throttling(h)
            u = (used_ns - before[h][0]) / 1e9 / dt / capacity
            dp, dth = p - before[h][1][0], th - before[h][1][1]
            before[h] = (used_ns, (p, th))
            on = states.get(h) != "standby"
            total_used += u
            if on:
                energy_j += watts(u) * dt
                online_s += dt
                periods += dp
                throttled += dth
            row["hosts"][h] = {"state": states.get(h), "util": round(u, 3), "throttled": dth, "periods": dp}
        k = max(1, math.ceil(total_used / 0.9))
        ideal_j += k * watts(total_used / k) * dt
        samples.append(row)
    # The pool's event log: every host lists every host's events.
    moves = []
    for line in vine("h1", "events", "--json").stdout.splitlines():
        e = json.loads(line)
        if e.get("kind") == "policy.migrate":
            moves.append((e["time_ms"], e["message"]))
    migrations = len(moves)
    # Back to where it started: VMs gone, the policy off, every host online.
    vine("h1", "policy", "mode", "off")
    for vm, _ in PLACEMENT:
        vine("h1", "vm", "off", vm)
        vine("h1", "vm", "delete", vm)
    for h, s in {h["name"]: h["state"] for h in vine_json("h1", "host", "list")}.items():
        if s == "standby":
            vine("h1", "host", "wake", h)
    result = {
        "mode": mode,
        "seconds": round(last - t0, 1),
        "energy_wh": round(energy_j / 3600, 2),
        "ideal_wh": round(ideal_j / 3600, 2),
        "mean_hosts_on": round(online_s / (last - t0), 2),
        "slatah": round(throttled / periods, 4) if periods else 0.0,
        "migrations": migrations,
        "samples": samples,
        "migrations_told": [m for _, m in sorted(moves)],
    }
    brief = {k: v for k, v in result.items() if k not in ("samples", "migrations_told")}
    print(f"pool-policy.sh: policy {mode}: {brief}", file=sys.stderr)
    return result


def main():
    env_file, vine_bin, kit_dir, results, capacity = sys.argv[1:6]
    load_env(env_file)
    ENV["VINE_BIN"] = vine_bin
    capacity = float(capacity)
    with open(os.path.join(kit_dir, "kit.json")) as f:
        kit = json.load(f)
    kit["vmlinuz"] = os.path.join(kit_dir, kit["vmlinuz"])
    kit["initrd"] = os.path.join(kit_dir, kit["initrd"])
    hosts = ENV["LAB_HOSTS"].split()
    out = [run(mode, kit, capacity, hosts) for mode in ("off", "on")]
    with open(results, "w") as f:
        json.dump({"low_s": LOW_S, "high_s": HIGH_S, "capacity_cpus": capacity, "runs": out}, f, indent=1)
    off, on = out
    print(f"| policy | energy (Wh) | physical limit (Wh) | mean hosts on | SLATAH (live) | migrations |")
    print(f"|---|---|---|---|---|---|")
    for r in out:
        print(f"| {r['mode']} | {r['energy_wh']} | {r['ideal_wh']} | {r['mean_hosts_on']} | "
              f"{100 * r['slatah']:.2f} % | {r['migrations']} |")
    print()
    print(f"energy, on / off: {on['energy_wh'] / off['energy_wh']:.3f}; "
          f"on / its physical limit: {on['energy_wh'] / on['ideal_wh']:.3f}")


if __name__ == "__main__":
    main()
