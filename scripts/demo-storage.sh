#!/usr/bin/env bash
# A tour of the storage engine: a dynamic VHD and a differencing child are made, served over
# NBD by vine, written and read by QEMU's own NBD client, and checked. (Sets up and builds
# like scripts/run.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VINE=$(bash scripts/build.sh)/vine
work=$(mktemp -d /tmp/vine-demo.XXXXXX)
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

echo "== creating a 1 GiB dynamic disk and a differencing child"
$VINE disk create "$work/base.vhd" --size 1G
$VINE disk create "$work/child.vhd" --parent "$work/base.vhd"

echo "== serving the child over NBD"
$VINE disk serve "$work/child.vhd" --socket "$work/nbd.sock" --export demo &
server=$!
for _ in $(seq 50); do [ -S "$work/nbd.sock" ] && break; sleep 0.1; done
url="nbd+unix:///demo?socket=$work/nbd.sock"

echo "== QEMU writes 4 MiB of pattern 0xa5 through vine, then reads it back"
qemu-io -f raw -c 'write -P 0xa5 1M 4M' -c 'flush' "$url"
qemu-io -f raw -c 'read -P 0xa5 1M 4M' -c 'read -P 0 0 1M' "$url"
qemu-img info "$url" | sed -n '1,3p'
kill "$server"; wait "$server" 2>/dev/null || true; server=""

echo "== the chain, as vine sees it"
$VINE disk info "$work/child.vhd"
$VINE disk check "$work/child.vhd"
echo "== committing the child into its parent; qemu-img reads the parent directly"
$VINE disk commit "$work/child.vhd"
qemu-io -f vpc -r -c 'read -P 0xa5 1M 4M' "$work/base.vhd"
echo "demo finished: vine's storage engine served, committed and checked a VHD chain"
