#!/usr/bin/env bash
# Sets up this machine (as root) and runs vine's whole test suite: formatting, lints, unit,
# property, interop (qemu-img, qemu-io, 7zz, nbdinfo, nbdcopy), crash and corpus tests.
# scripts/run-tests.sh prints each test binary's time and the totals line, passing or failing;
# the run fails if the tests changed the source tree.
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
# and it drives the binary as shipped (scripts/build.sh: not position independent) through
# a daemon, a boot, a save and a restore, which the tests (debug builds) do not. Its numbers, from
# one round, are not looked at.
echo "== bench/vm-start.sh smoke run with the shipped build (1 round, 1 cycle)"
if ! bash bench/vm-start.sh 1 1 >target/bench-smoke.log 2>&1; then
    tail -n 30 target/bench-smoke.log
    echo "bench/vm-start.sh failed (log: target/bench-smoke.log)" >&2
    exit 1
fi
tree() { git status --porcelain --untracked-files=all 2>/dev/null; }
before=$(tree)
bash scripts/run-tests.sh --workspace || status=$?
# No test may write into the source tree (the log and the build live under target/, ignored).
if [ "$(tree)" != "$before" ]; then
    echo "== the tests changed the source tree (git status before and after differ):" >&2
    diff <(echo "$before") <(tree) >&2
    status=${status:-1}
fi
exit "${status:-0}"
