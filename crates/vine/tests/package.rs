//! vine's Debian package (`scripts/package.sh`), built and then installed and removed with dpkg
//! in a throwaway copy of this machine: a private mount namespace with overlays on /usr, /etc and
//! /var and an empty /run, so the machine's own packages, users, running daemon and data are
//! never touched. Shows that lintian finds no errors; that after `dpkg -i` vine is on the PATH,
//! the vine-qemu user exists, `man vine` and `man vine-vm` open, bash completes `vine vm cr` to
//! `create` through bash-completion's own loader, and `systemd-analyze verify` accepts the unit;
//! and that `dpkg -r vine` removes all of it and leaves /var/lib/vine as it was.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Installs, inspects and removes the package; each finding is one `KEY value` line.
const INSIDE: &str = r#"
set -uo pipefail
T=$1 DEB=$2
for d in usr etc var; do
    mkdir -p "$T/$d.up" "$T/$d.work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$T/$d.up,workdir=$T/$d.work" "/$d" || exit 90
done
mount -t tmpfs tmpfs /run || exit 91
# Start from a machine without vine (inside the overlay only).
dpkg -r vine >/dev/null 2>&1
mkdir -p /var/lib/vine && echo operator-data >/var/lib/vine/keep-me
dpkg -i "$DEB" >"$T/dpkg-i.log" 2>&1; echo "INSTALL $?"
echo "WHICH $(command -v vine)"
echo "VERSION $(vine --version)"
echo "USER $(getent passwd vine-qemu | cut -d: -f1,7)"
echo "MAN-VINE $(man -w vine 2>&1)"
echo "MAN-VM $(man -w vine-vm 2>&1)"
echo "MAN-VM-TEXT $(MANWIDTH=100 man -P cat vine-vm 2>/dev/null | grep -m1 -A1 '^NAME' | tail -n1 | xargs)"
echo "COMPLETE $(bash -c 'source /usr/share/bash-completion/bash_completion
    _completion_loader vine
    COMP_WORDS=(vine vm cr); COMP_CWORD=2; COMP_LINE="vine vm cr"; COMP_POINT=${#COMP_LINE}
    $(complete -p vine | sed -n "s/.*-F \([^ ]*\) .*/\1/p") vine cr vm
    echo "${COMPREPLY[*]}"' 2>&1)"
echo "ZSH $(test -s /usr/share/zsh/vendor-completions/_vine && head -c 8 /usr/share/zsh/vendor-completions/_vine)"
systemd-analyze verify /lib/systemd/system/vine.service >"$T/verify.log" 2>&1; echo "VERIFY $?"
echo "WEB $(test -f /usr/share/vine/web/index.html && echo present)"
dpkg -r vine >"$T/dpkg-r.log" 2>&1; echo "REMOVE $?"
echo "AFTER-BIN $(test -e /usr/bin/vine && echo present || echo gone)"
echo "AFTER-UNIT $(test -e /lib/systemd/system/vine.service && echo present || echo gone)"
echo "AFTER-MAN $(ls /usr/share/man/man1/vine* 2>/dev/null | wc -l)"
echo "AFTER-WEB $(test -e /usr/share/vine && echo present || echo gone)"
echo "AFTER-STATUS $(dpkg-query -W -f='${db:Status-Status}' vine 2>/dev/null)"
echo "AFTER-DATA $(cat /var/lib/vine/keep-me)"
"#;

fn value<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| if l == key { Some("") } else { l.strip_prefix(key)?.strip_prefix(' ') })
        .unwrap_or_else(|| panic!("no {key} line in:\n{out}"))
}

#[test]
fn the_package_is_lintian_clean_installs_documents_completes_and_removes_cleanly() {
    let built = Command::new("bash").arg(repo().join("scripts/package.sh")).output().unwrap();
    assert!(built.status.success(), "scripts/package.sh failed:\n{}", text(&built));
    let deb = String::from_utf8_lossy(&built.stdout).trim().to_string();
    assert!(deb.ends_with(".deb") && Path::new(&deb).is_file(), "no package: {deb:?}");

    let lint = Command::new("lintian")
        .args(["--fail-on", "error", "--tag-display-limit", "0", &deb])
        .output()
        .unwrap();
    let report = text(&lint);
    assert!(lint.status.success(), "lintian reports errors:\n{report}");
    assert!(!report.lines().any(|l| l.starts_with("E: ")), "lintian errors:\n{report}");
    eprintln!("lintian:\n{report}");

    let t = tempfile::tempdir().unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-c", INSIDE, "inside"])
        .arg(t.path())
        .arg(&deb)
        .output()
        .unwrap();
    let out_text = text(&out);
    let log = |name: &str| std::fs::read_to_string(t.path().join(name)).unwrap_or_default();
    assert_eq!(value(&out_text, "INSTALL"), "0", "dpkg -i:\n{}\n{out_text}", log("dpkg-i.log"));
    assert_eq!(value(&out_text, "WHICH"), "/usr/bin/vine", "{out_text}");
    assert!(value(&out_text, "VERSION").starts_with("vine "), "{out_text}");
    assert_eq!(value(&out_text, "USER"), "vine-qemu:/usr/sbin/nologin", "{out_text}");
    assert_eq!(value(&out_text, "MAN-VINE"), "/usr/share/man/man1/vine.1.gz", "{out_text}");
    assert_eq!(value(&out_text, "MAN-VM"), "/usr/share/man/man1/vine-vm.1.gz", "{out_text}");
    assert!(value(&out_text, "MAN-VM-TEXT").starts_with("vine-vm - Virtual machines"), "{out_text}");
    assert_eq!(value(&out_text, "COMPLETE"), "create", "{out_text}");
    assert_eq!(value(&out_text, "ZSH"), "#compdef", "{out_text}");
    assert_eq!(value(&out_text, "VERIFY"), "0", "systemd-analyze verify:\n{}", log("verify.log"));
    assert!(!log("verify.log").contains("vine.service"), "systemd-analyze verify:\n{}", log("verify.log"));
    assert_eq!(value(&out_text, "WEB"), "present", "{out_text}");
    assert_eq!(value(&out_text, "REMOVE"), "0", "dpkg -r:\n{}\n{out_text}", log("dpkg-r.log"));
    assert_eq!(value(&out_text, "AFTER-BIN"), "gone", "{out_text}");
    assert_eq!(value(&out_text, "AFTER-UNIT"), "gone", "{out_text}");
    assert_eq!(value(&out_text, "AFTER-MAN"), "0", "{out_text}");
    assert_eq!(value(&out_text, "AFTER-WEB"), "gone", "{out_text}");
    assert!(matches!(value(&out_text, "AFTER-STATUS"), "not-installed" | "config-files" | ""), "{out_text}");
    assert_eq!(value(&out_text, "AFTER-DATA"), "operator-data", "/var/lib/vine must stay:\n{out_text}");
}
