#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 300), growing the committed corpus in
# fuzz/corpus/TARGET (the image target is also seeded from crates/vhd/tests/corpus), then
# minimises that corpus in place. A crash is left in fuzz/artifacts/TARGET and fails the run.
# FUZZ_TARGETS="a b" limits the run to those targets.
# The stable toolchain runs cargo-fuzz with RUSTC_BOOTSTRAP=1 for the sanitizer flags.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-300}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
targets=${FUZZ_TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v vine-fuzz)}
for t in $targets; do
    mkdir -p "fuzz/corpus/$t"
    seeds=()
    [ "$t" = vhd_image ] && seeds+=(crates/vhd/tests/corpus)
    # The real descriptors are read as seeds where they are, never copied into the tree.
    [ "$t" = ovf_descriptor ] && [ -d ../shared/ref/ovf ] && seeds+=(../shared/ref/ovf)
    echo "== fuzzing $t for ${SECONDS_PER_TARGET}s"
    cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -rss_limit_mb=2048 2>&1 | grep -E '^(#[0-9]+ +DONE|Done|==[0-9]+==ERROR|SUMMARY)' || true
    if ls "fuzz/artifacts/$t"/crash-* >/dev/null 2>&1; then
        echo "fuzz: $t crashed; see fuzz/artifacts/$t" >&2
        exit 1
    fi
    cargo fuzz cmin --fuzz-dir fuzz "$t" "fuzz/corpus/$t" >/dev/null 2>&1
    echo "   corpus: $(ls "fuzz/corpus/$t" | wc -l) inputs"
done
echo "fuzzing finished without crashes"
