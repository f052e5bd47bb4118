//! Commands whose clap definitions are built only when the command line enters them.
//!
//! clap's derive builds every argument of every command before it parses anything; for a CLI of
//! this size that cost (allocations, and page faults on a fresh process) was a third of a
//! `vine vm pause` round trip to the daemon. [`Lazy`] defers a subcommand group's or a command's
//! arguments ([`clap::Command::defer`]) until the parser descends into it, so a call builds only
//! the commands on its own path. Help and errors are unchanged.

use clap::{ArgMatches, Args, Command, FromArgMatches, Subcommand};

/// The subcommand group or arguments `T`, defined lazily.
#[derive(Debug)]
pub struct Lazy<T>(pub T);

impl<T: FromArgMatches> FromArgMatches for Lazy<T> {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(m).map(Lazy)
    }

    fn from_arg_matches_mut(m: &mut ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(m).map(Lazy)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }

    fn update_from_arg_matches_mut(&mut self, m: &mut ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(m)
    }
}

impl<T: Subcommand> Subcommand for Lazy<T> {
    fn augment_subcommands(cmd: Command) -> Command {
        cmd.defer(|c| keep_about(c, T::augment_subcommands))
    }

    fn augment_subcommands_for_update(cmd: Command) -> Command {
        cmd.defer(|c| keep_about(c, T::augment_subcommands_for_update))
    }

    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

impl<T: Args> Args for Lazy<T> {
    fn augment_args(cmd: Command) -> Command {
        cmd.defer(|c| keep_about(c, T::augment_args))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        cmd.defer(|c| keep_about(c, T::augment_args_for_update))
    }
}

/// Runs `augment` on `cmd` but keeps the help text the parent gave it: the group's own doc
/// comment would otherwise replace it, since a deferred definition runs after the parent's.
fn keep_about(cmd: Command, augment: fn(Command) -> Command) -> Command {
    let about = cmd.get_about().cloned();
    let long = cmd.get_long_about().cloned();
    let mut cmd = augment(cmd);
    if let Some(a) = about {
        cmd = cmd.about(a);
    }
    if let Some(l) = long {
        cmd = cmd.long_about(l);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::cli::{Cli, Command};

    #[test]
    fn the_whole_command_tree_is_valid_once_built() {
        // Builds every deferred part too, so clap's own checks see all of it.
        Cli::command().debug_assert();
    }

    #[test]
    fn a_lazy_command_parses_and_keeps_its_parents_help() {
        let cli = Cli::try_parse_from(["vine", "vm", "restore", "web1"]).unwrap();
        assert!(matches!(cli.command, Command::Vm(super::Lazy(crate::cli::vm::VmCommand::Restore(_)))));
        let cli = Cli::try_parse_from(["vine", "vm", "create", "web1", "--memory", "1G"]).unwrap();
        assert!(matches!(cli.command, Command::Vm(super::Lazy(crate::cli::vm::VmCommand::Create(_)))));
        let mut root = Cli::command();
        root.build();
        let disk = root.find_subcommand("disk").unwrap();
        assert_eq!(
            disk.get_about().unwrap().to_string(),
            "Virtual disks (VHD): create, inspect, check, convert, serve over NBD"
        );
        let create = root.find_subcommand("vm").unwrap().find_subcommand("create").unwrap();
        assert!(create.get_arguments().any(|a| a.get_id() == "memory"), "vm create lost its arguments");
        // Errors inside a lazy command still name the problem.
        let e = Cli::try_parse_from(["vine", "vm", "create", "web1"]).unwrap_err().to_string();
        assert!(e.contains("--memory"), "{e}");
    }
}
