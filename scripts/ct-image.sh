#!/usr/bin/env bash
# Builds container images (root file system tarballs) for vine's system containers:
#
#   scripts/ct-image.sh busybox [OUT_DIR]    (default /var/lib/vine/ct-images; run as root)
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
# Idempotent: OUT_DIR/busybox.tar.gz is rebuilt only when its recipe or busybox changed
# (OUT_DIR/busybox.json). The last line on stdout is the tarball's path.
set -euo pipefail
umask 022

RECIPE=1
KIND=${1:-}
OUT=${2:-/var/lib/vine/ct-images}
[ "$KIND" = busybox ] || { echo "usage: $0 busybox [OUT_DIR]" >&2; exit 2; }

BB=$(command -v busybox || true)
if [ -z "$BB" ] || ! file -L "$BB" 2>/dev/null | grep -q 'statically linked'; then
    apt-get install -y -qq --no-install-recommends busybox-static file >/dev/null
    BB=/bin/busybox
fi
BB=$(readlink -f "$BB")
BB_SHA=$(sha256sum "$BB" | cut -d' ' -f1)
TAR=$OUT/busybox.tar.gz
META=$OUT/busybox.json
mkdir -p "$OUT"
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
