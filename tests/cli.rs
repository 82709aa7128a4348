//! The command line's stable surface.

use crate::common;

#[test]
fn help_lists_the_commands() {
    let out = std::process::Command::new(common::bin())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["node", "submit", "status"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(cmd)),
            "--help does not list {cmd}:\n{text}"
        );
    }
    let sub = std::process::Command::new(common::bin())
        .args(["submit", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&sub.stdout);
    assert!(
        text.contains("transcode") && text.contains("scenes"),
        "{text}"
    );
}

#[test]
fn stable_submit_forms_parse() {
    // `--help` of each form succeeds and names its documented options
    let t = std::process::Command::new(common::bin())
        .args(["submit", "transcode", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&t.stdout);
    for opt in ["--output", "--codec", "--crf", "--preset"] {
        assert!(text.contains(opt), "transcode --help lacks {opt}");
    }
    let s = std::process::Command::new(common::bin())
        .args(["submit", "scenes", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&s.stdout);
    for opt in ["--csv", "--json", "--edl"] {
        assert!(text.contains(opt), "scenes --help lacks {opt}");
    }
}

#[test]
fn a_listing_piped_into_a_reader_that_quits_ends_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    // keygen prints three lines; the reader closes before reading any
    let mut child = std::process::Command::new(common::bin())
        .args(["--data-dir", tmp.path().to_str().unwrap(), "keygen"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}
