//! Parent locators: encoding the payloads vine writes and turning every kind a reader may meet
//! into candidate paths (spec, "Parent Locator Entry"; see shared/ref/vhd-facts.md §5).

use std::path::{Path, PathBuf};

use crate::header::{decode_utf16, encode_utf16};
use crate::spec;

/// Decodes a locator payload into a path candidate, relative ones resolved against `child_dir`.
pub fn candidate(platform: u32, payload: &[u8], child_dir: &Path) -> Option<PathBuf> {
    match platform {
        spec::PLATFORM_W2RU => {
            let text = decode_utf16(payload, false);
            Some(child_dir.join(windows_relative_to_unix(&text)))
        }
        spec::PLATFORM_WI2R => {
            let text = String::from_utf8_lossy(payload).trim_end_matches('\0').to_string();
            Some(child_dir.join(windows_relative_to_unix(&text)))
        }
        spec::PLATFORM_W2KU | spec::PLATFORM_WI2K => {
            let text = if platform == spec::PLATFORM_W2KU {
                decode_utf16(payload, false)
            } else {
                String::from_utf8_lossy(payload).trim_end_matches('\0').to_string()
            };
            if text.starts_with('/') {
                Some(PathBuf::from(text))
            } else {
                // A drive-letter path: only its file name can be looked for here.
                let name = text.rsplit(['\\', '/']).next()?.to_string();
                (!name.is_empty()).then(|| child_dir.join(name))
            }
        }
        spec::PLATFORM_MACX | spec::PLATFORM_VINE_RAW => {
            let text = String::from_utf8_lossy(payload).trim_end_matches('\0').to_string();
            let path = text
                .strip_prefix("file://")
                .map(|p| p.strip_prefix("localhost").unwrap_or(p))
                .unwrap_or(&text);
            Some(PathBuf::from(percent_decode(path)))
        }
        _ => None,
    }
}

fn windows_relative_to_unix(text: &str) -> String {
    let t = text.strip_prefix(".\\").or_else(|| text.strip_prefix("./")).unwrap_or(text);
    t.replace('\\', "/")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `W2ru` payload for a parent at `parent` seen from `child_dir`: `.\name.vhd` style.
pub fn w2ru_payload(parent: &Path, child_dir: &Path) -> Vec<u8> {
    let rel = relative_path(parent, child_dir);
    let text =
        if rel.starts_with("..") { rel.replace('/', "\\") } else { format!(".\\{}", rel.replace('/', "\\")) };
    encode_utf16(&text, false)
}

/// The `MacX` payload: a `file://` URL of the absolute path.
pub fn macx_payload(parent_abs: &Path) -> Vec<u8> {
    format!("file://{}", percent_encode(&parent_abs.to_string_lossy())).into_bytes()
}

/// `target` relative to `base` (both absolute), with `/` separators.
pub fn relative_path(target: &Path, base: &Path) -> String {
    let t: Vec<_> = target.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = Vec::new();
    for _ in common..b.len() {
        parts.push("..".into());
    }
    for c in &t[common..] {
        parts.push(c.as_os_str().to_string_lossy().into_owned());
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w2ru_round_trips_through_candidate() {
        let dir = Path::new("/images/kids");
        let payload = w2ru_payload(Path::new("/images/kids/base.vhd"), dir);
        assert_eq!(decode_utf16(&payload, false), ".\\base.vhd");
        assert_eq!(
            candidate(spec::PLATFORM_W2RU, &payload, dir).unwrap(),
            PathBuf::from("/images/kids/base.vhd")
        );
        let up = w2ru_payload(Path::new("/images/base/p.vhd"), dir);
        assert_eq!(decode_utf16(&up, false), "..\\base\\p.vhd");
        assert_eq!(
            candidate(spec::PLATFORM_W2RU, &up, dir).unwrap(),
            PathBuf::from("/images/kids/../base/p.vhd")
        );
    }

    #[test]
    fn macx_url_with_spaces_and_unicode_round_trips() {
        let p = Path::new("/srv/my disks/bäse.vhd");
        let payload = macx_payload(p);
        assert_eq!(candidate(spec::PLATFORM_MACX, &payload, Path::new("/x")).unwrap(), p);
        assert_eq!(
            candidate(spec::PLATFORM_MACX, b"file://localhost/a/b.vhd", Path::new("/x")).unwrap(),
            PathBuf::from("/a/b.vhd")
        );
    }

    #[test]
    fn w2ku_drive_path_falls_back_to_file_name() {
        let payload = encode_utf16("C:\\VMs\\base.vhd", false);
        assert_eq!(
            candidate(spec::PLATFORM_W2KU, &payload, Path::new("/d")).unwrap(),
            PathBuf::from("/d/base.vhd")
        );
    }

    #[test]
    fn truncated_percent_escape_is_kept_literally() {
        assert_eq!(percent_decode("/a%2"), "/a%2");
        assert_eq!(percent_decode("/a%zz"), "/a%zz");
        assert_eq!(percent_decode("/a%41"), "/aA");
    }
}
