//! The attacker's suite with real processes (docs/threat-model.md): a readable master key,
//! a replaced plugin binary, a crowd of slow connections. Every test here was seen failing
//! against the code before its fix.

use std::os::unix::fs::PermissionsExt;

use tempfile::TempDir;

use crate::kit::creddy;

/// A master key readable by group or others is refused at start, in the data directory
/// and as `secrets.key_file`, naming the path and the fix; nothing is served.
#[test]
fn a_master_key_readable_by_others_stops_the_server() {
    let home = TempDir::new().expect("TempDir is created");
    let dir = home.path().join("data");
    let dir_text = dir.display().to_string();
    let args = ["server", "--listen", "127.0.0.1:0", "--data-dir", &dir_text];
    std::fs::create_dir(&dir).expect("the directory is made");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .expect("the mode is set");
    let key = dir.join("master.key");
    std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")
        .expect("the file is written");
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode))
            .expect("the mode is set");
        let run = creddy(home.path(), &args, &[]);
        run.fails(2, &format!("chmod 600 {}", key.display()));
        assert!(
            run.stderr.contains(&format!("mode {mode:o}")),
            "{}",
            run.stderr
        );
    }

    // The same for a key file outside the data directory, behind a link too.
    let elsewhere = home.path().join("keys");
    std::fs::create_dir(&elsewhere).expect("the directory is made");
    let shared = elsewhere.join("creddy.key");
    std::fs::rename(&key, &shared).expect("the file is renamed");
    let link = elsewhere.join("current.key");
    std::os::unix::fs::symlink(&shared, &link).expect("the link is made");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644))
        .expect("the mode is set");
    let config = home.path().join("creddy.toml");
    std::fs::write(
        &config,
        format!("secrets = {{ key_file = \"{}\" }}\n", link.display()),
    )
    .expect("the file is written");
    let config_text = config.display().to_string();
    let mut with_config = args.to_vec();
    with_config.extend(["--config", &config_text]);
    creddy(home.path(), &with_config, &[]).fails(2, "accessible by group or others");
}
