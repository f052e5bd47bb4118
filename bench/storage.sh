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
VINE=$(bash scripts/build.sh)/vine
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
    elif [ "$kind" = qemu-raw ]; then
        qemu-nbd -f raw --persistent --shared=16 --cache=writeback --aio=threads --socket="$sock" "$img" &
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
        --ramp_time=1 --randrepeat=0 --output-format=json $PATTERN "$@" 2>/dev/null \
    | python3 -c '
import json, sys
text = sys.stdin.read()  # the nbd engine prints a line before the JSON
j = json.loads(text[text.index("{"):])["jobs"][0]
io = j["read"] if j["read"]["io_bytes"] > 0 else j["write"]
print("%.0f %.1f" % (io["iops"], io["bw_bytes"] / 2**20))'
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
    if [ "$kind" = qemu-raw ]; then
        size=$(stat -c %s "$img")
    else
        size=$($VINE disk info --json "$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual_size"])')
    fi
    run_fio "$1" "$2" "$3" --ioengine=nbd --uri="nbd+unix:///?socket=$work/$kind.sock" --size="$size"
    stop_server
}

printf '| row | raw file (fio) | qemu-nbd, raw file | qemu-nbd -f vpc | vine | vine / qemu-nbd -f vpc |\n|---|---:|---:|---:|---:|---:|\n'
# Overwrite rows pick offsets freely. Allocating rows put writes on random 2 MiB boundaries of an
# empty 1000 GiB image (512,000 blocks), the same sequence for every server (randrepeat=1), at most
# 50,000 writes: about 95 % of them land in a block not yet allocated.
PATTERN="--norandommap"
row() { # label unit rw bs depth [fresh]
    local label=$1 unit=$2 rw=$3 bs=$4 depth=$5 fresh=${6:-}
    local r qr q v img_q img_v img_r
    if [ -n "$fresh" ]; then
        # Allocating writes: a fresh, empty dynamic image for each server.
        rm -f "$work/fresh-q.vhd" "$work/fresh-v.vhd"
        # 1000 GiB virtual: 512,000 blocks, more than a run writes.
        $VINE disk create "$work/fresh-q.vhd" --size 1000G >/dev/null
        $VINE disk create "$work/fresh-v.vhd" --size 1000G >/dev/null
        img_q=$work/fresh-q.vhd; img_v=$work/fresh-v.vhd
        rm -f "$work/fresh.raw"; truncate -s 1000G "$work/fresh.raw"; img_r=$work/fresh.raw
        PATTERN="--blockalign=2m --randrepeat=1 --number_ios=50000"
        r=$(raw_row "$rw" "$bs" "$depth")
    else
        img_q=$work/full.vhd; img_v=$work/full.vhd; img_r=$work/data.raw
        r=$(raw_row "$rw" "$bs" "$depth")
    fi
    qr=$(nbd_row qemu-raw "$img_r" "$rw" "$bs" "$depth")
    q=$(nbd_row qemu "$img_q" "$rw" "$bs" "$depth")
    v=$(nbd_row vine "$img_v" "$rw" "$bs" "$depth")
    PATTERN="--norandommap"
    python3 - "$label" "$unit" "$r" "$qr" "$q" "$v" <<'PY'
import sys
label, unit, r, qr, q, v = sys.argv[1:]
pick = (lambda s: float(s.split()[1])) if unit == "MiB/s" else (lambda s: float(s.split()[0]))
rv, qrv, qv, vv = pick(r), pick(qr), pick(q), pick(v)
print(f"| {label} ({unit}) | {rv:,.0f} | {qrv:,.0f} | {qv:,.0f} | {vv:,.0f} | {vv / qv:.2f}x |")
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
echo "qemu: $(qemu-nbd --version | head -n1); fio: $(fio --version); image: ${SIZE_MIB} MiB dynamic VHD (allocating rows: empty 1000 GiB one), 2 MiB blocks; ${RUNTIME}s per row"
