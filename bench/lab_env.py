"""A lab of simulated hosts as the benchmarks' Python sees it (bench/migrate_bench.py,
bench/pool_policy_bench.py): the environment file scripts/pool-lab.sh writes, and `vine` run
against one host's daemon."""

import os
import subprocess

# The lab's environment (LAB_hI_SOCKET, LAB_HOSTS, ...) and VINE_BIN, the binary under test.
ENV = {}


def load_env(path):
    for line in open(path):
        if "=" in line:
            k, v = line.strip().split("=", 1)
            ENV[k] = v.strip('"')


def vine(host, *args, check=True):
    env = dict(os.environ, VINE_SOCKET=ENV[f"LAB_{host}_SOCKET"])
    r = subprocess.run([ENV["VINE_BIN"], *args], env=env, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"vine {' '.join(args)} on {host}: {r.stderr.strip()}")
    return r
