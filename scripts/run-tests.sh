#!/usr/bin/env bash
# Runs `cargo test --no-fail-fast` with the arguments given (scripts/test.sh: --workspace), then
# prints each test binary's time and one totals line, and exits with cargo's status: the totals
# appear whether the tests pass or fail. The whole output is also kept in
# ${CARGO_TARGET_DIR:-target}/test.log.
#
#   bash scripts/run-tests.sh --workspace
#   bash scripts/run-tests.sh --manifest-path /tmp/scratch/Cargo.toml
set -uo pipefail
log=${CARGO_TARGET_DIR:-target}/test.log
mkdir -p "$(dirname "$log")"
cargo test --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
python3 - "$log" <<'PY'
import re, sys
passed = failed = 0
binaries = []
current = None
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"\s*(Running|Doc-tests) (.+?)(?: \(.*\))?$", line)
    if m:
        current = m.group(2) if m.group(1) == "Running" else "doc-tests " + m.group(2)
    m = re.match(r"test result: \w+\. (\d+) passed; (\d+) failed.*finished in ([\d.]+)s", line)
    if m:
        passed += int(m.group(1)); failed += int(m.group(2))
        binaries.append((float(m.group(3)), current or "?", int(m.group(2))))
print("== time per test binary (slowest first)")
for secs, name, f in sorted(binaries, reverse=True):
    print(f"{secs:8.1f} s  {name}{'  (' + str(f) + ' failed)' if f else ''}")
print(f"== {passed} passed, {failed} failed")
PY
if [ "$status" -ne 0 ]; then
    echo "== cargo test failed (exit status $status; log: $log)" >&2
fi
exit "$status"
