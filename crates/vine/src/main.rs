//! The `vine` command: parses the command line and hands each subcommand to its module.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    if !args.command.serves() {
        // Rust starts programs with SIGPIPE ignored, so a closed pipe would make every print
        // panic; a command whose reader has gone should just end, as other Unix tools do.
        // SAFETY: this runs first in main, before any thread is started, and only sets the
        // disposition of SIGPIPE back to the default; no handler code is installed.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    cli::init_logging(args.verbose);
    match cli::run(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("vine: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::exit(2);
        }
    }
}
