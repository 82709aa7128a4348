//! Encoders this node can really use, and how fast it is.
//!
//! Every encoder is proven by a test encode through [`encode_chunk`] — the function shards
//! run — on a tiny generated clip: an encoder that is compiled into FFmpeg but has no device,
//! driver or licence fails here, not in a job. Calibration times the same path (decode +
//! encode, one shard's threads) and scene scoring at 720p and 1080p. Results are cached in the
//! data dir per hardware/binary fingerprint.

use std::path::Path;
use std::time::Instant;

use ffmpeg_next as ff;
use rendermesh_mesh::exec::{CancelToken, ShardCtl};
use rendermesh_protocol::{
    Capabilities, EncodeOptions, EncoderCap, FrameRange, ScoreParams, VideoCodec, CAPS_VERSION,
};

use super::scenes::analyze::score_chunk;
use crate::engine::encode::encode_chunk;
use crate::engine::testclip::{test_clip, test_clip_until};
use crate::engine::MediaError;

/// Hardware encoders worth trying: (FFmpeg name, codec).
pub const HARDWARE_ENCODERS: [(&str, VideoCodec); 16] = [
    ("h264_nvenc", VideoCodec::H264),
    ("hevc_nvenc", VideoCodec::H265),
    ("av1_nvenc", VideoCodec::Av1),
    ("h264_vaapi", VideoCodec::H264),
    ("hevc_vaapi", VideoCodec::H265),
    ("av1_vaapi", VideoCodec::Av1),
    ("h264_qsv", VideoCodec::H264),
    ("hevc_qsv", VideoCodec::H265),
    ("av1_qsv", VideoCodec::Av1),
    ("h264_amf", VideoCodec::H264),
    ("hevc_amf", VideoCodec::H265),
    ("av1_amf", VideoCodec::Av1),
    ("h264_v4l2m2m", VideoCodec::H264),
    ("hevc_v4l2m2m", VideoCodec::H265),
    ("h264_videotoolbox", VideoCodec::H264),
    ("hevc_videotoolbox", VideoCodec::H265),
];

/// The codec an encoder name produces, for software and hardware encoders alike.
pub fn codec_of_encoder(name: &str) -> Option<VideoCodec> {
    VideoCodec::all()
        .into_iter()
        .find(|c| c.encoder_name() == name)
        .or_else(|| {
            HARDWARE_ENCODERS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| *c)
        })
}

/// Can `encoder` encode here? Runs a real test encode of a few frames.
pub fn verify_encoder(name: &str, dir: &Path) -> Result<(), String> {
    crate::engine::init();
    let codec = codec_of_encoder(name)
        .ok_or_else(|| format!("{name} is not an encoder rendermesh knows"))?;
    if ff::encoder::find_by_name(name).is_none() {
        return Err("not in this FFmpeg build".into());
    }
    let (clip, range) = test_clip(dir, 320, 240, 8).map_err(|e| e.to_string())?;
    let out = dir.join(format!(
        "rendermesh-verify-{name}-{}.nut",
        std::process::id()
    ));
    let opts = EncodeOptions {
        codec,
        crf: 28,
        preset: None,
        encoder: Some(name.to_string()),
        height: None,
    };
    let result = encode_chunk(&clip, &range, &opts, &out, 1, &ShardCtl::detached());
    let _ = std::fs::remove_file(&clip);
    let _ = std::fs::remove_file(&out);
    result.map(|_| ()).map_err(|e| {
        let cause = match e {
            MediaError::Encoder { cause, .. } => cause,
            other => other.to_string(),
        };
        match missing_device(name) {
            Some(hint) => format!("{hint}; test encode: {cause}"),
            None => format!("test encode: {cause}"),
        }
    })
}

/// Why a hardware encoder family cannot work here, in words a user can act on: its device
/// is absent, or present but not open to this process (the group that grants it), or the
/// path rendermesh takes cannot use it yet.
fn missing_device(name: &str) -> Option<String> {
    device_problem(Path::new("/dev"), name)
}

/// [`missing_device`] with the device tree under `dev`.
fn device_problem(dev: &Path, name: &str) -> Option<String> {
    let starting = |dir: &Path, prefix: &str| -> Vec<std::path::PathBuf> {
        let mut found: Vec<_> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
    };
    let closed = |paths: &[std::path::PathBuf], group: &str| -> Option<String> {
        let shut: Vec<_> = paths
            .iter()
            .filter(|p| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(p)
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
            })
            .collect();
        (!shut.is_empty() && shut.len() == paths.len()).then(|| {
            format!(
                "{} is there but this node may not open it: add the node's user to the \
                 `{group}` group (e.g. `usermod -aG {group} rendermesh`) and restart it",
                shut[0].display()
            )
        })
    };
    let render = starting(&dev.join("dri"), "renderD");
    match name.rsplit('_').next()? {
        "nvenc" => {
            let nv = starting(dev, "nvidia");
            if nv.is_empty() {
                return Some(
                    "no NVIDIA device (/dev/nvidia*): no card, or its driver is not loaded".into(),
                );
            }
            closed(&nv, "video")
        }
        "vaapi" | "qsv" | "amf" if render.is_empty() => Some(
            "no DRM render node (/dev/dri/renderD*): no GPU, or its driver is not loaded".into(),
        ),
        "vaapi" | "qsv" | "amf" => closed(&render, "render"),
        "v4l2m2m" if starting(dev, "video").is_empty() => {
            Some("no V4L2 memory-to-memory device (/dev/video*)".into())
        }
        "videotoolbox" if !cfg!(target_os = "macos") => {
            Some("VideoToolbox exists only on macOS".into())
        }
        _ => None,
    }
}

fn time_encode(
    name: &str,
    codec: VideoCodec,
    clip: &Path,
    range: &FrameRange,
    dir: &Path,
    threads: usize,
    ctl: &ShardCtl<'_>,
) -> f32 {
    let out = dir.join(format!(
        "rendermesh-calib-{name}-{}.nut",
        std::process::id()
    ));
    let opts = EncodeOptions {
        codec,
        crf: 23,
        preset: None,
        encoder: Some(name.to_string()),
        height: None,
    };
    let fps = repeat_for(range.frames, || {
        encode_chunk(clip, range, &opts, &out, threads, ctl).is_ok()
    });
    let _ = std::fs::remove_file(&out);
    fps
}

/// Each measurement lasts at least this long per frame it is asked for (300 ms at the
/// default 12), repeating its run: a box under a CPU quota is throttled only once it has
/// used its share of a quota period (100 ms by default), so a shorter run would see it at
/// full speed and the mesh would give it work it cannot do in time.
const MEASURE_PER_FRAME: std::time::Duration = std::time::Duration::from_millis(25);

/// Frames per second of `run` (which does `frames` frames; `false` = it failed, 0 fps),
/// repeated until the measurement has lasted long enough (at most 50 runs).
fn repeat_for(frames: u64, mut run: impl FnMut() -> bool) -> f32 {
    let least = MEASURE_PER_FRAME * frames.min(400) as u32;
    let t = Instant::now();
    let mut runs = 0u32;
    loop {
        if !run() {
            return 0.0;
        }
        runs += 1;
        if t.elapsed() >= least || runs >= 50 {
            break;
        }
    }
    (frames * runs as u64) as f32 / t.elapsed().as_secs_f32().max(1e-6)
}

fn time_scenes(clip: &Path, range: &FrameRange, threads: usize, ctl: &ShardCtl<'_>) -> f32 {
    repeat_for(range.frames, || {
        score_chunk(clip, range, &ScoreParams::default(), false, threads, ctl).is_ok()
    })
}

/// The generated clips of a calibration, removed when it ends (however it ends).
struct Clips(Vec<std::path::PathBuf>);

impl Drop for Clips {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = std::fs::remove_file(c);
        }
    }
}

/// Fingerprint of what a calibration depends on.
/// `host` is the host-only record from [`crate::host::probe`].
pub fn fingerprint(host: &Capabilities) -> String {
    let mut h = blake3::Hasher::new();
    for part in [
        host.arch.as_str(),
        host.cpu_model.as_str(),
        &host.threads.to_string(),
        &(host.ram_total_bytes >> 30).to_string(),
        env!("CARGO_PKG_VERSION"),
        &crate::engine::ENGINE_VERSION.to_string(),
        &format!("{}", ff::format::version()),
        &host.force_cpu.to_string(),
        // a new CPU quota is another box: calibrate again
        &format!("{:.2}", crate::host::cpu_quota().unwrap_or(0.0)),
    ] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    for g in &host.gpus {
        h.update(g.device.as_bytes());
        h.update(g.vendor.as_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

/// Probe every encoder and calibrate on top of the host-only record `host`; `frames` per
/// measurement (more = steadier, slower). Stops soon with [`MediaError::Cancelled`] once
/// `cancel` is set (a node asked to stop does not wait for its calibration).
#[tracing::instrument(skip_all)]
pub fn probe(
    host: &Capabilities,
    threads: usize,
    frames: u32,
    dir: &Path,
    cancel: &CancelToken,
) -> Result<Capabilities, MediaError> {
    let ctl = ShardCtl::new(&|_| {}, cancel);
    let stop = || {
        if cancel.is_cancelled() {
            Err(MediaError::Cancelled)
        } else {
            Ok(())
        }
    };
    let force_cpu = host.force_cpu;
    let (c720, r720) = test_clip_until(dir, 1280, 720, frames, &ctl)?;
    let mut clips = Clips(vec![c720.clone()]);
    let (c1080, r1080) = test_clip_until(dir, 1920, 1080, frames, &ctl)?;
    clips.0.push(c1080.clone());
    let mut encoders = Vec::new();
    let software = VideoCodec::all()
        .into_iter()
        .map(|c| (c.encoder_name(), c, false));
    let hardware = HARDWARE_ENCODERS.iter().map(|(n, c)| (*n, *c, true));
    for (name, codec, hw) in software.chain(hardware) {
        stop()?;
        let present = ff::encoder::find_by_name(name).is_some();
        if !present && hw {
            continue; // not compiled in: nothing to report
        }
        let (verified, reason) = if hw && force_cpu {
            (false, Some("hidden by force_cpu".to_string()))
        } else {
            match verify_encoder(name, dir) {
                Ok(()) => (true, None),
                Err(r) => (false, Some(r)),
            }
        };
        if let Some(r) = &reason {
            tracing::info!(encoder = name, reason = %r, "encoder not usable");
        }
        let (fps_720p, fps_1080p) = if verified {
            (
                time_encode(name, codec, &c720, &r720, dir, threads, &ctl),
                time_encode(name, codec, &c1080, &r1080, dir, threads, &ctl),
            )
        } else {
            (0.0, 0.0)
        };
        encoders.push(EncoderCap {
            name: name.into(),
            codec: codec.name().into(),
            hardware: hw,
            verified,
            reason,
            fps_720p,
            fps_1080p,
        });
    }
    let scene_fps_720p = time_scenes(&c720, &r720, threads, &ctl);
    let scene_fps_1080p = time_scenes(&c1080, &r1080, threads, &ctl);
    drop(clips);
    stop()?;
    Ok(Capabilities {
        encoders,
        scene_fps_720p,
        scene_fps_1080p,
        fingerprint: fingerprint(host),
        calibrated_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        ..host.clone()
    })
}

/// Capabilities from `<data_dir>/caps.json` when its fingerprint still matches (available
/// RAM refreshed), else probed and written there. `RENDERMESH_CALIBRATION_FRAMES` (default
/// 12) sets the frames per measurement. `speeds` fills in the speeds of the task classes
/// from the measurements (see [`crate::jobs::registry::fill_speeds`]).
pub fn load_or_probe(
    data_dir: &Path,
    force_cpu: bool,
    threads: usize,
    recalibrate: bool,
    speeds: fn(&mut Capabilities),
    cancel: &CancelToken,
) -> Result<(Capabilities, bool), MediaError> {
    let host = crate::host::probe(force_cpu);
    let file = data_dir.join("caps.json");
    let fp = fingerprint(&host);
    if !recalibrate {
        if let Some(mut c) = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Capabilities>(&b).ok())
        {
            if c.fingerprint == fp && c.version == CAPS_VERSION {
                c.ram_available_bytes = host.ram_available_bytes;
                return Ok((c, true));
            }
        }
    }
    std::fs::create_dir_all(data_dir).map_err(|e| MediaError::write(data_dir, e))?;
    let frames = std::env::var("RENDERMESH_CALIBRATION_FRAMES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| (2..=1000).contains(n))
        .unwrap_or(12);
    let mut caps = probe(&host, threads, frames, data_dir, cancel)?;
    // every kind turns the measurements into speeds of its task classes
    speeds(&mut caps);
    let tmp = data_dir.join("caps.json.tmp");
    let text = serde_json::to_vec_pretty(&caps).map_err(|e| MediaError::write(&file, e))?;
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &file))
        .map_err(|e| MediaError::write(&file, e))?;
    Ok((caps, false))
}

#[cfg(test)]
mod device_tests {
    use super::*;

    #[test]
    fn a_missing_or_closed_device_is_named_with_what_to_do() {
        let dev = tempfile::tempdir().unwrap();
        let d = dev.path();
        let said = |name: &str| device_problem(d, name).unwrap_or_default();
        assert!(said("h264_nvenc").starts_with("no NVIDIA device"));
        assert!(said("hevc_vaapi").starts_with("no DRM render node"));
        assert!(said("h264_qsv").starts_with("no DRM render node"));
        assert!(said("h264_v4l2m2m").starts_with("no V4L2"));
        assert_eq!(device_problem(d, "libx264"), None);
        // devices there and open to this process: no problem with the device (the test
        // encode, through frames on the GPU for VAAPI, tells the rest)
        std::fs::create_dir(d.join("dri")).unwrap();
        for f in ["dri/renderD128", "nvidia0", "nvidiactl", "video0"] {
            std::fs::write(d.join(f), b"").unwrap();
        }
        assert_eq!(device_problem(d, "h264_nvenc"), None);
        assert_eq!(device_problem(d, "h264_qsv"), None);
        assert_eq!(device_problem(d, "h264_v4l2m2m"), None);
        assert_eq!(device_problem(d, "h264_vaapi"), None);
        // a render node this process may not open names the group that grants it (root
        // opens anything: there the check cannot be made)
        if !nix_is_root() {
            use std::os::unix::fs::PermissionsExt;
            let node = d.join("dri/renderD128");
            std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o000)).unwrap();
            assert!(
                said("h264_qsv").contains("`render` group"),
                "{}",
                said("h264_qsv")
            );
        }
    }

    fn nix_is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
    }
}
