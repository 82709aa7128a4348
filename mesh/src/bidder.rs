//! The bidder side of the contract net: how long this node would take for a shard.
//!
//! A shard's compute time is its frames ÷ this node's calibrated speed for the shard's task at
//! its resolution: the measured fps of the encoder it asks for (hardware encoders included,
//! when they passed their test encode), or the scene-analysis fps for scoring. The calibration
//! measured 720p and 1080p; other sizes scale by pixels from the nearer one. The estimate is
//! then multiplied by the ratio of observed to estimated time of the shards this node has run
//! for that task (a moving average), so a calibration that was off corrects itself.
//!
//! A shard is declined when its memory estimate is above what the node allows or has free,
//! or when it asks for an encoder this node has not verified. Until the node's calibration
//! has finished, software shards are estimated at [`UNCALIBRATED_FPS_1080P`] and shards that
//! ask for a particular encoder are declined.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use rendermesh_protocol::{Bid, BidSheet, Capabilities, ContentId, JobId, ShardSpec, ShardTask};

/// Assumed speed (frames/s at 1080p, per slot) of a task the node has not calibrated.
pub const UNCALIBRATED_FPS_1080P: f64 = 10.0;
/// Weight of the newest observation in the correction factor.
const LEARN: f64 = 0.3;
/// Correction factors stay within these bounds (a stalled or instant run is no calibration).
const CORRECTION_MIN: f64 = 0.05;
const CORRECTION_MAX: f64 = 20.0;
const PIXELS_720P: f64 = 1280.0 * 720.0;
const PIXELS_1080P: f64 = 1920.0 * 1080.0;

/// What the speed of a shard depends on: its task and, for an encode, the encoder.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum TaskKey {
    Encode(String),
    Scenes,
}

fn task_key(spec: &ShardSpec) -> TaskKey {
    match &spec.task {
        ShardTask::Encode { options, .. } => TaskKey::Encode(options.encoder_name().to_string()),
        ShardTask::SceneScores { .. } => TaskKey::Scenes,
    }
}

/// The input blob a shard reads.
pub fn input_of(spec: &ShardSpec) -> ContentId {
    match &spec.task {
        ShardTask::Encode { chunk, .. } | ShardTask::SceneScores { chunk, .. } => *chunk,
    }
}

/// Frames per second at `width`×`height` from figures measured at 720p and 1080p (0 = not
/// measured).
fn fps_at(fps_720p: f64, fps_1080p: f64, width: u32, height: u32) -> Option<f64> {
    let pixels = (width as f64 * height as f64).max(1.0);
    let from_720 = (fps_720p > 0.0).then(|| fps_720p * PIXELS_720P / pixels);
    let from_1080 = (fps_1080p > 0.0).then(|| fps_1080p * PIXELS_1080P / pixels);
    let nearer_720 = pixels <= (PIXELS_720P * PIXELS_1080P).sqrt();
    if nearer_720 {
        from_720.or(from_1080)
    } else {
        from_1080.or(from_720)
    }
}

/// Compute seconds of `spec` on a node with `caps` (before correction), or why it declines.
pub fn estimate(caps: &Capabilities, spec: &ShardSpec) -> Result<f64, String> {
    let (w, h) = (spec.cost.width, spec.cost.height);
    let uncalibrated = || UNCALIBRATED_FPS_1080P * PIXELS_1080P / (w as f64 * h as f64).max(1.0);
    let fps = match &spec.task {
        ShardTask::Encode { options, .. } => {
            let name = options.encoder_name();
            let probed = !caps.encoders.is_empty();
            match caps.encoders.iter().find(|e| e.name == name) {
                Some(e) if e.verified => {
                    fps_at(e.fps_720p as f64, e.fps_1080p as f64, w, h).unwrap_or_else(uncalibrated)
                }
                Some(e) => {
                    return Err(format!(
                        "encoder {name} failed its test encode here ({})",
                        e.reason.as_deref().unwrap_or("no reason given")
                    ))
                }
                None if probed => return Err(format!("encoder {name} is not on this node")),
                None if options.encoder.is_some() => {
                    return Err(format!(
                        "encoder {name} is not verified here yet (calibration running)"
                    ))
                }
                None => uncalibrated(),
            }
        }
        ShardTask::SceneScores { .. } => fps_at(
            caps.scene_fps_720p as f64,
            caps.scene_fps_1080p as f64,
            w,
            h,
        )
        .unwrap_or_else(uncalibrated),
    };
    Ok(spec.cost.frames.max(1) as f64 / fps.max(1e-3))
}

/// One run in progress on this node.
struct Run {
    started: Instant,
    /// Corrected estimate of its compute time.
    estimate_s: f64,
}

/// This node's cost model: calibration, corrections from observed runs, what runs now.
#[derive(Clone)]
pub struct CostModel {
    inner: Arc<Inner>,
}

struct Inner {
    caps: RwLock<Capabilities>,
    /// Shards needing more memory than this are declined (0 = only free RAM counts).
    ram_limit: u64,
    correction: Mutex<HashMap<TaskKey, f64>>,
    running: Mutex<HashMap<(JobId, u32), Run>>,
}

impl CostModel {
    pub fn new(caps: Capabilities, ram_limit: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                caps: RwLock::new(caps),
                ram_limit,
                correction: Mutex::default(),
                running: Mutex::default(),
            }),
        }
    }

    /// The calibration finished (or the capabilities changed).
    pub fn set_caps(&self, caps: Capabilities) {
        *self.inner.caps.write().unwrap_or_else(|p| p.into_inner()) = caps;
    }

    fn correction(&self, key: &TaskKey) -> f64 {
        self.inner
            .correction
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
            .unwrap_or(1.0)
    }

    /// Corrected compute seconds of `spec` here, or why this node declines it.
    pub fn compute_seconds(&self, spec: &ShardSpec) -> Result<f64, String> {
        let caps = self.inner.caps.read().unwrap_or_else(|p| p.into_inner());
        let need = spec.cost.ram_estimate();
        if self.inner.ram_limit > 0 && need > self.inner.ram_limit {
            return Err(format!(
                "needs about {need} bytes of memory; this node allows {}",
                self.inner.ram_limit
            ));
        }
        if caps.ram_available_bytes > 0 && need > caps.ram_available_bytes {
            return Err(format!(
                "needs about {need} bytes of memory; {} are free here",
                caps.ram_available_bytes
            ));
        }
        let raw = estimate(&caps, spec)?;
        Ok(raw * self.correction(&task_key(spec)))
    }

    /// A shard starts here.
    pub fn begin(&self, spec: &ShardSpec) {
        let estimate_s = self.compute_seconds(spec).unwrap_or(0.0);
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (spec.job, spec.index),
                Run {
                    started: Instant::now(),
                    estimate_s,
                },
            );
    }

    /// A shard that began here ended; a successful run corrects the model.
    pub fn end(&self, spec: &ShardSpec, ok: bool) {
        let run = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(spec.job, spec.index));
        if !ok || run.is_none() {
            return;
        }
        let seconds = run.map_or(0.0, |r| r.started.elapsed().as_secs_f64());
        self.observe(spec, seconds);
    }

    /// Fold a run of `spec` that took `seconds` into the correction for its task.
    pub fn observe(&self, spec: &ShardSpec, seconds: f64) {
        let raw = {
            let caps = self.inner.caps.read().unwrap_or_else(|p| p.into_inner());
            match estimate(&caps, spec) {
                Ok(s) => s,
                Err(_) => return,
            }
        };
        if raw <= 0.0 || seconds <= 0.0 {
            return;
        }
        let ratio = (seconds / raw).clamp(CORRECTION_MIN, CORRECTION_MAX);
        let mut map = self
            .inner
            .correction
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let c = map.entry(task_key(spec)).or_insert(ratio);
        *c = ((1.0 - LEARN) * *c + LEARN * ratio).clamp(CORRECTION_MIN, CORRECTION_MAX);
    }

    /// Seconds until the first running shard here is expected to end (0 when none runs).
    fn first_free_s(&self) -> f64 {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|r| (r.estimate_s - r.started.elapsed().as_secs_f64()).max(0.0))
            .fold(f64::INFINITY, f64::min)
            .clamp(0.0, f64::MAX)
    }

    /// Answer a call for bids for `shards`. `slots`/`running`: this node's slots and shards
    /// running now; `has_blob`: whether the node already holds an input.
    pub fn bid_sheet(
        &self,
        shards: &[ShardSpec],
        slots: u32,
        running: u32,
        has_blob: impl Fn(&ContentId) -> bool,
    ) -> BidSheet {
        let free_slots = slots.saturating_sub(running);
        let queue_s = if free_slots > 0 || running == 0 {
            0.0
        } else {
            let s = self.first_free_s();
            if s.is_finite() {
                s
            } else {
                0.0
            }
        };
        let bids = shards
            .iter()
            .map(|spec| match self.compute_seconds(spec) {
                Ok(compute_s) => Bid::Offer {
                    shard: spec.index,
                    compute_s,
                    fetch_bytes: if has_blob(&input_of(spec)) {
                        0
                    } else {
                        spec.cost.bytes
                    },
                },
                Err(reason) => Bid::Decline {
                    shard: spec.index,
                    reason,
                },
            })
            .collect();
        BidSheet {
            slots,
            free_slots,
            queue_s,
            bids,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rendermesh_protocol::{
        CostHint, EncodeOptions, EncoderCap, FrameRange, Rational, ScoreParams, VideoCodec,
        CAPS_VERSION,
    };

    fn caps(encoders: Vec<EncoderCap>) -> Capabilities {
        Capabilities {
            version: CAPS_VERSION,
            hostname: "h".into(),
            arch: "x86_64".into(),
            os: "linux".into(),
            cpu_model: "cpu".into(),
            cores: 4,
            threads: 4,
            ram_total_bytes: 16 << 30,
            ram_available_bytes: 8 << 30,
            gpus: vec![],
            encoders,
            scene_fps_720p: 200.0,
            scene_fps_1080p: 90.0,
            force_cpu: false,
            binary_version: "0".into(),
            fingerprint: "f".into(),
            calibrated_unix_ms: 1,
        }
    }

    fn enc(name: &str, codec: &str, hw: bool, verified: bool, f720: f32, f1080: f32) -> EncoderCap {
        EncoderCap {
            name: name.into(),
            codec: codec.into(),
            hardware: hw,
            verified,
            reason: (!verified).then(|| "no device".into()),
            fps_720p: f720,
            fps_1080p: f1080,
        }
    }

    fn lab_caps() -> Capabilities {
        caps(vec![
            enc("libx264", "h264", false, true, 40.0, 20.0),
            enc("h264_nvenc", "h264", true, true, 600.0, 300.0),
            enc("hevc_vaapi", "h265", true, false, 0.0, 0.0),
        ])
    }

    fn range() -> FrameRange {
        FrameRange {
            start_pts: 0,
            end_pts: Some(300),
            time_base: Rational { num: 1, den: 30 },
            first_frame: 0,
            frames: 300,
            fps: Rational { num: 30, den: 1 },
            ts_offset: 0,
        }
    }

    fn encode(encoder: Option<&str>, w: u32, h: u32, frames: u64) -> ShardSpec {
        ShardSpec {
            job: JobId(1),
            index: 0,
            task: ShardTask::Encode {
                chunk: ContentId::of(b"chunk"),
                range: range(),
                options: EncodeOptions {
                    codec: VideoCodec::H264,
                    crf: 23,
                    preset: None,
                    encoder: encoder.map(str::to_string),
                },
            },
            cost: CostHint {
                frames,
                width: w,
                height: h,
                bytes: 5_000_000,
            },
        }
    }

    fn scenes(w: u32, h: u32, frames: u64) -> ShardSpec {
        ShardSpec {
            task: ShardTask::SceneScores {
                chunk: ContentId::of(b"chunk"),
                range: range(),
                params: ScoreParams::default(),
            },
            ..encode(None, w, h, frames)
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn a_hardware_encoder_bids_from_its_calibrated_speed() {
        let m = CostModel::new(lab_caps(), 0);
        let sw = m.compute_seconds(&encode(None, 1920, 1080, 300)).unwrap();
        let hw = m
            .compute_seconds(&encode(Some("h264_nvenc"), 1920, 1080, 300))
            .unwrap();
        assert!(close(sw, 15.0), "{sw}");
        assert!(close(hw, 1.0), "{hw}");
        // 720p uses the 720p figure; 4K scales from 1080p by pixels
        assert!(close(
            m.compute_seconds(&encode(None, 1280, 720, 300)).unwrap(),
            7.5
        ));
        assert!(close(
            m.compute_seconds(&encode(None, 3840, 2160, 300)).unwrap(),
            60.0
        ));
        assert!(close(
            m.compute_seconds(&scenes(1920, 1080, 90)).unwrap(),
            1.0
        ));
    }

    #[test]
    fn encoders_that_are_not_verified_here_are_declined() {
        let m = CostModel::new(lab_caps(), 0);
        let spec = |name: &str| ShardSpec {
            task: ShardTask::Encode {
                chunk: ContentId::of(b"chunk"),
                range: range(),
                options: EncodeOptions {
                    codec: VideoCodec::H265,
                    crf: 23,
                    preset: None,
                    encoder: Some(name.into()),
                },
            },
            ..encode(None, 1920, 1080, 30)
        };
        let failed = m.compute_seconds(&spec("hevc_vaapi")).unwrap_err();
        assert!(failed.contains("failed its test encode"), "{failed}");
        let absent = m.compute_seconds(&spec("hevc_qsv")).unwrap_err();
        assert!(absent.contains("not on this node"), "{absent}");
        // before calibration: software is estimated, a named encoder is declined
        let fresh = CostModel::new(caps(vec![]), 0);
        assert!(fresh.compute_seconds(&encode(None, 1920, 1080, 30)).is_ok());
        assert!(fresh
            .compute_seconds(&encode(Some("h264_nvenc"), 1920, 1080, 30))
            .is_err());
    }

    #[test]
    fn memory_requirements_decline() {
        let limited = CostModel::new(lab_caps(), 100 << 20);
        let spec = encode(None, 3840, 2160, 30);
        let why = limited.compute_seconds(&spec).unwrap_err();
        assert!(why.contains("this node allows"), "{why}");
        let mut small = lab_caps();
        small.ram_available_bytes = 64 << 20;
        let why = CostModel::new(small, 0)
            .compute_seconds(&encode(None, 1280, 720, 30))
            .unwrap_err();
        assert!(why.contains("are free here"), "{why}");
    }

    #[test]
    fn observed_runs_correct_the_estimate() {
        let m = CostModel::new(lab_caps(), 0);
        let spec = encode(None, 1920, 1080, 300);
        assert!(close(m.compute_seconds(&spec).unwrap(), 15.0));
        // this box is really twice as slow as calibrated
        for _ in 0..30 {
            m.observe(&spec, 30.0);
        }
        let corrected = m.compute_seconds(&spec).unwrap();
        assert!((corrected - 30.0).abs() < 0.1, "{corrected}");
        // the correction is per task: scenes keep their calibration
        assert!(close(
            m.compute_seconds(&scenes(1920, 1080, 90)).unwrap(),
            1.0
        ));
    }

    #[test]
    fn a_bid_sheet_offers_declines_and_counts_input_it_lacks() {
        let m = CostModel::new(lab_caps(), 0);
        let mut a = encode(None, 1920, 1080, 300);
        a.index = 0;
        let mut b = encode(Some("hevc_qsv"), 1920, 1080, 300);
        b.index = 1;
        let held = input_of(&a);
        let sheet = m.bid_sheet(&[a, b], 2, 1, |id| *id == held);
        assert_eq!((sheet.slots, sheet.free_slots, sheet.queue_s), (2, 1, 0.0));
        assert!(matches!(
            sheet.bids[0],
            Bid::Offer {
                shard: 0,
                fetch_bytes: 0,
                ..
            }
        ));
        assert!(matches!(&sheet.bids[1], Bid::Decline { shard: 1, .. }));
        // busy: the queue is the time until the running shard should end
        let run = encode(None, 1920, 1080, 300);
        m.begin(&run);
        let sheet = m.bid_sheet(std::slice::from_ref(&run), 1, 1, |_| false);
        assert_eq!(sheet.free_slots, 0);
        assert!(
            sheet.queue_s > 14.0 && sheet.queue_s <= 15.0,
            "{}",
            sheet.queue_s
        );
        assert!(matches!(
            sheet.bids[0],
            Bid::Offer {
                fetch_bytes: 5_000_000,
                ..
            }
        ));
        m.end(&run, false);
        assert_eq!(m.bid_sheet(&[], 1, 0, |_| false).queue_s, 0.0);
    }
}
