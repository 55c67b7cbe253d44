//! Standard output for the commands' human and JSON output. A reader that
//! goes away (`tcbackup list | head`) ends the program quietly with exit 0,
//! as ripgrep does, instead of a "failed printing to stdout" panic.

use std::fmt;
use std::io::{self, Write};

/// Write one line to stdout; exit quietly if stdout is a closed pipe.
pub fn line(args: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    if let Err(error) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        if error.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(i32::from(tcbackup_core::exit::Exit::Ok.code()));
        }
        // Any other stdout failure (a full disk behind a redirect) is worth
        // saying, once, on stderr; the command's exit code still stands.
        eprintln!("tcbackup: cannot write to stdout: {error}");
    }
}

/// `println!` that ends the program quietly on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
