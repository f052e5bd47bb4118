//! The daemon never forks itself (ARCHITECTURE.md, `crates/sandbox`): a `pre_exec` step in any
//! crate's code makes the standard library fork the whole process instead of using posix_spawn,
//! which stalls a large multi-threaded daemon's other threads. Work between fork and exec belongs
//! in the launcher (`sandbox::launch`).

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_crate_runs_code_between_fork_and_exec() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for c in std::fs::read_dir(crates).unwrap().flatten() {
        let src = c.path().join("src");
        if src.is_dir() {
            sources(&src, &mut files);
        }
    }
    assert!(files.len() > 100, "found only {} source files under {}", files.len(), crates.display());
    // Spelled in pieces so that this file does not find itself.
    let forbidden = [concat!("pre", "_exec("), concat!("fd", "_mappings(")];
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            if forbidden.iter().any(|w| line.contains(w)) {
                found.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "code between fork and exec (use sandbox::launch):\n{}", found.join("\n"));
}
