//! Nothing tcbackup writes is exposed: whatever the umask of the shell,
//! cron or container that starts it, every file and directory it creates
//! under `download_dir` is owner-only (0600/0700), or 0640/0750 with
//! `group_readable = true`; a symbolic link planted at one of its private
//! paths is refused, not written through; and `check-config` warns about a
//! `download_dir` or a profile file that others may read.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Duration as Age;
use tcbackup_emulator::cos::{Fault, FaultTarget, Repeat};
use tcbackup_emulator::{sample, PgBackupKind};

use crate::common::*;

/// `cmd` run through `sh` with `umask` set first (the binary is exec'd,
/// so its pid is the child's).
fn with_umask(cmd: &Command, umask: &str) -> Command {
    let mut sh = Command::new("/bin/sh");
    sh.arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (name, value) in cmd.get_envs() {
        match value {
            Some(value) => sh.env(name, value),
            None => sh.env_remove(name),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        sh.current_dir(dir);
    }
    sh.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sh
}

fn finish(output: std::process::Output) -> Run {
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `path` itself and everything under it (links not followed), with
/// whether each is a directory and its permission bits.
fn modes_under(path: &Path) -> Vec<(PathBuf, bool, u32)> {
    let meta = std::fs::symlink_metadata(path).unwrap();
    assert!(
        !meta.file_type().is_symlink(),
        "tcbackup created a symbolic link: {}",
        path.display()
    );
    let mut out = vec![(
        path.to_path_buf(),
        meta.is_dir(),
        meta.permissions().mode() & 0o7777,
    )];
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            out.extend(modes_under(&entry.unwrap().path()));
        }
    }
    out
}

/// Panic naming every path under `download_dir` whose mode is not
/// `file`/`dir`.
#[track_caller]
fn assert_modes(h: &Harness, file: u32, dir: u32) {
    let wrong: Vec<String> = modes_under(&h.download_dir)
        .into_iter()
        .filter(|(_, is_dir, mode)| *mode != if *is_dir { dir } else { file })
        .map(|(path, _, mode)| format!("{:04o} {}", mode, path.display()))
        .collect();
    assert!(
        wrong.is_empty(),
        "want files {file:04o}, directories {dir:04o}; found:\n{}",
        wrong.join("\n")
    );
}

/// Under `umask`: a run interrupted while a large PostgreSQL base backup
/// is in flight (so the partial area holds a part file, its sidecar and
/// owner file, and the lock file exists), then a run that publishes
/// everything. After each, every path under `download_dir` (itself
/// included: tcbackup created it) must have `file`/`dir` modes.
fn interrupted_then_complete(h: &Harness, umask: &str, file: u32, dir: u32) {
    const LEN: u64 = 24 << 20;
    const STALL_AT: u64 = 4 << 20;
    let start = whole_seconds(h.emulator.clock().now() - Age::hours(1));
    let id = "5d1c0ffe-0000-4000-8000-0000000modes";
    sample::add_generated_pg_base_backup(h.emulator.state(), PG, id, start, LEN, 7).unwrap();
    let backup = h
        .pg_backups(PgBackupKind::Base)
        .into_iter()
        .find(|b| b.id == id)
        .unwrap();
    h.emulator.cos().add_fault(
        FaultTarget::Key(backup.file.cos_key.clone()),
        Fault::StallAfter(STALL_AT),
        Repeat::Times(1),
    );
    let partial = h
        .download_dir
        .join(".partial")
        .join(PG)
        .join(format!("base_{id}"));
    let part = partial.join(format!("{}.part", backup.file.name));
    let sidecar = partial.join(format!("{}.part.json", backup.file.name));

    let child = with_umask(&h.command(&["--now"]), umask).spawn().unwrap();
    // Once COS has sent everything up to the stall, the fault is spent
    // (the next run is not stalled) and the sidecar exists.
    wait_for(Duration::from_secs(60), "the download to stall", || {
        h.served(&backup.file.cos_key) >= STALL_AT
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let run = finish(child.wait_with_output().unwrap());
    run.assert_code(130);
    assert!(part.is_file() && sidecar.is_file(), "{}", run.stderr);
    assert!(h.download_dir.join(".lock").is_file());
    assert_modes(h, file, dir);

    let run = finish(with_umask(&h.command(&["--now"]), umask).output().unwrap());
    run.assert_code(0);
    for instance in [REDIS, PG] {
        assert!(!h.set_dirs(instance).is_empty(), "{}", run.stderr);
    }
    let set = h.instance_dir(PG).join(set_dir(start, "base", id));
    assert!(set.join("manifest.json").is_file(), "{}", set.display());
    assert_modes(h, file, dir);
}

/// Defect 5 of issue 8: with umask 022 backups used to land 0644 in 0755
/// directories, readable by every local user.
#[test]
fn under_umask_022_every_file_and_directory_is_owner_only() {
    let h = Harness::sample();
    interrupted_then_complete(&h, "022", 0o600, 0o700);
}

/// `group_readable = true` gives 0640/0750 even under umask 077, which
/// alone would strip the group bits: the modes are set explicitly.
#[test]
fn group_readable_gives_0640_and_0750_whatever_the_umask() {
    let h = Harness::sample();
    h.write_config_text(&format!(
        "group_readable = true\n{}",
        h.config_text(&Cfg::default())
    ));
    interrupted_then_complete(&h, "077", 0o640, 0o750);
}

#[test]
fn check_config_warns_when_download_dir_is_open_to_others() {
    let h = Harness::sample();
    std::fs::create_dir_all(&h.download_dir).unwrap();
    let chmod = |mode: u32| {
        std::fs::set_permissions(&h.download_dir, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let dir = h.download_dir.display().to_string();

    chmod(0o755);
    let run = h.run(&["check-config"]);
    run.assert_code(0);
    assert!(
        run.stderr.contains(&format!(
            "download_dir {dir} is readable or listable by others (mode 0755), so any local user may read the backups in it; run `chmod 0700 {dir}`"
        )),
        "{}",
        run.stderr
    );

    chmod(0o701);
    let run = h.run(&["check-config"]);
    assert!(
        run.stderr.contains(&format!(
            "download_dir {dir} is readable or listable by others (mode 0701)"
        )),
        "{}",
        run.stderr
    );

    // The group may be let in; only others are warned about.
    chmod(0o750);
    let run = h.run(&["check-config"]);
    run.assert_code(0);
    assert!(
        !run.stderr.contains("readable or listable by others"),
        "{}",
        run.stderr
    );

    // With group_readable the fix keeps the group's access.
    chmod(0o775);
    h.write_config_text(&format!(
        "group_readable = true\n{}",
        h.config_text(&Cfg::default())
    ));
    let run = h.run(&["check-config"]);
    run.assert_code(0);
    assert!(
        run.stderr.contains(&format!(
            "(mode 0775), so any local user may read the backups in it; run `chmod 0750 {dir}`"
        )),
        "{}",
        run.stderr
    );
}

/// The profile file `~/.tencentcloud/credentials` holds a key like the
/// config file and gets the same warning when others may read it.
#[test]
fn a_profile_file_readable_by_others_is_warned_about() {
    let h = Harness::sample();
    let text: String = h
        .config_text(&Cfg::default())
        .lines()
        .filter(|l| {
            !(l.starts_with("[credentials]")
                || l.starts_with("secret_id")
                || l.starts_with("secret_key"))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    h.write_config_text(&text);
    let profile = h.tmp.path().join(".tencentcloud/credentials");
    std::fs::create_dir_all(profile.parent().unwrap()).unwrap();
    std::fs::write(
        &profile,
        format!(
            "[default]\nsecret_id = {}\nsecret_key = {}\n",
            h.emulator.secret_id(),
            h.emulator.secret_key().expose()
        ),
    )
    .unwrap();
    let check = |mode: u32| {
        std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(mode)).unwrap();
        let mut cmd = h.command(&["check-config"]);
        cmd.env_remove("TENCENTCLOUD_CREDENTIALS_FILE");
        let run = finish(cmd.output().unwrap());
        run.assert_code(0);
        assert!(
            run.stdout.contains("credentials: profile file"),
            "{}",
            run.stdout
        );
        run
    };
    let path = profile.display().to_string();

    let run = check(0o644);
    assert!(
        run.stderr.contains(&format!(
            "profile file {path} holds a secret key and is readable by group or others (mode 0644); run `chmod 600 {path}`"
        )),
        "{}",
        run.stderr
    );
    let run = check(0o600);
    assert!(
        !run.stderr.contains("readable by group or others"),
        "{}",
        run.stderr
    );
}

/// A symbolic link planted at a part file, its sidecar or the sidecar's
/// temporary file is refused with a message naming it; the file it points
/// at keeps its bytes and nothing is published.
#[test]
fn a_symlink_at_a_part_or_sidecar_path_is_not_written_through() {
    const PRECIOUS: &[u8] = b"not tcbackup's to write\n";
    for suffix in [".part", ".part.json", ".part.json.tmp"] {
        let h = Harness::empty_postgres();
        let start = whole_seconds(h.emulator.clock().now() - Age::hours(1));
        let id = "5d1c0ffe-0000-4000-8000-00000000link";
        sample::add_generated_pg_base_backup(h.emulator.state(), PG, id, start, 1 << 20, 9)
            .unwrap();
        let backup = h.pg_backups(PgBackupKind::Base).pop().unwrap();
        let partial = h
            .download_dir
            .join(".partial")
            .join(PG)
            .join(format!("base_{id}"));
        std::fs::create_dir_all(&partial).unwrap();
        let outside = h.tmp.path().join("outside");
        std::fs::write(&outside, PRECIOUS).unwrap();
        let link = partial.join(format!("{}{suffix}", backup.file.name));
        symlink(&outside, &link).unwrap();

        let run = h.now();
        assert_eq!(
            std::fs::read(&outside).unwrap(),
            PRECIOUS,
            "{suffix}: written through\n{}",
            run.stderr
        );
        run.assert_code(1);
        assert!(
            run.stderr.contains(&format!(
                "{} is a symbolic link; tcbackup never follows links to its own files (remove it)",
                link.display()
            )),
            "{suffix}: {}",
            run.stderr
        );
        assert!(h.set_dirs(PG).is_empty(), "{suffix}");
    }
}

/// A symbolic link at `<download_dir>/.lock` is refused, not followed to
/// create or lock a file elsewhere.
#[test]
fn a_symlink_at_the_lock_path_is_refused() {
    let h = Harness::empty_postgres();
    std::fs::create_dir_all(&h.download_dir).unwrap();
    let elsewhere = h.tmp.path().join("elsewhere.lock");
    let lock = h.download_dir.join(".lock");
    symlink(&elsewhere, &lock).unwrap();
    let run = h.now();
    run.assert_code(1);
    assert!(
        run.stderr.contains(&format!(
            "{} is a symbolic link; tcbackup never follows links to its own files",
            lock.display()
        )),
        "{}",
        run.stderr
    );
    assert!(!elsewhere.exists(), "the lock was created through the link");
}
