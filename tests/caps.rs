//! Capabilities: encoders proven by a real test encode on this machine, a calibration cached
//! per hardware, and a hardware encoder that cannot work falling back instead of failing.

use crate::common;

use common::*;

fn caps_json(data: &std::path::Path, env: &[(&str, &str)]) -> serde_json::Value {
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("--data-dir")
        .arg(data)
        .args(["caps", "--json"])
        .env("RENDERMESH_CALIBRATION_FRAMES", "4");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "caps failed: {}", stderr(&o));
    assert!(
        !stderr(&o).contains("Svt["),
        "encoder library chatter on stderr"
    );
    serde_json::from_slice(&o.stdout).expect("caps --json prints JSON")
}

fn has_gpu_device() -> bool {
    let dri = std::fs::read_dir("/dev/dri")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
        })
        .unwrap_or(false);
    dri || std::path::Path::new("/dev/nvidia0").exists()
}

#[test]
fn probe_verifies_encoders_by_test_encode_and_caches_the_calibration() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let c = caps_json(&data, &[]);
    let encoders = c["encoders"].as_array().unwrap();
    let x264 = encoders
        .iter()
        .find(|e| e["name"] == "libx264")
        .expect("libx264 listed");
    assert_eq!(x264["verified"], true);
    assert!(x264["fps_720p"].as_f64().unwrap() > 0.0 && x264["fps_1080p"].as_f64().unwrap() > 0.0);
    assert!(c["scene_fps_720p"].as_f64().unwrap() > 0.0);
    assert!(c["cores"].as_u64().unwrap() >= 1 && c["ram_total_bytes"].as_u64().unwrap() > 0);
    // every hardware encoder compiled into FFmpeg is listed with a reason, none verified here
    let hw: Vec<&serde_json::Value> = encoders.iter().filter(|e| e["hardware"] == true).collect();
    if has_gpu_device() {
        eprintln!("this machine has a GPU device: not asserting that no hardware encoder works");
    } else {
        assert!(
            hw.iter()
                .all(|e| e["verified"] == false && e["reason"].is_string()),
            "{hw:?}"
        );
        if let Some(nv) = hw.iter().find(|e| e["name"] == "h264_nvenc") {
            assert!(
                nv["reason"].as_str().unwrap().contains("no NVIDIA device"),
                "{nv}"
            );
        }
    }
    // cached: same calibration on the second run
    let again = caps_json(&data, &[]);
    assert_eq!(again["calibrated_unix_ms"], c["calibrated_unix_ms"]);
    assert_eq!(again["fingerprint"], c["fingerprint"]);
    // force_cpu: GPUs hidden, hardware encoders marked so, a different calibration key
    let cpu = caps_json(&data, &[("RENDERMESH_FORCE_CPU", "1")]);
    assert_eq!(cpu["force_cpu"], true);
    assert_eq!(cpu["gpus"].as_array().unwrap().len(), 0);
    assert_ne!(cpu["fingerprint"], c["fingerprint"]);
    for e in cpu["encoders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["hardware"] == true)
    {
        assert_eq!(e["reason"], "hidden by force_cpu");
    }
}

#[test]
fn an_unusable_hardware_encoder_falls_back_with_a_reason() {
    // on a box with a GPU h264_nvenc might work: there the GPUs are hidden, so the test
    // runs everywhere (with the reason "hidden by force_cpu" instead of "no device")
    let hide = if has_gpu_device() { "1" } else { "" };
    let tmp = tempfile::tempdir().unwrap();
    let src = small_clip(tmp.path(), "clip.mp4", 2, &[]);
    let out = tmp.path().join("out.mp4");
    let rep = tmp.path().join("r.json");
    let o = rendermesh_env(
        &tmp.path().join("data"),
        &[("RENDERMESH_FORCE_CPU", hide)],
        &[
            "submit",
            "transcode",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--encoder",
            "h264_nvenc",
            "--report",
            rep.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(
        o.status.success(),
        "job failed instead of falling back: {}",
        stderr(&o)
    );
    let err = stderr(&o);
    assert!(
        err.contains("note: encoder h264_nvenc cannot be used")
            && err.contains("falling back to libx264"),
        "{err}"
    );
    assert_eq!(video_frames(&out), 50);
    let notes = report(&rep)["status"]["notes"].as_array().unwrap().clone();
    assert_eq!(notes.len(), 1);

    let o = rendermesh(
        &tmp.path().join("data"),
        &[
            "submit",
            "transcode",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--encoder",
            "h264_magic",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown encoder"), "{}", stderr(&o));
}
