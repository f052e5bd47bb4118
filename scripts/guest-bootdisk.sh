#!/usr/bin/env bash
# Builds a BIOS-bootable raw disk image from the guest kit: an MBR (syslinux's boot code) with
# one bootable FAT16 partition holding syslinux, the kit's kernel and initramfs, and a
# syslinux.cfg whose kernel command line is the kit's plus the given options. A VM given this
# disk (converted to VHD) boots from it through SeaBIOS with no -kernel: firmware, boot loader,
# kernel and initramfs all come off the disk.
#
#   scripts/guest-bootdisk.sh KIT_DIR OUT.img [vine.OPTION=VALUE ...]
#
# Needs syslinux, syslinux-common, mtools and dosfstools (installed by scripts/setup.sh).
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 KIT_DIR OUT.img [options...]" >&2; exit 2; }
KIT=$1
OUT=$2
shift 2
MBR=/usr/lib/syslinux/mbr/mbr.bin
for f in "$KIT/vmlinuz" "$KIT/initrd.img" "$MBR"; do
    [ -f "$f" ] || { echo "guest-bootdisk: missing $f" >&2; exit 1; }
done
CMDLINE=$(sed -n 's/^  "cmdline": "\(.*\)"$/\1/p' "$KIT/kit.json")

SIZE_MB=64
START=2048                                   # first sector of the partition (1 MiB)
SECTORS=$((SIZE_MB * 2048 - START))          # the rest of the disk
rm -f "$OUT"
truncate -s "${SIZE_MB}M" "$OUT"
dd if="$MBR" of="$OUT" bs=440 count=1 conv=notrunc status=none
le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)); }
# Partition 1: bootable, type 0x06 (FAT16), CHS fields saturated (LBA is what counts).
# shellcheck disable=SC2059
printf "\\x80\\xfe\\xff\\xff\\x06\\xfe\\xff\\xff$(le32 $START)$(le32 $SECTORS)" |
    dd of="$OUT" bs=1 seek=446 conv=notrunc status=none
printf '\x55\xaa' | dd of="$OUT" bs=1 seek=510 conv=notrunc status=none
mkfs.fat -F 16 -n VINEBOOT --offset "$START" "$OUT" $((SECTORS / 2)) >/dev/null
syslinux --offset $((START * 512)) --install "$OUT"
CFG=$(mktemp)
trap 'rm -f "$CFG"' EXIT
printf 'DEFAULT vine\nPROMPT 0\nTIMEOUT 0\nLABEL vine\n  KERNEL vmlinuz\n  INITRD initrd.img\n  APPEND %s\n' \
    "$CMDLINE vine.bootdisk=1 $*" >"$CFG"
export MTOOLS_SKIP_CHECK=1
mcopy -i "$OUT@@$((START * 512))" "$KIT/vmlinuz" ::vmlinuz
mcopy -i "$OUT@@$((START * 512))" "$KIT/initrd.img" ::initrd.img
mcopy -i "$OUT@@$((START * 512))" "$CFG" ::syslinux.cfg
