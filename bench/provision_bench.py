#!/usr/bin/env python3
"""Provisioning: N guests from linked clones, booted and holding DHCP leases, vine against by hand.

Called by bench/provision.sh (which starts a private vine daemon) as

    provision_bench.py run VINE WORK KIT N ROUNDS
    provision_bench.py cleanup VINE WORK KIT N 0

Each round times both sides, in alternating order, from their first action until every guest's
serial console shows "VINE-IP" (the guest kit's DHCP client got a lease):

* vine: one `vine vm create pv --template kit --count N --start --cloud-init` (one POST /api/vms:
  linked clones of the template's base, a NoCloud seed each, NICs on vine's internal network with
  vine's DHCP server, QEMU under vine's disk servers and cgroups);
* hand: per guest `qemu-img create -f qcow2 -b BASE -F vpc`, meta-data and `cloud-localds`, a tap
  on a bridge served by dnsmasq, and QEMU with the overlay, the seed and the tap, all started as
  fast as one script can.

Before the rounds one guest boots alone by hand: N times its boot over the machine's cores is the
physical limit of booting N guests at once under this accelerator. Prints each round, then the
medians, vine / hand and vine / limit.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import time

MODE, VINE, WORK, KIT, N, ROUNDS = sys.argv[1:7]
N, ROUNDS = int(N), int(ROUNDS)
ENV = dict(os.environ, VINE_SOCKET=f"{WORK}/vine.sock")
BRIDGE = "vbprov0"
HAND = f"{WORK}/hand"
BASE = f"{WORK}/base.vhd"
MARKER = b"VINE-IP"
TIMEOUT = 900
ACCEL = None


def run(*cmd, env=None):
    out = subprocess.run(list(cmd), env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {out.stdout}{out.stderr}")
    return out.stdout


def vine(*args):
    return run(VINE, *args, env=ENV)


def leased(paths):
    n = 0
    for p in paths:
        try:
            with open(p, "rb") as f:
                n += MARKER in f.read()
        except FileNotFoundError:
            pass
    return n


def wait_leases(paths, since):
    while True:
        if leased(paths) == len(paths):
            return time.monotonic() - since
        if time.monotonic() - since > TIMEOUT:
            sys.exit(f"only {leased(paths)} of {len(paths)} guests leased within {TIMEOUT} s")
        time.sleep(0.05)


def hand_names(i):
    return f"tpprov{i}", f"52:54:00:bb:01:{i:02x}"


def cleanup_hand():
    pids = f"{HAND}/pids"
    if os.path.exists(pids):
        for line in open(pids).read().split():
            try:
                os.kill(int(line), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        os.remove(pids)
    for i in range(1, max(N, 1) + 1):
        subprocess.run(["ip", "link", "del", hand_names(i)[0]], capture_output=True)
    subprocess.run(["rm", "-rf", f"{HAND}/run"])


def cleanup():
    cleanup_hand()
    dpid = f"{WORK}/dnsmasq.pid"
    if os.path.exists(dpid):
        try:
            os.kill(int(open(dpid).read().strip()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    if os.path.exists(f"{WORK}/vine.sock"):
        for v in json.loads(subprocess.run([VINE, "vm", "list", "--json"], env=ENV, capture_output=True, text=True).stdout or "[]"):
            subprocess.run([VINE, "vm", "off", v["name"]], env=ENV, capture_output=True)
            subprocess.run([VINE, "vm", "delete", v["name"]], env=ENV, capture_output=True)
        # The network's bridge, firewall table and DHCP server outlive the daemon: deleted here.
        for cmd in (["template", "delete", "kit"], ["network", "delete", "pnet"]):
            subprocess.run([VINE, *cmd], env=ENV, capture_output=True)


def setup():
    global ACCEL
    raw = f"{WORK}/boot.img"
    run("bash", "scripts/guest-bootdisk.sh", KIT, raw, "vine.net=1")
    vine("disk", "convert", raw, BASE, "--to", "dynamic")
    os.remove(raw)
    os.makedirs(f"{WORK}/pool")
    vine("pool", "create", "pp", "--path", f"{WORK}/pool")
    run("cp", "--sparse=always", BASE, f"{WORK}/pool/src.vhd")
    vine("network", "create", "pnet", "--kind", "internal", "--subnet", "10.252.2.0/24")
    vine("template", "create", "kit", "--from-volume", "pp/src.vhd", "--memory", "128M", "--nic", "pnet")
    os.makedirs(HAND, exist_ok=True)
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "add", "10.252.1.1/24", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    run("dnsmasq", "--port=0", f"--interface={BRIDGE}", "--bind-interfaces", "--except-interface=lo",
        "--dhcp-range=10.252.1.10,10.252.1.250,255.255.255.0,1h", "--dhcp-authoritative",
        f"--dhcp-leasefile={WORK}/dnsmasq.leases", f"--pid-file={WORK}/dnsmasq.pid",
        f"--log-facility={WORK}/dnsmasq.log")
    ACCEL = json.loads(vine("host", "info", "--json"))["accelerator"]["kind"]


def vine_round():
    names = [f"pv-{i}" for i in range(1, N + 1)]
    consoles = [f"{WORK}/data/vms/{n}/run/console.log" for n in names]
    t0 = time.monotonic()
    vine("vm", "create", "pv", "--template", "kit", "--count", str(N), "--start", "--cloud-init")
    made = time.monotonic() - t0
    took = wait_leases(consoles, t0)
    leases = json.loads(vine("network", "leases", "pnet", "--json"))
    bound = {l["mac"] for l in leases if l.get("state", "bound") == "bound"}
    macs = {json.loads(vine("vm", "show", n, "--json"))["nics"][0]["mac"] for n in names}
    if not macs <= bound:
        sys.exit(f"vine's lease table lacks {sorted(macs - bound)}")
    for n in names:
        vine("vm", "off", n)
        vine("vm", "delete", n)
    return took, made


def hand_round(count=N):
    cleanup_hand()
    os.makedirs(f"{HAND}/run")
    consoles = [f"{HAND}/run/console-{i}.log" for i in range(1, count + 1)]
    pids = []
    t0 = time.monotonic()
    for i in range(1, count + 1):
        tap, mac = hand_names(i)
        d = f"{HAND}/run/g{i}"
        os.makedirs(d)
        run("qemu-img", "create", "-q", "-f", "qcow2", "-b", BASE, "-F", "vpc", f"{d}/disk.qcow2")
        with open(f"{d}/meta-data", "w") as f:
            f.write(f"instance-id: iid-hand-{i}\nlocal-hostname: hand-{i}\n")
        with open(f"{d}/user-data", "w") as f:
            f.write("#cloud-config\n{}\n")
        run("cloud-localds", f"{d}/seed.iso", f"{d}/user-data", f"{d}/meta-data")
        run("ip", "tuntap", "add", "dev", tap, "mode", "tap")
        run("ip", "link", "set", tap, "master", BRIDGE, "up")
        p = subprocess.Popen([
            "qemu-system-x86_64", "-accel", ACCEL, "-m", "128", "-smp", "1", "-display", "none",
            "-drive", f"file={d}/disk.qcow2,if=virtio,format=qcow2",
            "-drive", f"file={d}/seed.iso,if=ide,media=cdrom,readonly=on,format=raw",
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac}",
            "-serial", f"file:{consoles[i - 1]}", "-monitor", "none",
        ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pids.append(p.pid)
        with open(f"{HAND}/pids", "a") as f:
            f.write(f"{p.pid}\n")
    took = wait_leases(consoles, t0)
    leases = open(f"{WORK}/dnsmasq.leases").read()
    missing = [i for i in range(1, count + 1) if hand_names(i)[1] not in leases]
    if missing:
        sys.exit(f"dnsmasq's lease file lacks guests {missing}")
    cleanup_hand()
    return took


def main():
    if MODE == "cleanup":
        cleanup()
        return
    setup()
    alone = hand_round(1)
    cores = os.cpu_count()
    limit = N * alone / cores
    print(f"accelerator {ACCEL}; one guest alone, by hand: {alone:.1f} s to its lease; "
          f"limit for {N} at once on {cores} cores: {limit:.1f} s")
    sides = {"vine": [], "hand": []}
    made = []
    for r in range(ROUNDS):
        order = ["vine", "hand"] if r % 2 == 0 else ["hand", "vine"]
        for side in order:
            if side == "vine":
                took, m = vine_round()
                made.append(m)
            else:
                took = hand_round()
            sides[side].append(took)
            print(f"round {r + 1} {side}: {took:.1f} s", flush=True)
    v, h = statistics.median(sides["vine"]), statistics.median(sides["hand"])
    print()
    print(f"| {N} guests, call to every lease | median s | rounds |")
    print("|---|---|---|")
    print(f"| vine (one POST /api/vms) | {v:.1f} | {', '.join(f'{x:.1f}' for x in sides['vine'])} |")
    print(f"| by hand (qemu-img, cloud-localds, QEMU) | {h:.1f} | {', '.join(f'{x:.1f}' for x in sides['hand'])} |")
    print()
    print(f"vine / by hand = {v / h:.2f}; vine / limit = {v / limit:.2f}; by hand / limit = {h / limit:.2f}; "
          f"the call itself (VMs made and started) took {statistics.median(made):.2f} s")


if __name__ == "__main__":
    main()
