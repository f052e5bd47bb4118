#!/usr/bin/env bash
# Builds container images (root file system tarballs) for vine's system containers:
#
#   scripts/ct-image.sh busybox|debian [OUT_DIR]    (default /var/lib/vine/ct-images; run as root)
#
# busybox: Debian's static busybox (package busybox-static) as /bin/busybox with its applets,
# busybox's init as /sbin/init (it powers off on SIGUSR2, which vine sends), a root shell on
# the console, `udhcpc` on every ethN at boot (addresses from vine's DHCP server), users root
# and app (uid 1000), and these marks for tests and operators:
#   - the console shows "vine-ct: up HOSTNAME boot N" once booted (N counts boots, kept in
#     /var/lib/vine-ct/boots) and "vine-ct: address IP on ethN" for each lease;
#   - shutting down runs /etc/init.d/rcK, which writes /var/lib/vine-ct/shutdown and says
#     "vine-ct: shutting down" on the console.
#
# debian: Debian bookworm from Debian's packages (mmdebstrap --variant=minbase, from the
# archive the host's apt sources name) with systemd as init (it powers off on SIGRTMIN+3),
# systemd-networkd asking DHCP on every ethN, a getty on the console (systemd's own choice in
# a container), users root and app (uid 1000), no /etc/hostname (the container's name is its
# host name) and the same console marks as busybox ("vine-ct: up …", "vine-ct: address …",
# "vine-ct: shutting down" and /var/lib/vine-ct/shutdown), from two small units.
#
# Idempotent: OUT_DIR/KIND.tar.gz is rebuilt only when its recipe (or busybox) changed
# (OUT_DIR/KIND.json); concurrent runs serialise on OUT_DIR/.lock. The last line on stdout is
# the tarball's path.
set -euo pipefail
umask 022

log() { printf 'ct-image: %s\n' "$*" >&2; }
die() { printf 'ct-image: error: %s\n' "$*" >&2; exit 1; }

# The Debian image (see the header).
debian_image() {
    local tar=$OUT/debian-$SUITE.tar.gz meta=$OUT/debian-$SUITE.json
    if [ -f "$tar" ] && [ -f "$meta" ] && grep -q "\"recipe\": $DEBIAN_RECIPE," "$meta" &&
        grep -q "$(sha256sum "$tar" | cut -d' ' -f1)" "$meta"; then
        echo "$tar"
        return
    fi
    command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
    # One `deb URI SUITE COMPONENTS` line per suite the host's apt sources have (as
    # scripts/cloud-image.sh does): the build fetches from where the host does, and only there.
    local sources
    # shellcheck disable=SC2016 # apt's own $(FIELD) placeholders
    sources=$(apt-get indextargets --format '$(REPO_URI) $(CODENAME) $(COMPONENT)' \
        'Identifier: Packages' 'Target-Of: deb' 2>/dev/null |
        awk -v s="$SUITE" '$2 == s || $2 == s "-updates" || $2 == s "-security" {
                key = $1 " " $2
                if (!(key in comps)) { order[n++] = key; comps[key] = $3 }
                else if (index(" " comps[key] " ", " " $3 " ") == 0) comps[key] = comps[key] " " $3
            }
            END { for (i = 0; i < n; i++) print "deb " order[i] " " comps[order[i]] }')
    grep -q "^deb [^ ]* $SUITE " <<<"$sources" || die "the host's apt sources have no Debian $SUITE"
    local mirrors=() line
    while IFS= read -r line; do mirrors+=("$line"); done <<<"$sources"
    local work
    work=$(mktemp -d /tmp/vine-ct-image.XXXXXX)
    # shellcheck disable=SC2064 # expand now: the path is fixed
    trap "rm -rf --one-file-system '$work'" EXIT
    local pre=$work/pre
    mkdir -p "$pre/etc/systemd/network" "$pre/etc/systemd/system" "$pre/usr/local/sbin"
    cat >"$pre/etc/systemd/network/80-vine-eth.network" <<'NET'
[Match]
Name=eth*

[Network]
DHCP=ipv4
NET
    cat >"$pre/usr/local/sbin/vine-ct-mark" <<'MARK'
#!/bin/sh
# vine's console marks (scripts/ct-image.sh): up, address, shutdown.
mkdir -p /var/lib/vine-ct
case "$1" in
    up)
        n=$(cat /var/lib/vine-ct/boots 2>/dev/null || echo 0)
        n=$((n + 1))
        echo "$n" >/var/lib/vine-ct/boots
        echo "vine-ct: up $(hostname) boot $n" >/dev/console ;;
    address)
        for _ in $(seq 1 300); do
            ip=$(ip -4 -o addr show dev eth0 2>/dev/null | awk '{ split($4, a, "/"); print a[1]; exit }')
            if [ -n "$ip" ]; then echo "vine-ct: address $ip on eth0" >/dev/console; exit 0; fi
            sleep 0.1
        done ;;
    down)
        echo "vine-ct: shutting down" >/dev/console
        date +%s >/var/lib/vine-ct/shutdown
        sync ;;
esac
MARK
    chmod 755 "$pre/usr/local/sbin/vine-ct-mark"
    cat >"$pre/etc/systemd/system/vine-ct-ready.service" <<'UNIT'
[Unit]
Description=vine: the container's boot and shutdown marks
After=basic.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/vine-ct-mark up
ExecStop=/usr/local/sbin/vine-ct-mark down

[Install]
WantedBy=multi-user.target
UNIT
    cat >"$pre/etc/systemd/system/vine-ct-address.service" <<'UNIT'
[Unit]
Description=vine: the container's address mark
After=systemd-networkd.service vine-ct-ready.service

[Service]
Type=exec
ExecStart=/usr/local/sbin/vine-ct-mark address

[Install]
WantedBy=multi-user.target
UNIT
    log "mmdebstrap $SUITE (minbase, systemd) from ${mirrors[*]}"
    mmdebstrap --quiet --variant=minbase --include=systemd-sysv,iproute2,procps,iputils-ping,dbus \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --customize-hook="cp -rT --preserve=mode '$pre' \"\$1\"" \
        --customize-hook='chroot "$1" useradd -m -u 1000 -s /bin/bash app' \
        --customize-hook='systemctl --root="$1" --quiet enable systemd-networkd.service vine-ct-ready.service vine-ct-address.service' \
        --customize-hook='systemctl --root="$1" --quiet mask apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer' \
        --customize-hook='rm -f "$1/etc/hostname"; : >"$1/etc/machine-id"; : >"$1/etc/resolv.conf"' \
        "$SUITE" "$work/debian.tar.gz" "${mirrors[@]}"
    mv "$work/debian.tar.gz" "$tar"
    printf '{ "recipe": %s, "suite": "%s", "tarball_sha256": "%s" }\n' "$DEBIAN_RECIPE" "$SUITE" \
        "$(sha256sum "$tar" | cut -d' ' -f1)" >"$meta"
    echo "$tar"
}

RECIPE=1
DEBIAN_RECIPE=1
SUITE=bookworm
KIND=${1:-}
OUT=${2:-/var/lib/vine/ct-images}
case "$KIND" in
    busybox | debian) ;;
    *) echo "usage: $0 busybox|debian [OUT_DIR]" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
[ "$KIND" = debian ] && { debian_image; exit 0; }

BB=$(command -v busybox || true)
if [ -z "$BB" ] || ! file -L "$BB" 2>/dev/null | grep -q 'statically linked'; then
    apt-get install -y -qq --no-install-recommends busybox-static file >/dev/null
    BB=/bin/busybox
fi
BB=$(readlink -f "$BB")
BB_SHA=$(sha256sum "$BB" | cut -d' ' -f1)
TAR=$OUT/busybox.tar.gz
META=$OUT/busybox.json
if [ -f "$TAR" ] && [ -f "$META" ] && grep -q "\"recipe\": $RECIPE," "$META" && grep -q "$BB_SHA" "$META"; then
    echo "$TAR"
    exit 0
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
mkdir -p "$R"/{bin,sbin,etc/init.d,proc,sys,dev,run,tmp,root,home/app,var/log,var/lib/vine-ct,usr/bin,usr/sbin,usr/share/udhcpc}
chmod 1777 "$R/tmp"
chmod 700 "$R/root"
cp "$BB" "$R/bin/busybox"
for applet in $("$R/bin/busybox" --list-full); do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$R/$(dirname "$applet")"
    ln -sfn /bin/busybox "$R/$applet"
done
ln -sfn /bin/busybox "$R/sbin/init"

cat > "$R/etc/inittab" <<'INITTAB'
::sysinit:/etc/init.d/rcS
console::respawn:-/bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
INITTAB

cat > "$R/etc/init.d/rcS" <<'RCS'
#!/bin/sh
# Boot: loopback, a DHCP client on each NIC, the boot mark.
exec >/dev/console 2>&1
ip link set lo up
n=$(cat /var/lib/vine-ct/boots 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > /var/lib/vine-ct/boots
for dev in /sys/class/net/eth*; do
    [ -e "$dev" ] || continue
    udhcpc -b -S -i "${dev##*/}" -s /usr/share/udhcpc/default.script >/dev/null 2>&1
done
echo "vine-ct: up $(hostname) boot $n"
RCS

cat > "$R/etc/init.d/rcK" <<'RCK'
#!/bin/sh
# Shutdown: the mark, then every process asked to end.
echo "vine-ct: shutting down" >/dev/console
date +%s > /var/lib/vine-ct/shutdown
sync
RCK

cat > "$R/usr/share/udhcpc/default.script" <<'DHCP'
#!/bin/sh
# udhcpc's hook: the lease's address, route and resolver on $interface.
case "$1" in
    deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
    bound|renew)
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
        : > /etc/resolv.conf
        for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
        echo "vine-ct: address $ip on $interface" > /dev/console
        ;;
esac
exit 0
DHCP
chmod 755 "$R/etc/init.d/rcS" "$R/etc/init.d/rcK" "$R/usr/share/udhcpc/default.script"

cat > "$R/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$R/etc/group" <<'GROUP'
root:x:0:
app:x:1000:
nogroup:x:65534:
GROUP
printf 'root:*:19000:0:99999:7:::\napp:*:19000:0:99999:7:::\n' > "$R/etc/shadow"
chmod 600 "$R/etc/shadow"
chown 1000:1000 "$R/home/app"
echo "busybox" > "$R/etc/hostname"
: > "$R/etc/resolv.conf"

tar --numeric-owner --sort=name --mtime=@0 -C "$R" -czf "$WORK/busybox.tar.gz" .
mv "$WORK/busybox.tar.gz" "$TAR"
cat > "$META" <<JSON
{ "recipe": $RECIPE, "busybox": "$BB", "busybox_sha256": "$BB_SHA", "tarball_sha256": "$(sha256sum "$TAR" | cut -d' ' -f1)" }
JSON
echo "$TAR"
