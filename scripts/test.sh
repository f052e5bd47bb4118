#!/usr/bin/env bash
# Sets up this machine (as root) and runs vine's whole test suite: formatting, lints, unit,
# property, interop (qemu-img, qemu-io, 7zz, nbdinfo, nbdcopy), crash and corpus tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TERM_COLOR=never
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo build --workspace --quiet
# The benchmark scripts are not tests, but nothing else runs them: one round keeps them working,
# and it drives the binary as shipped (scripts/build.sh: static, not position independent) through
# a daemon, a boot, a save and a restore, which the tests (debug builds) do not. Its numbers, from
# one round, are not looked at.
echo "== bench/vm-start.sh smoke run with the shipped build (1 round, 1 cycle)"
if ! bash bench/vm-start.sh 1 1 >target/bench-smoke.log 2>&1; then
    tail -n 30 target/bench-smoke.log
    echo "bench/vm-start.sh failed (log: target/bench-smoke.log)" >&2
    exit 1
fi
cargo test --workspace --no-fail-fast 2>&1 | tee target/test.log
# cargo test's exit status already fails the run; also state the totals on one line.
python3 - <<'PY'
import re
passed = failed = 0
for line in open("target/test.log"):
    m = re.match(r"test result: \w+\. (\d+) passed; (\d+) failed", line)
    if m:
        passed += int(m.group(1)); failed += int(m.group(2))
print(f"{passed} passed, {failed} failed")
PY
