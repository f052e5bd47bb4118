#!/usr/bin/env bash
# Builds a Debian bookworm cloud guest image for vine's tests and demo: a 2 GiB dynamic VHD whose
# real cloud-init (NoCloud, from an ISO9660 seed labelled `cidata` on an IDE CD-ROM) configures the
# guest at first boot. It boots through SeaBIOS with no -kernel, under TCG, e.g.
#
#   qemu-system-x86_64 -accel tcg -m 512 -nographic -drive file=OUT_DIR/debian-bookworm.vhd,if=virtio,format=vpc \
#       -drive file=seed.iso,if=ide,media=cdrom,readonly=on \
#       -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0
#
#   scripts/cloud-image.sh [OUT_DIR]      (default /var/lib/vine/cloud; run as root)
#
# The guest: mmdebstrap --variant=minbase of bookworm (+ updates and security) with the packages
# in PACKAGES, linux-image-cloud-amd64 (virtio-blk/-scsi/-net, IDE disk and CD-ROM, NVMe; no AHCI,
# no e1000), an initramfs that carries only the disk and CD-ROM drivers, one bootable ext4
# partition on an MBR disk (syslinux's MBR code, extlinux in the partition: under TCG it loads
# kernel and initramfs four seconds sooner than GRUB through SeaBIOS). Console on ttyS0; root's
# password is locked; cloud-init asks only NoCloud (then None), renders the network for
# systemd-networkd, and the timers a test guest has no use for are masked. A guest's kernel
# upgrade keeps it bootable (extlinux.conf names the /vmlinuz and /initrd.img links).
#
# Needs mmdebstrap, qemu-utils, e2fsprogs, fdisk, extlinux, syslinux-common and genisoimage (for
# the seeds the tests build), installing whichever is missing, and a loop device (extlinux installs
# only into a mounted file system). Packages come from the Debian archive the host's apt sources
# name (apt-get indextargets), and only from there.
# Idempotent: when OUT_DIR/image.json names this recipe and the VHD still matches its sha256, it
# exits at once printing the VHD's path, without asking apt anything (so newer packages are picked
# up only when RECIPE is bumped or image.json is deleted). Concurrent runs serialise on
# OUT_DIR/.lock. The image is built under /tmp and moved into place at the end.
#
# Outputs: OUT_DIR/debian-bookworm.vhd and OUT_DIR/image.json (recipe, packages and versions,
# kernel command line, sizes, sha256 of the VHD). The last line on stdout is the VHD's path.
set -euo pipefail
umask 022

# Bump whenever anything below changes what ends up in the image.
RECIPE=2
SUITE=bookworm
KERNEL_PACKAGE=linux-image-cloud-amd64
PACKAGES=(systemd-sysv udev dbus "$KERNEL_PACKAGE" cloud-init cloud-guest-utils openssh-server sudo
    iproute2 isc-dhcp-client)
# Host tools: command -> Debian package.
declare -A HOST_TOOLS=([mmdebstrap]=mmdebstrap [qemu-img]=qemu-utils [mkfs.ext4]=e2fsprogs
    [sfdisk]=fdisk [extlinux]=extlinux [genisoimage]=genisoimage)
MBR=/usr/lib/syslinux/mbr/mbr.bin              # from syslinux-common
DISK_MIB=2048
PART_START=2048                                # first sector of the root partition (1 MiB)
ROOT_UUID=5e1f0c2a-7669-4e65-8000-636c6f756431 # fixed: the command line names it
DISK_ID=0x76696e65
CMDLINE="root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200 net.ifnames=0 quiet"
# Drivers the initramfs carries (udev loads those whose hardware is present): the root disk on
# virtio-blk, virtio-scsi or IDE, and the IDE CD-ROM, so the NoCloud seed's /dev/sr0 is there
# before cloud-init-local looks for it. ext4 and NVMe are built into the cloud kernel.
INITRD_MODULES=(virtio_pci virtio_blk virtio_scsi sd_mod ata_piix sr_mod isofs)
MASK_UNITS=(apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer
    e2scrub_reap.service fstrim.timer)

OUT=${1:-/var/lib/vine/cloud}
NAME=debian-$SUITE.vhd
VHD=$OUT/$NAME

log() { printf 'cloud-image: %s\n' "$*" >&2; }
die() { printf 'cloud-image: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and builds a chroot)"

json_field() { # FILE KEY -> value of a top-level string field of the image.json written below
    sed -n "s/^  \"$2\": \"\(.*\)\",\{0,1\}$/\1/p" "$1"
}

image_is_current() {
    local json=$OUT/image.json
    [ -f "$json" ] && [ -f "$VHD" ] || return 1
    [ "$(sed -n 's/^  "recipe": \([0-9]*\),$/\1/p' "$json")" = "$RECIPE" ] || return 1
    [ "$(sha256sum <"$VHD" | cut -d' ' -f1)" = "$(json_field "$json" vhd_sha256)" ]
}

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
if image_is_current; then
    log "image in $OUT is current (recipe $RECIPE); nothing to do"
    echo "$VHD"
    exit 0
fi

WORK=$(mktemp -d /tmp/vine-cloud-image.XXXXXX)
MNT=$WORK/mnt
cleanup() {
    if mountpoint -q "$MNT"; then
        umount "$MNT" || true
    fi
    # mmdebstrap unmounts what it mounted even when it fails; never follow a mount out of $WORK.
    if grep -q " $WORK/" /proc/mounts; then
        log "leaving $WORK: something is still mounted under it"
    else
        rm -rf --one-file-system "$WORK"
    fi
    rm -f "$OUT/.$NAME.new" "$OUT/image.json.new"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# --- host tools ------------------------------------------------------------------------------

apt_install() {
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; then
        log "apt-get update"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    fi
}

missing=()
for tool in "${!HOST_TOOLS[@]}"; do
    command -v "$tool" >/dev/null || missing+=("${HOST_TOOLS[$tool]}")
done
[ -f "$MBR" ] || missing+=(syslinux-common)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
fi

# --- apt sources -----------------------------------------------------------------------------

# One `deb URI SUITE COMPONENTS` line for each of bookworm, -updates and -security as the host's
# apt sources configure them (whatever the mirror), so the build fetches from where the host does.
guest_sources() {
    # shellcheck disable=SC2016 # apt's own $(FIELD) placeholders
    apt-get indextargets --format '$(REPO_URI) $(CODENAME) $(COMPONENT)' \
        'Identifier: Packages' 'Target-Of: deb' 2>/dev/null |
        awk -v s="$SUITE" '$2 == s || $2 == s "-updates" || $2 == s "-security" {
                key = $1 " " $2
                if (!(key in comps)) { order[n++] = key; comps[key] = $3 }
                else if (index(" " comps[key] " ", " " $3 " ") == 0) comps[key] = comps[key] " " $3
            }
            END { for (i = 0; i < n; i++) print "deb " order[i] " " comps[order[i]] }'
}

SOURCES=$(guest_sources)
if ! grep -q "^deb [^ ]* $SUITE " <<<"$SOURCES"; then
    log "no $SUITE package lists on the host; apt-get update"
    apt-get update -qq
    SOURCES=$(guest_sources)
fi
grep -q "^deb [^ ]* $SUITE " <<<"$SOURCES" || die "the host's apt sources have no Debian $SUITE"
mirrors=()
while IFS= read -r line; do
    mirrors+=("$line")
    log "apt source: $line"
done <<<"$SOURCES"

# --- files laid down before any package is installed -----------------------------------------

PRE=$WORK/pre
put() { # PATH MODE <content: write $PRE/PATH
    mkdir -p "$PRE/$(dirname "$1")"
    cat >"$PRE/$1"
    chmod "$2" "$PRE/$1"
}

put etc/fstab 0644 <<EOF
# <file system>  <mount point>  <type>  <options>  <dump>  <pass>
UUID=$ROOT_UUID  /  ext4  rw,discard,errors=remount-ro  0  1
EOF
# The initramfs carries only the drivers listed here (MODULES=most would take every storage
# driver the kernel has; the host's hardware says nothing about the guest's, so no MODULES=dep).
put etc/initramfs-tools/conf.d/vine.conf 0644 <<'EOF'
MODULES=list
EOF
put etc/initramfs-tools/hooks/vine-modules 0755 <<EOF
#!/bin/sh
# vine: the guest's disk and CD-ROM drivers (scripts/cloud-image.sh).
[ "\$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
manual_add_modules ${INITRD_MODULES[*]}
EOF

# cloud-init: NoCloud only (no network metadata service to wait for), networkd as renderer, the
# hostname in /etc/hosts (as Debian's own cloud images do). Host keys of the two kinds that take
# no time to make (an RSA key takes ten seconds under TCG; user-data's ssh_genkeytypes still
# wins), and no grub-dpkg (the guest has no grub-pc package for it to configure).
put etc/cloud/cloud.cfg.d/10_vine.cfg 0644 <<'EOF'
# vine (scripts/cloud-image.sh)
datasource_list: [ NoCloud, None ]
manage_etc_hosts: true
ssh_genkeytypes: [ ed25519, ecdsa ]
grub_dpkg:
  enabled: false
system_info:
  network:
    renderers: [ networkd ]
    activators: [ networkd ]
EOF
# A locale cloud-init takes as the system's, so its locale module does not run locale-gen.
put etc/default/locale 0644 <<'EOF'
LANG=C.UTF-8
EOF
# networkd-wait-online, which cloud-init.service is ordered after, waits for the first IPv4 lease
# (not for IPv6 too), and with no NIC or no DHCP server holds the boot for 15 s, not two minutes.
put etc/systemd/system/systemd-networkd-wait-online.service.d/vine.conf 0644 <<'EOF'
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --ipv4 --timeout=15
EOF
put etc/hostname 0644 <<'EOF'
debian
EOF
put etc/hosts 0644 <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
# The kernel postinst keeps /vmlinuz and /initrd.img pointing at the newest kernel, and the boot
# loader follows them.
put etc/kernel-img.conf 0644 <<'EOF'
do_symlinks = yes
EOF
put boot/extlinux/extlinux.conf 0644 <<EOF
# vine (scripts/cloud-image.sh)
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND $CMDLINE
EOF

# --- the root tree ---------------------------------------------------------------------------

ROOT=$WORK/root
log "mmdebstrap $SUITE (minbase + ${PACKAGES[*]})"
mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --setup-hook="cp -rT --preserve=mode '$PRE' \"\$1\"" \
    "$SUITE" "$ROOT" "${mirrors[@]}"

systemctl --root="$ROOT" --quiet mask "${MASK_UNITS[@]}"
systemctl --root="$ROOT" --quiet enable systemd-networkd.service
# Every instance makes its own: cloud-init's ssh module writes host keys at first boot.
rm -f "$ROOT"/etc/ssh/ssh_host_*
: >"$ROOT/etc/resolv.conf"
rm -f "$ROOT/vmlinuz.old" "$ROOT/initrd.img.old"

KREL=$(readlink "$ROOT/vmlinuz")
KREL=${KREL##*/vmlinuz-}
if [ ! -f "$ROOT/boot/vmlinuz-$KREL" ] || [ ! -f "$ROOT/boot/initrd.img-$KREL" ]; then
    die "no kernel in the image"
fi
pkg_version() { dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Version}' "$1"; }
KVER=$(pkg_version "linux-image-$KREL")
CIVER=$(pkg_version cloud-init)
log "kernel $KREL ($KVER), cloud-init $CIVER, initrd $(stat -c %s "$ROOT/boot/initrd.img-$KREL") bytes"
INITRD_FILES=$(chroot "$ROOT" lsinitramfs "/boot/initrd.img-$KREL")
for m in "${INITRD_MODULES[@]}"; do
    grep -q "/$m\.ko$" <<<"$INITRD_FILES" || die "the initramfs has no module $m"
done

# --- the disk --------------------------------------------------------------------------------

RAW=$WORK/disk.raw
truncate -s "${DISK_MIB}M" "$RAW"
printf 'label: dos\nlabel-id: %s\nstart=%s, type=83, bootable\n' "$DISK_ID" "$PART_START" |
    sfdisk --quiet "$RAW"
log "ext4 root ($((DISK_MIB - PART_START / 2048)) MiB) from the tree"
mkfs.ext4 -q -F -L root -U "$ROOT_UUID" -E offset=$((PART_START * 512)) -d "$ROOT" \
    "$RAW" $((DISK_MIB * 1024 - PART_START / 2))k

# The MBR's code boots the active partition, whose boot sector extlinux writes, with the block
# list of /boot/extlinux/ldlinux.sys (which it writes too): that needs the file system mounted.
log "installing extlinux"
mkdir -p "$MNT"
mount -o loop,offset=$((PART_START * 512)) "$RAW" "$MNT" || die "cannot loop-mount the new file system"
if ! msg=$(extlinux --install "$MNT/boot/extlinux" 2>&1); then
    printf '%s\n' "$msg" >&2
    die "extlinux --install failed"
fi
umount "$MNT"
dd if="$MBR" of="$RAW" bs=440 count=1 conv=notrunc status=none

log "converting to a dynamic VHD"
qemu-img convert -f raw -O vpc -o subformat=dynamic "$RAW" "$WORK/$NAME"
rm -f "$RAW"

VHD_SHA=$(sha256sum <"$WORK/$NAME" | cut -d' ' -f1)
VHD_SIZE=$(stat -c %s "$WORK/$NAME")
cat >"$WORK/image.json" <<EOF
{
  "recipe": $RECIPE,
  "suite": "$SUITE",
  "packages": [$(printf '"%s",' "${PACKAGES[@]}" | sed 's/,$//')],
  "kernel_release": "$KREL",
  "kernel_package_version": "$KVER",
  "cloud_init_version": "$CIVER",
  "cmdline": "$CMDLINE",
  "root_uuid": "$ROOT_UUID",
  "virtual_size_mib": $DISK_MIB,
  "vhd": "$NAME",
  "vhd_bytes": $VHD_SIZE,
  "vhd_sha256": "$VHD_SHA"
}
EOF

# image.json last: a reader that sees it sees the VHD it describes. /tmp may be another file
# system, so the VHD is copied next to its final name first and renamed there.
rm -f "$OUT/image.json"
mv "$WORK/$NAME" "$OUT/.$NAME.new"
mv -f "$OUT/.$NAME.new" "$VHD"
mv "$WORK/image.json" "$OUT/image.json.new"
mv -f "$OUT/image.json.new" "$OUT/image.json"
log "image written to $VHD: $VHD_SIZE bytes"
echo "$VHD"
