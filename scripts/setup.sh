#!/usr/bin/env bash
# Installs everything vine's build, demo and tests need on a Debian bookworm host, as root.
# Idempotent: a second run changes nothing and finishes quickly.
set -euo pipefail

# QEMU is pinned to the bookworm-backports 10.0 series: its VHD size rule (current_size unless the
# creator is `vpc `/`qemu`) is the one vine's tests assert. See docs/disk.md.
QEMU_SERIES="1:10.0"
APT_PACKAGES=(curl python3 python3-venv 7zip libnbd-bin fio libvhdi-utils busybox-static iproute2 procps psmisc syslinux syslinux-common mtools dosfstools nodejs chromium nftables isc-dhcp-client dnsmasq-base gcc libc6-dev dpkg-dev lintian man-db bash-completion etcd-server etcd-client protobuf-compiler libprotobuf-dev genisoimage lxc criu uidmap libcap2-bin)
BACKPORTS_PACKAGES=(qemu-system-x86 qemu-utils qemu-block-extra)

log() { printf 'setup: %s\n' "$*"; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: must run as root (it installs Debian packages)" >&2
        exit 1
    fi
}

add_backports() {
    local list=/etc/apt/sources.list.d/vine-backports.list
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        log "adding bookworm-backports to apt sources"
        echo "deb http://deb.debian.org/debian bookworm-backports main" >"$list"
        rm -f /var/lib/vine-setup.apt-updated
    fi
}

apt_update_once() {
    local stamp=/var/lib/vine-setup.apt-updated
    if [ ! -f "$stamp" ]; then
        log "apt-get update"
        apt-get update -qq
        touch "$stamp"
    fi
}

installed_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }

install_packages() {
    local missing=()
    for p in "${APT_PACKAGES[@]}"; do
        [ -n "$(installed_version "$p")" ] || missing+=("$p")
    done
    local qemu_missing=()
    for p in "${BACKPORTS_PACKAGES[@]}"; do
        case "$(installed_version "$p")" in
            "$QEMU_SERIES"*) ;;
            *) qemu_missing+=("$p") ;;
        esac
    done
    if [ ${#missing[@]} -gt 0 ] || [ ${#qemu_missing[@]} -gt 0 ]; then
        apt_update_once
    fi
    if [ ${#qemu_missing[@]} -gt 0 ]; then
        log "installing ${qemu_missing[*]} from bookworm-backports"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports "${qemu_missing[@]}" >/dev/null
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # Debian's nodejs comes without npm; a nodejs that bundles npm (NodeSource's) conflicts with it.
    if ! command -v npm >/dev/null; then
        apt_update_once
        log "installing npm"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
    fi
}

check_tools() {
    local v
    v=$(qemu-img --version | head -n1)
    case "$v" in
        *"version 10.0"*) log "qemu-img: $v" ;;
        *) echo "setup: expected qemu-img 10.0.x, found: $v" >&2; exit 1 ;;
    esac
    command -v cargo >/dev/null || { echo "setup: cargo not found (rustup toolchain expected)" >&2; exit 1; }
}

# schemathesis (PyPI), which the API test runs against the OpenAPI document, in its own venv.
SCHEMATHESIS_VERSION=4.32.5
install_schemathesis() {
    local venv=/var/lib/vine/venv
    if [ "$("$venv/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
        log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
        mkdir -p /var/lib/vine
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
    fi
}

# sushy (PyPI: OpenStack's Redfish client library), which the Redfish test drives the service
# with, in a venv of its own (its dependencies need not agree with schemathesis's).
SUSHY_VERSION=5.14.0
install_sushy() {
    local venv=/var/lib/vine/sushy-venv
    local have
    have=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("sushy"))' 2>/dev/null || true)
    if [ "$have" != "$SUSHY_VERSION" ]; then
        log "installing sushy $SUSHY_VERSION into $venv"
        mkdir -p /var/lib/vine
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/pip" install -q "sushy==$SUSHY_VERSION"
    fi
}

# The unprivileged system user QEMU and vine's disk servers run as (as Debian's libvirt makes
# libvirt-qemu): no home, no shell, in the kvm group for /dev/kvm.
EMULATOR_USER=vine-qemu
make_emulator_user() {
    if ! getent passwd "$EMULATOR_USER" >/dev/null; then
        log "creating the system user $EMULATOR_USER"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --comment "vine emulators" "$EMULATOR_USER"
    fi
    if getent group kvm >/dev/null && ! id -nG "$EMULATOR_USER" | grep -qw kvm; then
        usermod -a -G kvm "$EMULATOR_USER"
    fi
}

need_root
add_backports
install_packages
make_emulator_user
install_schemathesis
install_sushy
check_tools
# The web admin site: npm packages (web/package-lock.json) and the built pages in web/dist.
bash "$(dirname "$0")/web.sh"
log "done"
