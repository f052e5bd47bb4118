//! Documents generated from the command-line definition itself, so they never drift from it:
//! shell completion scripts (`vine completions bash|zsh`, clap_complete) and man pages, one per
//! command (`vine manpages DIR`, clap_mangen), which `scripts/package.sh` puts in the package.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use super::Cli;

/// Shells vine writes completion scripts for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    /// bash (bash-completion loads `/usr/share/bash-completion/completions/vine`).
    Bash,
    /// zsh (`/usr/share/zsh/vendor-completions/_vine`).
    Zsh,
}

/// The whole command tree with every deferred definition built (see [`super::lazy`]).
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    cmd.build();
    cmd
}

/// Prints the completion script for `shell`.
pub fn completions(shell: Shell) -> anyhow::Result<i32> {
    let mut cmd = command();
    let out = &mut std::io::stdout();
    match shell {
        Shell::Bash => clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "vine", out),
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, "vine", out),
    }
    Ok(0)
}

/// Writes `vine.1` and a page per visible command (`vine-vm.1`, `vine-vm-create.1`, …) into
/// `dir`; prints how many.
pub fn manpages(dir: &Path) -> anyhow::Result<i32> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut n = 0;
    write_pages(&command(), "vine", dir, &mut n)?;
    println!("wrote {n} man pages to {}", dir.display());
    Ok(0)
}

fn write_pages(cmd: &clap::Command, name: &str, dir: &Path, n: &mut usize) -> anyhow::Result<()> {
    // Each page is titled by its full command name, so `man vine-vm-create` finds it.
    let page = cmd.clone().display_name(name.to_string()).bin_name(name.replace('-', " "));
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out).with_context(|| format!("rendering {name}.1"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    *n += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, n)?;
    }
    Ok(())
}
