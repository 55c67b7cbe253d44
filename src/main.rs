//! The `tcbackup` binary: parse the command line and hand over to the
//! library. Everything else lives in `tcbackup::app`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tcbackup::app::main(tcbackup::cli::Cli::parse())
}
