//! Nothing tcbackup writes is exposed: `check-config` warns about a
//! `download_dir` or a profile file that others may read.

use std::os::unix::fs::PermissionsExt;

use crate::common::*;

fn finish(output: std::process::Output) -> Run {
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
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
