#!/usr/bin/env bash
# Policy benchmark (issue 6, must-show 4): time of one planning step on synthetic pools of
# 100 → 100,000 VMs (hosts = VMs / 10), vine beside the CloudSim baselines, same pool, same run.
#
#   bash bench/policy.sh            (baselines up to 20,000 VMs: their placement scans every host
#                                    for every VM it tries, quadratic; pass 100000 to go further)
#   bash bench/policy.sh 100000
#
# Prints a Markdown table of milliseconds (median of 3) and vine's speed-up over each baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
BASELINE_MAX=${1:-20000}
VINE=$(bash scripts/build.sh)/vine
echo "| VMs | hosts | vine (ms) | thr-mmt-0.8 (ms) | lr-mmt-1.2 (ms) | mad-mmt-2.5 (ms) | thr / vine | lr / vine |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in 100 1000 10000 20000 100000; do
    policies=vine
    if [ "$n" -le "$BASELINE_MAX" ]; then policies=vine,thr-mmt-0.8,lr-mmt-1.2,mad-mmt-2.5; fi
    "$VINE" policy bench --vms "$n" --policy "$policies" --repeat 3 | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
ms = {r["policy"]: r["ms"] for r in rows}
n, hosts = rows[0]["vms"], rows[0]["hosts"]
def f(p): return "%.2f" % ms[p] if p in ms else "–"
def ratio(p): return "%.1fx" % (ms[p] / ms["vine"]) if p in ms else "–"
print("| %d | %d | %s | %s | %s | %s | %s | %s |" % (n, hosts, f("vine"), f("thr-mmt-0.8"), f("lr-mmt-1.2"), f("mad-mmt-2.5"), ratio("thr-mmt-0.8"), ratio("lr-mmt-1.2")))
'
done
