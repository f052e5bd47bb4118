#!/usr/bin/env bash
# Storage benchmark (issue 2, must-show 7): the same VHD images served by `vine disk serve` and by
# `qemu-nbd -f vpc`, driven by the same client (fio's nbd engine), side by side in one run; and
# the raw file read/written by fio directly as the physical limit.
#
#   bash bench/storage.sh [SECONDS_PER_ROW]      (default 10)
#
# Prints a Markdown table: IOPS (or MiB/s for 1 MiB rows) for raw, qemu-nbd and vine, and
# vine / qemu-nbd. Run it on a quiet machine; it needs root only for nothing, but the setup
# script (run by scripts/run.sh or scripts/test.sh) must have installed fio and qemu-utils.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNTIME=${1:-10}
SIZE_MIB=1024
cargo build --release --quiet -p vine
VINE=$PWD/target/release/vine
work=$(mktemp -d /var/tmp/vine-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# A fully allocated dynamic image (random data) for the read and overwrite rows.
fio --name=fill --filename="$work/data.raw" --rw=write --bs=1M --size=${SIZE_MIB}M \
    --refill_buffers --output=/dev/null
$VINE disk convert "$work/data.raw" "$work/full.vhd" --to dynamic >/dev/null
SIZE=$(( $($VINE disk info --json "$work/full.vhd" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual_size"])') ))

start_server() { # kind image socket
    local kind=$1 img=$2 sock=$3
    rm -f "$sock"
    if [ "$kind" = vine ]; then
        "$VINE" disk serve "$img" --socket "$sock" >/dev/null 2>&1 &
    else
        qemu-nbd -f vpc --persistent --shared=16 --cache=writeback --aio=threads --socket="$sock" "$img" &
    fi
    pids+=($!)
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
    sleep 0.2
}
stop_server() {
    local p=${pids[-1]}
    kill "$p"; wait "$p" 2>/dev/null || true
    unset 'pids[-1]'
}

# fio_row NAME RW BS DEPTH TARGET-ARGS... ; prints IOPS and bandwidth (MiB/s) as "iops mibs"
run_fio() {
    local rw=$1 bs=$2 depth=$3; shift 3
    fio --name=row --rw="$rw" --bs="$bs" --iodepth="$depth" --time_based --runtime="$RUNTIME" \
        --ramp_time=1 --randrepeat=0 --norandommap --output-format=json "$@" \
    | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
io = j["read"] if j["read"]["io_bytes"] > 0 else j["write"]
print(f"{io["iops"]:.0f} {io["bw_bytes"] / 2**20:.1f}")'
}

raw_row() { # rw bs depth
    local engine=psync
    [ "$3" -gt 1 ] && engine=io_uring
    run_fio "$1" "$2" "$3" --ioengine=$engine --filename="$work/data.raw" --size="${SIZE_MIB}M"
}
nbd_row() { # kind image rw bs depth
    local kind=$1 img=$2; shift 2
    start_server "$kind" "$img" "$work/$kind.sock"
    local size
    size=$($VINE disk info --json "$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual_size"])')
    run_fio "$1" "$2" "$3" --ioengine=nbd --uri="nbd+unix:///?socket=$work/$kind.sock" --size="$size"
    stop_server
}

printf '| row | raw file | qemu-nbd | vine | vine / qemu-nbd |\n|---|---:|---:|---:|---:|\n'
row() { # label unit rw bs depth [fresh]
    local label=$1 unit=$2 rw=$3 bs=$4 depth=$5 fresh=${6:-}
    local r q v img_q img_v
    if [ -n "$fresh" ]; then
        # Allocating writes: a fresh, empty dynamic image for each server.
        rm -f "$work/fresh-q.vhd" "$work/fresh-v.vhd"
        # 64 GiB virtual, so nearly every write in the run lands in a new 2 MiB block.
        $VINE disk create "$work/fresh-q.vhd" --size 64G >/dev/null
        $VINE disk create "$work/fresh-v.vhd" --size 64G >/dev/null
        img_q=$work/fresh-q.vhd; img_v=$work/fresh-v.vhd
        r=$(raw_row "$rw" "$bs" "$depth")
    else
        img_q=$work/full.vhd; img_v=$work/full.vhd
        r=$(raw_row "$rw" "$bs" "$depth")
    fi
    q=$(nbd_row qemu "$img_q" "$rw" "$bs" "$depth")
    v=$(nbd_row vine "$img_v" "$rw" "$bs" "$depth")
    python3 - "$label" "$unit" "$r" "$q" "$v" <<'PY'
import sys
label, unit, r, q, v = sys.argv[1:]
pick = (lambda s: float(s.split()[1])) if unit == "MiB/s" else (lambda s: float(s.split()[0]))
rv, qv, vv = pick(r), pick(q), pick(v)
print(f"| {label} ({unit}) | {rv:,.0f} | {qv:,.0f} | {vv:,.0f} | {vv / qv:.2f}x |")
PY
}

row "sequential read 1 MiB, QD1" "MiB/s" read 1M 1
row "sequential write 1 MiB, QD1" "MiB/s" write 1M 1
row "random read 4 KiB, QD1" "IOPS" randread 4k 1
row "random read 4 KiB, QD16" "IOPS" randread 4k 16
row "random write 4 KiB, QD1" "IOPS" randwrite 4k 1
row "random write 4 KiB, QD16" "IOPS" randwrite 4k 16
row "allocating random write 4 KiB, QD1 (fresh dynamic)" "IOPS" randwrite 4k 1 fresh
row "allocating random write 4 KiB, QD16 (fresh dynamic)" "IOPS" randwrite 4k 16 fresh
echo
echo "qemu: $(qemu-nbd --version | head -n1); fio: $(fio --version); image: ${SIZE_MIB} MiB dynamic VHD, 2 MiB blocks; ${RUNTIME}s per row"
