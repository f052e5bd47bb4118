#!/usr/bin/env bash
# Builds vine's release binaries the way they are shipped and prints the directory that holds them:
#
#   VINE=$(bash scripts/build.sh)/vine          # cargo build arguments may follow (default: -p vine)
#
# The binaries are not position independent, so a `vine` command starts without relocating
# itself (a PIE `vine` has 17 000 relative relocations to apply, each on a page that is then
# copied), which was most of the 0.5 ms a command saved here (bench/cli-start.sh, BENCHMARKS.md)
# and adds up in scripts that run many commands. They link glibc dynamically, as Debian expects of
# a package (scripts/package.sh ships this build): a static glibc would still load the installed
# glibc's name-service modules at run time (to resolve host names), which is safe only with the very
# glibc it was built against. The explicit --target keeps the flag off build scripts and
# proc-macros (which must be position independent); the output is target/TRIPLE/release.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=$(rustc -vV | sed -n 's/^host: //p')
[ $# -gt 0 ] || set -- -p vine
echo "build: cargo build --release $* (a few minutes the first time; cargo shows its progress)" >&2
RUSTFLAGS="-C relocation-model=static" \
    cargo build --release --target "$triple" "$@" >&2
echo "$PWD/target/$triple/release"
