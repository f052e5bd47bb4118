#!/usr/bin/env bash
# Every policy on every PlanetLab day, in one memory model (docs/policy-reproduction.md's tables),
# followed by vine against issue 6's targets for each day: ESV against the best of THR, IQR, MAD and
# LR, migrations and energy against LR-MMT-1.2.
#
#   bash bench/policy-days.sh [trace|allocated] [TRACES]   (default: trace, ../shared/traces/planetlab)
set -euo pipefail
cd "$(dirname "$0")/.."
MEMORY=${1:-trace}
TRACES=${2:-../shared/traces/planetlab}
POLICIES=npa,dvfs,thr-mmt-0.8,iqr-mmt-1.5,mad-mmt-2.5,lr-mmt-1.2,lrr-mmt-1.2,vine
VINE=$(bash scripts/build.sh)/vine
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d), memory model $MEMORY"
for day in $(ls "$TRACES"); do
    "$VINE" policy simulate --trace "$TRACES/$day" --policy "$POLICIES" --memory "$MEMORY" --json
done | python3 -c '
import json, sys
dec = json.JSONDecoder(); text = sys.stdin.read(); pos = 0; runs = []
while pos < len(text):
    while pos < len(text) and text[pos].isspace(): pos += 1
    if pos >= len(text): break
    obj, pos = dec.raw_decode(text, pos); runs += obj
print("| Day | Policy | Energy kWh | SLATAH | PDM | SLAV | ESV | Migrations | Shutdowns | Peak host memory |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in runs:
    print("| %s | %s | %.2f | %.2f%% | %.3f%% | %.2e | %.2e | %d | %d | %.0f%% |" % (r["day"], r["policy"], r["energy_kwh"],
          r["slatah"] * 100, r["pdm"] * 100, r["slav"], r["esv"], r["migrations"], r["host_shutdowns"], r["peak_memory_use"] * 100))
print()
print("| Day | vine ESV / best baseline ESV (≤ 0.80) | vine / LR migrations (≤ 0.50) | vine / LR energy (≤ 1.05) |")
print("|---|---:|---:|---:|")
days = sorted({r["day"] for r in runs})
for d in days:
    by = {r["policy"]: r for r in runs if r["day"] == d}
    v, lr = by["vine"], by["lr-mmt-1.2"]
    best = min(by[p]["esv"] for p in ("thr-mmt-0.8", "iqr-mmt-1.5", "mad-mmt-2.5", "lr-mmt-1.2"))
    print("| %s | %.3f | %.3f | %.3f |" % (d, v["esv"] / best, v["migrations"] / lr["migrations"], v["energy_kwh"] / lr["energy_kwh"]))
'
