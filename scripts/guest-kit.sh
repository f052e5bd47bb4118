#!/usr/bin/env bash
# Builds the guest kit that vine's real-guest tests boot under QEMU (TCG): a Debian kernel and a
# busybox initramfs whose /init obeys `vine.*` options on the kernel command line.
#
#   scripts/guest-kit.sh [OUT_DIR]        (default /var/lib/vine/kit; run as root or with apt access)
#
# Everything comes from Debian packages fetched with `apt-get download` and unpacked with `dpkg -x`;
# nothing is installed on the host. The initramfs is written by this script (newc cpio, gzip -n)
# with fixed inode numbers, owners and times, so the same packages give the same bytes.
# Idempotent: when OUT_DIR/kit.json names this recipe and the files still match their sha256, it
# exits at once, without asking apt anything (so a newer kernel in the archive is picked up only
# when RECIPE is bumped or kit.json is deleted). Concurrent runs serialise on OUT_DIR/.lock.
#
# Outputs: OUT_DIR/vmlinuz, OUT_DIR/initrd.img, OUT_DIR/kit.json (recipe, packages, sha256s and the
# kernel command line to use). The guest's behaviours are documented in the /init written below.
set -euo pipefail

# Bump whenever anything below changes what ends up in the kit.
RECIPE=16
# The kernel command line the tests start from; tests append `vine.*` options.
CMDLINE="console=ttyS0 panic=-1 quiet"
# Drivers the guest needs (loaded with their dependencies, in order, unless built in).
MODULES=(virtio_pci virtio_blk virtio_scsi sd_mod virtio_net virtio_console virtio_balloon ata_piix
    ahci e1000 button evdev)

OUT=${1:-/var/lib/vine/kit}
HERE=$(cd "$(dirname "$0")" && pwd)

log() { printf 'guest-kit: %s\n' "$*"; }
die() { printf 'guest-kit: error: %s\n' "$*" >&2; exit 1; }

json_field() { # FILE KEY -> value of a top-level string field of the kit.json written below
    sed -n "s/^  \"$2\": \"\(.*\)\",\{0,1\}$/\1/p" "$1"
}

kit_is_current() {
    local json=$OUT/kit.json
    [ -f "$json" ] || return 1
    [ "$(sed -n 's/^  "recipe": \([0-9]*\),$/\1/p' "$json")" = "$RECIPE" ] || return 1
    [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ] || return 1
    [ "$(sha256sum <"$OUT/vmlinuz" | cut -d' ' -f1)" = "$(json_field "$json" vmlinuz_sha256)" ] || return 1
    [ "$(sha256sum <"$OUT/initrd.img" | cut -d' ' -f1)" = "$(json_field "$json" initrd_sha256)" ]
}

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
if kit_is_current; then
    log "kit in $OUT is current (recipe $RECIPE); nothing to do"
    exit 0
fi

WORK=$(mktemp -d /tmp/vine-guest-kit.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# --- packages --------------------------------------------------------------------------------

# The kernel package bookworm's `linux-image-amd64` currently points at (backports are pinned
# below the release, so this is the newest bookworm/-security ABI), preferring its `-unsigned`
# twin: same vmlinuz and modules without the Secure Boot signature.
resolve_kernel_package() {
    local pkg
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)
    [ -n "$pkg" ] || return 1
    if apt-cache show "$pkg-unsigned" >/dev/null 2>&1; then
        pkg=$pkg-unsigned
    fi
    echo "$pkg"
}

download() { # PKG... into $WORK/debs
    mkdir -p "$WORK/debs"
    # `_apt` cannot write into a mktemp directory; download as root without the sandbox warning.
    (cd "$WORK/debs" && apt-get -q -o APT::Sandbox::User=root download "$@" >/dev/null)
}

if ! KPKG=$(resolve_kernel_package) || ! download "$KPKG" busybox-static; then
    log "package lists missing or stale; apt-get update"
    apt-get update -qq
    KPKG=$(resolve_kernel_package) || die "no linux-image-*-amd64 behind linux-image-amd64 in apt-cache"
    download "$KPKG" busybox-static
fi
KDEB=$(ls "$WORK"/debs/"$KPKG"_*.deb)
BDEB=$(ls "$WORK"/debs/busybox-static_*.deb)
KVER_PKG=$(dpkg-deb -f "$KDEB" Version)
BB_VER=$(dpkg-deb -f "$BDEB" Version)
log "kernel $KPKG $KVER_PKG, busybox-static $BB_VER"

log "unpacking"
mkdir -p "$WORK/kernel" "$WORK/busybox"
dpkg -x "$KDEB" "$WORK/kernel"
dpkg -x "$BDEB" "$WORK/busybox"
BUSYBOX=$WORK/busybox/bin/busybox
[ -x "$BUSYBOX" ] || die "busybox-static has no bin/busybox"

VMLINUZ=$(ls "$WORK"/kernel/boot/vmlinuz-*)
KREL=${VMLINUZ##*/vmlinuz-}
KMODS=$WORK/kernel/lib/modules/$KREL
[ -d "$KMODS/kernel" ] || die "$KPKG has no modules for $KREL"

# --- modules ---------------------------------------------------------------------------------

# Module name (underscores) -> path relative to $KMODS, for every module in the package.
declare -A MODPATH
while IFS= read -r rel; do
    name=${rel##*/}
    name=${name%.ko}
    MODPATH[${name//-/_}]=$rel
done < <(cd "$KMODS" && find kernel -name '*.ko' | LC_ALL=C sort)

modinfo_depends() { # PATH -> dependency names, one a line (from the module's .modinfo section)
    tr '\0' '\n' <"$KMODS/$1" | sed -n 's/^depends=//p' | head -n1 | tr ',' '\n' | sed '/^$/d'
}

declare -A VISITED
LOAD_ORDER=()
visit() { # NAME: depth-first, dependencies before dependants
    local name=${1//-/_} dep
    [ -z "${VISITED[$name]:-}" ] || return 0
    VISITED[$name]=1
    local rel=${MODPATH[$name]:-}
    [ -n "$rel" ] || die "module $name (needed by the kit) is not in $KPKG"
    for dep in $(modinfo_depends "$rel"); do
        visit "$dep"
    done
    LOAD_ORDER+=("$rel")
}

for m in "${MODULES[@]}"; do
    if grep -q "/$m\.ko$" "$KMODS/modules.builtin"; then
        log "module $m is built in"
    else
        visit "$m"
    fi
done
log "modules: ${#LOAD_ORDER[@]} (${LOAD_ORDER[*]##*/})"

# --- initramfs tree --------------------------------------------------------------------------

ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc/acpi/PWRF,lib/modules/"$KREL",proc,sys,dev,tmp,run,root}
cp "$BUSYBOX" "$ROOT/bin/busybox"
# The hostile guest's tool (vine.flood): static, so it needs nothing from the initramfs.
command -v gcc >/dev/null || die "gcc not found (scripts/setup.sh installs it)"
gcc -O2 -Wall -static -o "$ROOT/bin/vine-flood" "$HERE/guest-flood.c"
gcc -O2 -Wall -static -o "$ROOT/bin/vine-dirty" "$HERE/guest-dirty.c"
gcc -O2 -Wall -static -o "$ROOT/bin/vine-pings" "$HERE/guest-pings.c"
gcc -O2 -Wall -static -o "$ROOT/bin/vine-load" "$HERE/guest-load.c"
gcc -O2 -Wall -static -o "$ROOT/bin/vine-hold" "$HERE/guest-hold.c"
gcc -O2 -Wall -static -o "$ROOT/bin/vine-tick" "$HERE/guest-tick.c"
for rel in "${LOAD_ORDER[@]}"; do
    mkdir -p "$ROOT/lib/modules/$KREL/${rel%/*}"
    cp "$KMODS/$rel" "$ROOT/lib/modules/$KREL/$rel"
done
cp "$KMODS/modules.builtin" "$ROOT/lib/modules/$KREL/"
# modules.dep etc. for busybox modprobe inside the guest; sorted because depmod follows readdir.
"$BUSYBOX" depmod -b "$ROOT" "$KREL"
for f in "$ROOT/lib/modules/$KREL"/modules.{dep,alias,symbols}; do
    [ ! -f "$f" ] || LC_ALL=C sort -o "$f" "$f"
done
printf '%s\n' "${LOAD_ORDER[@]}" >"$ROOT/etc/vine-modules"

cat >"$ROOT/init" <<'EOF'
#!/bin/sh
# vine guest kit /init. Options on the kernel command line:
#   vine.counter=1        print "VINE-COUNTER <n>" every second, n counting up from 1 for as long
#                         as the guest runs (survives pause/resume and save/restore)
#   vine.cpuburn=N        run N busy loops
#   vine.meminfo=1        print "VINE-MEM total=<kB> free=<kB>" every second (/proc/meminfo's
#                         MemTotal and MemFree: a balloon's pages leave MemTotal)
#   vine.load=P:S[,P:S..] CPU load on a schedule (/bin/vine-load, scripts/guest-load.c): P % of
#                         one vCPU for S seconds, phase after phase from boot, the last for ever;
#                         prints "VINE-LOAD <phase> <P>" as each begins
#   vine.hold=M:S[,M:S..] memory use on a schedule (/bin/vine-hold, scripts/guest-hold.c): M MiB
#                         held for S seconds, phase after phase from boot, the last for ever,
#                         growing 8 MiB a second; prints "VINE-HOLD <phase> <M>" once it holds M
#   vine.disk=DEV         print "VINE-DISK <first 16 bytes in hex>" of DEV (e.g. /dev/vda, /dev/sda)
#                         and "VINE-DISK1 <first 16 bytes of sector 1 in hex>"
#   vine.diskwrite=TEXT   with vine.disk: write TEXT (NUL-padded) to sector 1 of DEV, sync, print
#                         "VINE-DISK-WROTE"
#   vine.records=DEV      write sequence-numbered records to DEV, one 512-byte sector each from
#                         sector 16 ("VINE-REC" and the number in ten digits, NUL-padded), each
#                         synced, about five a second for as long as the guest runs; after every
#                         20th, drop the caches, read every record back and print
#                         "VINE-RECCHECK <count> ok" or "VINE-RECCHECK <count> bad <first wrong>"
#   vine.dirty=MIB        dirty MIB MiB of memory continuously (/bin/vine-dirty,
#                         scripts/guest-dirty.c): "VINE-DIRTY-START <MiB>", then every 10 s
#                         "VINE-DIRTY <passes>"
#   vine.tick=1           print "VINE-TICK <n>" every 10 ms (/bin/vine-tick, scripts/guest-tick.c:
#                         a timestamp loop; whoever reads the console sees any pause of the
#                         guest as a gap between two ticks)
#   vine.spew=MIB         write MIB MiB of text lines to the console as fast as it takes them,
#                         then print "VINE-SPEW-DONE" every 5 s (a guest flooding its console)
#   vine.net=1            DHCP on eth0 with udhcpc; print "VINE-IP <addr>" on each lease
#   vine.ping=A[,B...]    with vine.net: once leased, ping each target every second, printing
#                         "VINE-PING <addr> ok" or "VINE-PING <addr> fail"
#   vine.pings=IP         with vine.net: once leased, a ping flood (/bin/vine-pings,
#                         scripts/guest-pings.c): an echo request to IP every 10 ms, and every
#                         second "VINE-PINGS sent=<n> recv=<n> gap=<longest loss run>"
#   vine.connect=IP:PORT  with vine.net: once leased, connect with nc every 2 s until the peer
#                         answers; print "VINE-CONNECT <first line of the answer>"
#   vine.flood=N          a hostile guest: once eth0 is up (with vine.net, once leased), send DHCP
#                         requests from N invented MACs (/bin/vine-flood, scripts/guest-flood.c)
#                         and print its "VINE-FLOOD sent=.. offers=.. acks=.. arp=.." line
#   vine.floodarp=A[,B..] with vine.flood: then send ARP replies claiming each address
# The console is the last console= of the kernel command line: ttyS0 (the UART) or hvc0 (a virtio
# console, whose driver is a module: /init's output moves to it once it is loaded).
# "VINE-BOOT-OK" is printed once the drivers are loaded and the power button is armed: ACPI
# power button (QMP system_powerdown) -> acpid -> poweroff -f. Errors print "VINE-ERROR <what>".
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
# Keep kernel messages from splitting our marker lines on the shared console.
echo 1 >/proc/sys/kernel/printk

krel=$(uname -r)
while read -r m; do
    insmod "/lib/modules/$krel/$m" || echo "VINE-ERROR insmod $m"
done </etc/vine-modules

opt() { # NAME -> value of vine.NAME= on the kernel command line (empty if absent)
    for w in $(cat /proc/cmdline); do
        case "$w" in "vine.$1="*) echo "${w#vine.$1=}"; return ;; esac
    done
}

wait_dev() { # PATH: up to 10 s for a device node
    i=0
    while [ ! -e "$1" ] && [ $i -lt 100 ]; do usleep 100000; i=$((i + 1)); done
    [ -e "$1" ]
}

con=ttyS0
for w in $(cat /proc/cmdline); do
    case "$w" in console=*) con=${w#console=}; con=${con%%,*} ;; esac
done
if [ "$con" = hvc0 ]; then
    if wait_dev /dev/hvc0; then
        exec </dev/hvc0 >/dev/hvc0 2>&1
    else
        echo "VINE-ERROR no /dev/hvc0"
    fi
fi

wait_dev /dev/input/event0 || echo "VINE-ERROR no input device for the power button"
# acpid daemonises before it opens the input devices, so run it in the foreground (in the
# background of this script) and wait until it holds the power button open: a press that comes
# earlier would be lost.
acpid -f -c /etc/acpi -l /tmp/acpid.log &
acpid_pid=$!
i=0
until ls -l "/proc/$acpid_pid/fd" 2>/dev/null | grep -q /dev/input/event; do
    i=$((i + 1))
    if [ $i -gt 200 ]; then echo "VINE-ERROR acpid did not open the power button"; break; fi
    usleep 50000
done

echo "VINE-BOOT-OK"

if [ "$(opt counter)" = 1 ]; then
    (n=0; while :; do n=$((n + 1)); echo "VINE-COUNTER $n"; sleep 1; done) &
fi

burn=$(opt cpuburn)
if [ -n "$burn" ]; then
    i=0
    while [ $i -lt "$burn" ]; do (while :; do :; done) & i=$((i + 1)); done
    echo "VINE-CPUBURN $burn"
fi

if [ "$(opt meminfo)" = 1 ]; then
    (while :; do
         awk '/^MemTotal:/ { t = $2 } /^MemFree:/ { f = $2 } END { print "VINE-MEM total=" t " free=" f }' /proc/meminfo
         sleep 1
     done) &
fi

load=$(opt load)
if [ -n "$load" ]; then
    vine-load "$load" &
fi

hold=$(opt hold)
if [ -n "$hold" ]; then
    vine-hold "$hold" &
fi

spew=$(opt spew)
if [ -n "$spew" ]; then
    # One MiB of lines written MIB times by cat, in big blocks, with the tty's output processing
    # off (no CR added to each line): the console gets whole blocks as fast as a guest can write.
    (yes "VINE-SPEW 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz" \
         | head -c 1048576 >/tmp/spew
     stty -F "/dev/$con" -opost
     i=0
     while [ $i -lt "$spew" ]; do cat /tmp/spew; i=$((i + 1)); done >"/dev/$con"
     stty -F "/dev/$con" opost
     # Again every 5 s: QEMU drops what a virtio console writes while its reader is behind.
     while :; do echo "VINE-SPEW-DONE"; sleep 5; done) &
fi

disk=$(opt disk)
if [ -n "$disk" ]; then
    if wait_dev "$disk"; then
        echo "VINE-DISK $(dd if="$disk" bs=16 count=1 2>/dev/null | hexdump -v -e '16/1 "%02x"')"
        echo "VINE-DISK1 $(dd if="$disk" bs=512 skip=1 count=1 2>/dev/null | head -c 16 | hexdump -v -e '16/1 "%02x"')"
        text=$(opt diskwrite)
        if [ -n "$text" ]; then
            if printf '%s' "$text" | dd of="$disk" bs=512 seek=1 count=1 conv=sync,fsync 2>/dev/null \
                && sync; then
                echo "VINE-DISK-WROTE"
            else
                echo "VINE-ERROR write $disk"
            fi
        fi
    else
        echo "VINE-ERROR no $disk"
    fi
fi

if [ "$(opt tick)" = 1 ]; then
    vine-tick &
fi

dirty=$(opt dirty)
if [ -n "$dirty" ]; then
    vine-dirty "$dirty" &
fi

recs=$(opt records)
if [ -n "$recs" ]; then
    (if wait_dev "$recs"; then
         i=0
         while :; do
             printf 'VINE-REC %010d' "$i" | dd of="$recs" bs=512 seek=$((16 + i)) count=1 conv=sync,fsync \
                 2>/dev/null || echo "VINE-ERROR record $i"
             i=$((i + 1))
             if [ $((i % 20)) = 0 ]; then
                 echo 3 >/proc/sys/vm/drop_caches
                 v=$(dd if="$recs" bs=512 skip=16 count="$i" 2>/dev/null | tr -s '\000' '\n' \
                     | awk -v n="$i" '$0 != sprintf("VINE-REC %010d", NR - 1) { print "bad " NR - 1; exit }
                                      END { if (NR < n) print "bad " NR }' | head -n 1)
                 echo "VINE-RECCHECK $i ${v:-ok}"
             fi
             usleep 200000
         done
     else
         echo "VINE-ERROR no $recs"
     fi) &
fi

if [ "$(opt net)" = 1 ]; then
    ip link set lo up
    if wait_dev /sys/class/net/eth0; then
        ip link set eth0 up
        udhcpc -f -i eth0 -s /etc/udhcpc.sh -T 2 -A 2 >/dev/null 2>&1 &
    else
        echo "VINE-ERROR no eth0"
    fi
    targets=$(opt ping)
    if [ -n "$targets" ]; then
        (until [ -f /tmp/leased ]; do sleep 1; done
         while :; do
             for t in $(echo "$targets" | tr , ' '); do
                 if ping -c 1 -W 1 "$t" >/dev/null 2>&1; then echo "VINE-PING $t ok"; else echo "VINE-PING $t fail"; fi
             done
             sleep 1
         done) &
    fi
    flood_to=$(opt pings)
    if [ -n "$flood_to" ]; then
        (until [ -f /tmp/leased ]; do sleep 1; done
         vine-pings "$flood_to") &
    fi
    peer=$(opt connect)
    if [ -n "$peer" ]; then
        (until [ -f /tmp/leased ]; do sleep 1; done
         while :; do
             got=$(echo hello | nc -w 2 "${peer%:*}" "${peer#*:}" 2>/dev/null | head -n 1)
             if [ -n "$got" ]; then echo "VINE-CONNECT $got"; break; fi
             sleep 2
         done) &
    fi
fi

flood=$(opt flood)
if [ -n "$flood" ]; then
    (if wait_dev /sys/class/net/eth0; then
         ip link set eth0 up
         if [ "$(opt net)" = 1 ]; then
             until [ -f /tmp/leased ]; do sleep 1; done
         fi
         echo "VINE-FLOOD-START"
         vine-flood eth0 "$flood" $(opt floodarp) || echo "VINE-ERROR vine-flood failed"
     else
         echo "VINE-ERROR no eth0"
     fi) &
fi

while :; do
    setsid cttyhack sh
    sleep 1
done
EOF

cat >"$ROOT/etc/udhcpc.sh" <<'EOF'
#!/bin/sh
# udhcpc event script: configure eth0 from the lease and report the address on the console.
case "$1" in
    deconfig)
        ip addr flush dev "$interface"
        ;;
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${subnet:-255.255.255.0}" dev "$interface"
        for r in $router; do ip route add default via "$r" dev "$interface"; break; done
        : >/etc/resolv.conf
        for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
        echo "VINE-IP $ip" >/dev/console
        : >/tmp/leased
        ;;
esac
EOF

# busybox acpid: the power button's input event is "PWRF"; its default action runs this file.
cat >"$ROOT/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "VINE-POWEROFF" >/dev/console
poweroff -f
EOF

# --- cpio ------------------------------------------------------------------------------------

# A newc archive writer in the spirit of the kernel's usr/gen_init_cpio: every entry gets inode
# number = its position, uid/gid 0, mtime 0, so the output depends only on the tree's content.
INO=0
cpio_entry() { # NAME TYPE PERM (octal) NLINK SIZE RDEVMAJ RDEVMIN, then the data on stdin
    local name=$1 mode=$((8#$2 | 8#$3)) nlink=$4 size=$5 rmaj=$6 rmin=$7 namesize
    INO=$((INO + 1))
    namesize=$((${#name} + 1))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
        "$INO" "$mode" 0 0 "$nlink" 0 "$size" 0 0 "$rmaj" "$rmin" "$namesize" 0 "$name"
    head -c $(((4 - (110 + namesize) % 4) % 4)) /dev/zero
    cat
    head -c $(((4 - size % 4) % 4)) /dev/zero
}

write_cpio() { # TREE -> archive on stdout
    local tree=$1 path rel
    cpio_entry dev 40000 755 2 0 0 0 </dev/null
    cpio_entry dev/console 20000 600 1 0 5 1 </dev/null
    cpio_entry dev/null 20000 666 1 0 1 3 </dev/null
    while IFS= read -r rel; do
        path=$tree/$rel
        [ "$rel" != dev ] || continue
        if [ -L "$path" ]; then
            local target
            target=$(readlink "$path")
            cpio_entry "$rel" 120000 777 1 "${#target}" 0 0 < <(printf "%s" "$target")
        elif [ -d "$path" ]; then
            cpio_entry "$rel" 40000 "$(stat -c %a "$path")" 2 0 0 0 </dev/null
        else
            cpio_entry "$rel" 100000 "$(stat -c %a "$path")" 1 "$(stat -c %s "$path")" 0 0 <"$path"
        fi
    done < <(cd "$tree" && find . -mindepth 1 | sed 's|^\./||' | LC_ALL=C sort)
    cpio_entry TRAILER!!! 0 0 1 0 0 0 </dev/null
}

chmod 0755 "$ROOT/init" "$ROOT/bin/vine-flood" "$ROOT/etc/udhcpc.sh" "$ROOT/etc/acpi/PWRF/00000080"
find "$ROOT" -type d -exec chmod 0755 {} +
find "$ROOT/lib" "$ROOT/etc/vine-modules" -type f -exec chmod 0644 {} +
chmod 1777 "$ROOT/tmp"
# Applet links: /bin/sh -> /bin/busybox and so on (absolute, resolved inside the guest).
while IFS= read -r applet; do
    applet=${applet#/}
    [ "$applet" != bin/busybox ] || continue
    ln -sfn /bin/busybox "$ROOT/$applet"
done < <("$BUSYBOX" --list-full | LC_ALL=C sort)

log "writing initrd.img"
write_cpio "$ROOT" | gzip -n -9 >"$WORK/initrd.img"
cp "$VMLINUZ" "$WORK/vmlinuz"

VMLINUZ_SHA=$(sha256sum <"$WORK/vmlinuz" | cut -d' ' -f1)
INITRD_SHA=$(sha256sum <"$WORK/initrd.img" | cut -d' ' -f1)
cat >"$WORK/kit.json" <<EOF
{
  "recipe": $RECIPE,
  "kernel_package": "$KPKG",
  "kernel_package_version": "$KVER_PKG",
  "kernel_release": "$KREL",
  "busybox_version": "$BB_VER",
  "modules": [$(printf '"%s",' "${LOAD_ORDER[@]##*/}" | sed 's/\.ko"/"/g; s/,$//')],
  "vmlinuz": "vmlinuz",
  "vmlinuz_sha256": "$VMLINUZ_SHA",
  "initrd": "initrd.img",
  "initrd_sha256": "$INITRD_SHA",
  "cmdline": "$CMDLINE"
}
EOF

# kit.json last: a reader that sees it sees the files it describes.
rm -f "$OUT/kit.json"
mv "$WORK/vmlinuz" "$OUT/vmlinuz"
mv "$WORK/initrd.img" "$OUT/initrd.img"
mv "$WORK/kit.json" "$OUT/kit.json"
log "kit written to $OUT: vmlinuz $(stat -c %s "$OUT/vmlinuz") bytes, initrd.img $(stat -c %s "$OUT/initrd.img") bytes"
