//! The manifest of an appliance (`NAME.mf`, DSP0243 § 5.1): one line per file of the package,
//! `ALGORITHM(FILE)= HEX`, with SHA1 or SHA256 (SHA512 is read too). An importer checks every
//! file it uses against it; a file the manifest lists that does not match is refused.

use std::io::Read;

use sha2::Digest as _;

/// A digest algorithm a manifest may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-1 (OVF 1.x exporters).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

/// One file's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The file, as the manifest names it.
    pub file: String,
    /// The digest, lower-case hex.
    pub hex: String,
}

/// A parsed manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Every line's digest, in order.
    pub digests: Vec<Digest>,
}

/// What is wrong with a manifest, or with a file it lists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// A line vine cannot read.
    #[error("manifest line {line}: {problem}: {text:?}")]
    Line {
        /// The line number (from 1).
        line: usize,
        /// What is wrong.
        problem: String,
        /// The line (cut to 120 characters).
        text: String,
    },
    /// A file's contents do not match its digest.
    #[error("{file}: its {algorithm} is {found}, but the manifest says {expected}: the file is damaged or not the one exported")]
    Mismatch {
        /// The file.
        file: String,
        /// The algorithm.
        algorithm: &'static str,
        /// The manifest's digest.
        expected: String,
        /// The file's.
        found: String,
    },
    /// Reading the file failed.
    #[error("{file}: cannot read it to check its digest: {problem}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        problem: String,
    },
}

/// The largest manifest read.
pub const MAX_MANIFEST: usize = 1 << 20;

impl Manifest {
    /// Parses a manifest.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        if text.len() > MAX_MANIFEST {
            return Err(ManifestError::Line {
                line: 0,
                problem: format!("the manifest is {} bytes; vine reads up to {MAX_MANIFEST}", text.len()),
                text: String::new(),
            });
        }
        let mut digests = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |problem: &str| ManifestError::Line {
                line: i + 1,
                problem: problem.into(),
                text: line.chars().take(120).collect(),
            };
            let open = line.find('(').ok_or_else(|| bad("expected ALGORITHM(FILE)= HEX"))?;
            let close = line.rfind(")=").ok_or_else(|| bad("expected ALGORITHM(FILE)= HEX"))?;
            if close < open {
                return Err(bad("expected ALGORITHM(FILE)= HEX"));
            }
            let (algorithm, len) = match line[..open].trim() {
                "SHA1" => (Algorithm::Sha1, 40),
                "SHA256" => (Algorithm::Sha256, 64),
                "SHA512" => (Algorithm::Sha512, 128),
                _ => return Err(bad("the algorithm is not SHA1, SHA256 or SHA512")),
            };
            let file = line[open + 1..close].to_string();
            if file.is_empty() {
                return Err(bad("no file name"));
            }
            let hex = line[close + 2..].trim().to_ascii_lowercase();
            if hex.len() != len || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(&format!("the digest is not {len} hexadecimal digits")));
            }
            digests.push(Digest { algorithm, file, hex });
        }
        Ok(Manifest { digests })
    }

    /// The digest the manifest gives `file`, if any.
    pub fn digest_of(&self, file: &str) -> Option<&Digest> {
        self.digests.iter().find(|d| d.file == file)
    }
}

impl Digest {
    /// Checks `reader`'s contents (the file this digest is of) against it.
    pub fn check(&self, reader: impl Read) -> Result<(), ManifestError> {
        let found = hash(self.algorithm, reader)
            .map_err(|e| ManifestError::Read { file: self.file.clone(), problem: e.to_string() })?;
        if found != self.hex {
            return Err(ManifestError::Mismatch {
                file: self.file.clone(),
                algorithm: self.algorithm.name(),
                expected: self.hex.clone(),
                found,
            });
        }
        Ok(())
    }

    /// A manifest line for `file` with `algorithm`, from `reader`'s contents.
    pub fn of(algorithm: Algorithm, file: &str, reader: impl Read) -> std::io::Result<Digest> {
        Ok(Digest { algorithm, file: file.to_string(), hex: hash(algorithm, reader)? })
    }

    /// The manifest line.
    pub fn line(&self) -> String {
        format!("{}({})= {}", self.algorithm.name(), self.file, self.hex)
    }
}

fn hash(algorithm: Algorithm, mut reader: impl Read) -> std::io::Result<String> {
    fn run<D: sha2::Digest>(mut d: D, reader: &mut dyn Read) -> std::io::Result<String> {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            d.update(&buf[..n]);
        }
        Ok(d.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
    match algorithm {
        Algorithm::Sha1 => run(sha1::Sha1::new(), &mut reader),
        Algorithm::Sha256 => run(sha2::Sha256::new(), &mut reader),
        Algorithm::Sha512 => run(sha2::Sha512::new(), &mut reader),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_and_digests_checked() {
        let body = b"appliance disk";
        let d = Digest::of(Algorithm::Sha256, "a b.vmdk", &body[..]).unwrap();
        let s1 = Digest::of(Algorithm::Sha1, "x.ovf", &b"<Envelope/>"[..]).unwrap();
        let text = format!("{}\n\n{}\r\n", d.line(), s1.line());
        let m = Manifest::parse(&text).unwrap();
        assert_eq!(m.digests.len(), 2);
        assert_eq!(m.digest_of("a b.vmdk"), Some(&d));
        m.digest_of("a b.vmdk").unwrap().check(&body[..]).unwrap();
        let e = m.digest_of("a b.vmdk").unwrap().check(&b"appliance disK"[..]).unwrap_err();
        assert!(e.to_string().contains("a b.vmdk: its SHA256 is"), "{e}");
        // A known vector: SHA-1 of "abc".
        let abc = Digest::of(Algorithm::Sha1, "abc", &b"abc"[..]).unwrap();
        assert_eq!(abc.hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        for (text, problem) in [
            ("MD5(a)= 00", "not SHA1, SHA256 or SHA512"),
            ("SHA1(a)= 12", "40 hexadecimal digits"),
            ("SHA256 a = 00", "ALGORITHM(FILE)= HEX"),
            ("SHA1()= a9993e364706816aba3e25717850c26c9cd0d89d", "no file name"),
        ] {
            let e = Manifest::parse(&format!("\n{text}\n")).unwrap_err().to_string();
            assert!(e.starts_with("manifest line 2:") && e.contains(problem), "{text}: {e}");
        }
    }
}
