//! The `tcbackup` binary: the command line, the daemon, the demo and the
//! commands on top of the `tcbackup-core` library. `main` parses the
//! command line and hands over to `app`.

mod app;
mod cli;
mod commands;
mod daemon;
mod demo;
mod logging;
mod output;
mod shutdown;

use clap::Parser;

fn main() -> std::process::ExitCode {
    app::main(cli::Cli::parse())
}
