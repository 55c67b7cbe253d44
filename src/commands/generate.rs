//! `tcbackup generate man|completions SHELL [--dir DIR]`: the man pages
//! and shell completion scripts, generated from the clap definition in
//! `cli.rs` (so they never drift from the binary). Used by
//! `scripts/build-deb.sh`; needs no config file.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, Generate};
use tcbackup_core::exit::Exit;

/// Run `tcbackup generate …`.
pub fn generate(what: &Generate) -> Exit {
    let written = match what {
        Generate::Man { dir: Some(dir) } => man_pages(dir),
        Generate::Man { dir: None } => man_page(&mut io::stdout().lock()).map(|()| Vec::new()),
        Generate::Completions {
            shell,
            dir: Some(dir),
        } => completion_file(*shell, dir).map(|path| vec![path]),
        Generate::Completions { shell, dir: None } => {
            completion(*shell, &mut io::stdout().lock()).map(|()| Vec::new())
        }
    };
    match written {
        Ok(paths) => {
            for path in paths {
                eprintln!("wrote {}", path.display());
            }
            Exit::Ok
        }
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Exit::Ok,
        Err(e) => {
            eprintln!("tcbackup: generate: {e}");
            Exit::Failed
        }
    }
}

/// The top-level man page, `tcbackup(1)`, as roff.
fn man_page(out: &mut dyn Write) -> io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)
}

/// `tcbackup.1` and one page per subcommand (`tcbackup-status.1`, …) in
/// `dir`, created if missing; the paths written.
fn man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "1"))
        .collect();
    written.sort();
    Ok(written)
}

/// The completion script for `shell`.
fn completion(shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "tcbackup", out);
    Ok(())
}

/// The completion script for `shell` in `dir` under the name that shell
/// looks for (`tcbackup.bash`, `_tcbackup`, `tcbackup.fish`, …).
fn completion_file(shell: Shell, dir: &Path) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut command = Cli::command();
    clap_complete::generate_to(shell, &mut command, "tcbackup", dir)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The subcommands a user can type, from the clap definition itself.
    fn subcommands() -> Vec<String> {
        Cli::command()
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| c.get_name().to_string())
            .collect()
    }

    #[test]
    fn the_man_page_names_every_subcommand_and_option() {
        let mut out = Vec::new();
        man_page(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "roff: {page}");
        assert!(page.contains(".TH tcbackup 1"), "{page}");
        for name in subcommands() {
            // roff escapes a dash: check\-config.
            let roff = name.replace('-', "\\-");
            assert!(page.contains(&roff), "{roff} missing from\n{page}");
        }
        for option in ["\\-\\-now", "\\-\\-config", "status", "Exit codes", "130"] {
            assert!(page.contains(option), "{option} missing from\n{page}");
        }
    }

    #[test]
    fn man_pages_in_a_dir_include_one_per_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let written = man_pages(dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"tcbackup.1".to_string()), "{names:?}");
        for name in subcommands() {
            let page = format!("tcbackup-{name}.1");
            assert!(names.contains(&page), "{page} missing from {names:?}");
        }
    }

    #[test]
    fn completions_of_each_shell_offer_every_subcommand() {
        let subcommands = subcommands();
        assert!(subcommands.contains(&"status".to_string()));
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            completion(shell, &mut out).unwrap();
            let script = String::from_utf8(out).unwrap();
            for name in &subcommands {
                assert!(script.contains(name.as_str()), "{shell}: no {name}");
            }
            let config_option = match shell {
                Shell::Fish => "-l config",
                _ => "--config",
            };
            assert!(
                script.contains(config_option),
                "{shell}: no {config_option}"
            );
        }
    }

    #[test]
    fn completion_files_get_the_names_shells_look_for() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = [Shell::Bash, Shell::Zsh, Shell::Fish]
            .into_iter()
            .map(|shell| completion_file(shell, dir.path()).unwrap())
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tcbackup.bash", "_tcbackup", "tcbackup.fish"]);
    }
}
