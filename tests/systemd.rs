//! The systemd unit is valid: `systemd-analyze verify` accepts it without a single warning.

use crate::common;

use std::process::Command;

#[test]
fn unit_file_verifies_cleanly() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("systemd-analyze is missing: tests/deps.sh installs it (package systemd)");
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../systemd/rendermesh.service"
    ))
    .unwrap();
    assert!(
        unit.contains("Type=notify")
            && unit.contains("WatchdogSec=")
            && unit.contains("ProtectSystem=strict")
    );
    // verify needs the ExecStart binary to exist: point it at the one just built
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("rendermesh.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/rendermesh", common::bin().to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed: {err}");
    assert!(
        err.trim().is_empty(),
        "systemd-analyze verify warned: {err}"
    );

    // and a broken unit is caught by the same check
    let bad = tmp.path().join("bad.service");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("ProtectSystem=strict", "ProtectSystem=sideways"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).trim().is_empty(),
        "a bad value went unnoticed"
    );
}
