//! The Debian package (`packaging/deb/build.sh`), installed on this box with `dpkg -i` and
//! purged again: it makes the service user, its directories, the config and the enabled
//! unit (which `systemd-analyze verify` accepts as installed), and a purge takes all of it
//! away and leaves media elsewhere alone. Needs root; it refuses to touch a box where
//! rendermesh is installed or its user exists.

use crate::common::*;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn installed() -> bool {
    let o = run("dpkg-query", &["-W", "-f=${Status}", "rendermesh"]);
    stdout(&o).contains("install ok installed")
}

fn user_exists(name: &str) -> bool {
    run("getent", &["passwd", name]).status.success()
}

/// Purges the package if a failed assertion left it installed.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        if installed() || Path::new("/etc/rendermesh").exists() {
            let _ = run("dpkg", &["--purge", "rendermesh"]);
        }
    }
}

#[test]
fn the_package_installs_the_service_and_a_purge_takes_it_all_away() {
    let tools = ["dpkg", "dpkg-deb", "dpkg-shlibdeps", "systemd-analyze"]
        .iter()
        .all(|t| run("which", &[t]).status.success());
    if !is_root() || !tools {
        assert!(
            !must_run(),
            "the package test needs root, dpkg-dev and systemd (tests/deps.sh)"
        );
        eprintln!("SKIPPED: package test: needs root and dpkg-dev");
        return;
    }
    let clean =
        !installed() && !user_exists("rendermesh") && !Path::new("/etc/rendermesh").exists();
    if !clean {
        assert!(
            !must_run(),
            "rendermesh is installed here (or its user or config exists): the package test \
             would remove it"
        );
        eprintln!("SKIPPED: package test: rendermesh is installed on this box");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = Command::new("bash")
        .arg(repo.join("packaging/deb/build.sh"))
        .arg(bin())
        .arg(tmp.path())
        .env("DEB_COMPRESS", "none")
        .output()
        .unwrap();
    assert!(o.status.success(), "build: {}", stderr(&o));
    let deb = stdout(&o).trim().to_string();
    assert!(deb.ends_with(".deb") && Path::new(&deb).exists(), "{deb}");
    let info = stdout(&run("dpkg-deb", &["-f", &deb, "Depends"]));
    assert!(info.contains("libavcodec"), "{info}");

    // media of the user's, outside anything the package owns
    let media = tempfile::Builder::new()
        .prefix("rendermesh-media")
        .tempdir_in("/var/tmp")
        .unwrap();
    let clip = small_clip(media.path(), "clip.mp4", 1, &[]);
    let clip_bytes = std::fs::read(&clip).unwrap();

    let _purge = Purge;
    let o = run("dpkg", &["-i", &deb]);
    assert!(o.status.success(), "dpkg -i: {}{}", stdout(&o), stderr(&o));
    let o = run("/usr/bin/rendermesh", &["--version"]);
    assert!(stdout(&o).starts_with("rendermesh "), "{}", stdout(&o));
    // the service user, its groups, its directories
    let pw = stdout(&run("getent", &["passwd", "rendermesh"]));
    assert!(pw.contains(":/var/lib/rendermesh:"), "{pw}");
    let groups = stdout(&run("id", &["-nG", "rendermesh"]));
    for g in ["rendermesh", "video", "render"] {
        assert!(
            groups.split_whitespace().any(|x| x == g),
            "{g} not in {groups}"
        );
    }
    let uid = stdout(&run("id", &["-u", "rendermesh"]))
        .trim()
        .parse::<u32>()
        .unwrap();
    let gid = stdout(&run("id", &["-g", "rendermesh"]))
        .trim()
        .parse::<u32>()
        .unwrap();
    let state = std::fs::metadata("/var/lib/rendermesh").unwrap();
    assert_eq!(
        (state.uid(), state.permissions().mode() & 0o777),
        (uid, 0o750)
    );
    let cfg = std::fs::metadata("/etc/rendermesh/node.toml").unwrap();
    assert_eq!((cfg.gid(), cfg.permissions().mode() & 0o777), (gid, 0o640));
    // the unit, as installed, enabled
    let unit = "/usr/lib/systemd/system/rendermesh.service";
    let o = run("systemd-analyze", &["verify", unit]);
    assert!(o.status.success(), "verify: {}", stderr(&o));
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(
        text.contains("ExecStart=/usr/bin/rendermesh node"),
        "{text}"
    );
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/rendermesh.service").exists(),
        "the service is not enabled"
    );
    assert!(Path::new("/usr/share/man/man1/rendermesh.1.gz").exists());
    let conffiles = stdout(&run("dpkg-query", &["-W", "-f=${Conffiles}", "rendermesh"]));
    assert!(
        conffiles.contains("/etc/rendermesh/node.toml"),
        "{conffiles}"
    );
    // the installed config is the one the service reads: the node's CLI accepts it
    let o = run(
        "/usr/bin/rendermesh",
        &["--config", "/etc/rendermesh/node.toml", "cache", "stat"],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let o = run("dpkg", &["--purge", "rendermesh"]);
    assert!(o.status.success(), "purge: {}{}", stdout(&o), stderr(&o));
    assert!(!installed());
    for gone in [
        "/usr/bin/rendermesh",
        "/etc/rendermesh",
        "/var/lib/rendermesh",
        unit,
        "/etc/systemd/system/multi-user.target.wants/rendermesh.service",
        "/usr/lib/sysusers.d/rendermesh.conf",
        "/usr/share/doc/rendermesh",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is still there");
    }
    assert!(
        !user_exists("rendermesh"),
        "the service user is still there"
    );
    assert!(!run("getent", &["group", "rendermesh"]).status.success());
    assert_eq!(
        std::fs::read(&clip).unwrap(),
        clip_bytes,
        "the media changed"
    );
}
