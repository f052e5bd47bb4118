#!/usr/bin/env bash
# Builds vine's release binaries the way they are shipped and prints the directory that holds them:
#
#   VINE=$(bash scripts/build.sh)/vine          # cargo build arguments may follow (default: -p vine)
#
# The binaries are linked statically and are not position independent, so a `vine` command starts
# without the dynamic loader and without relocating itself (a PIE `vine` has 17 000 relative
# relocations to apply, each on a page that is then copied): 0.5 ms less per command here
# (bench/cli-start.sh), which adds up in scripts that run many commands and was a fifth of vine's
# own cost in a restore (BENCHMARKS.md). glibc's caveat for static binaries holds: name-service modules (used when a
# host name is resolved) are loaded at run time from the installed glibc, so build on the host
# that runs the binary, as scripts/run.sh does. The explicit --target keeps these flags off build
# scripts and proc-macros (which cannot be linked statically); the output is target/TRIPLE/release.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=$(rustc -vV | sed -n 's/^host: //p')
[ $# -gt 0 ] || set -- -p vine
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    cargo build --release --quiet --target "$triple" "$@" >&2
echo "$PWD/target/$triple/release"
