//! Media types that cross the wire inside shards and results: time bases, codecs and
//! encoder options, scene options and scores, frame ranges, scene lists. Only the node's job
//! kinds look inside them; the mesh carries them as parts of a task or a result.

use serde::{Deserialize, Serialize};

use crate::id::ContentId;

/// A rational number, e.g. a time base (1/15360) or a frame rate (30000/1001).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rational {
    pub num: i32,
    pub den: i32,
}

impl Rational {
    pub const fn new(num: i32, den: i32) -> Self {
        Self { num, den }
    }

    pub fn as_f64(self) -> f64 {
        if self.den == 0 {
            0.0
        } else {
            self.num as f64 / self.den as f64
        }
    }
}

/// Output video codec of a transcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VideoCodec {
    H264,
    H265,
    Av1,
    Vp9,
    /// Apple ProRes (FFmpeg's `prores_ks`, profile *proxy*): an editing proxy codec.
    ProRes,
    /// Avid DNxHR (FFmpeg's `dnxhd`, profile LB): an editing proxy codec.
    DnxHr,
}

impl VideoCodec {
    /// The software encoder used for this codec.
    pub fn encoder_name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "libx264",
            VideoCodec::H265 => "libx265",
            VideoCodec::Av1 => "libsvtav1",
            VideoCodec::Vp9 => "libvpx-vp9",
            VideoCodec::ProRes => "prores_ks",
            VideoCodec::DnxHr => "dnxhd",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264",
            VideoCodec::H265 => "h265",
            VideoCodec::Av1 => "av1",
            VideoCodec::Vp9 => "vp9",
            VideoCodec::ProRes => "prores",
            VideoCodec::DnxHr => "dnxhr",
        }
    }

    pub fn all() -> [VideoCodec; 6] {
        [
            VideoCodec::H264,
            VideoCodec::H265,
            VideoCodec::Av1,
            VideoCodec::Vp9,
            VideoCodec::ProRes,
            VideoCodec::DnxHr,
        ]
    }

    /// An intra-only editing codec (ProRes, DNxHR): no rate factor, written in QuickTime.
    pub fn is_intermediate(self) -> bool {
        matches!(self, VideoCodec::ProRes | VideoCodec::DnxHr)
    }
}

impl std::str::FromStr for VideoCodec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "h264" | "avc" | "x264" | "libx264" => Ok(VideoCodec::H264),
            "h265" | "hevc" | "x265" | "libx265" => Ok(VideoCodec::H265),
            "av1" | "svtav1" | "libsvtav1" => Ok(VideoCodec::Av1),
            "vp9" | "libvpx-vp9" => Ok(VideoCodec::Vp9),
            "prores" | "prores_ks" => Ok(VideoCodec::ProRes),
            "dnxhr" | "dnxhd" => Ok(VideoCodec::DnxHr),
            other => Err(format!(
                "unknown codec {other:?}; choose one of h264, h265, av1, vp9, prores, dnxhr"
            )),
        }
    }
}

/// Encoder settings shared by every chunk of a transcode.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EncodeOptions {
    pub codec: VideoCodec,
    /// Constant rate factor (quality; lower is better).
    pub crf: u8,
    /// Encoder preset, e.g. "medium" for x264/x265, "8" for SVT-AV1.
    pub preset: Option<String>,
    /// A specific FFmpeg encoder (e.g. "h264_nvenc"); `None` = the codec's software encoder.
    /// The coordinator checks it against the node's verified encoders and falls back to
    /// software, with a logged reason, when it cannot be used.
    pub encoder: Option<String>,
    /// Scale to this height (even), the width following the display aspect (even, square
    /// pixels); `None` keeps the source's size. Proxies use it.
    #[serde(default)]
    pub height: Option<u32>,
}

/// Heights an encode may scale to.
pub const SCALE_HEIGHTS: std::ops::RangeInclusive<u32> = 16..=4320;

impl EncodeOptions {
    /// The FFmpeg encoder these options run.
    pub fn encoder_name(&self) -> &str {
        self.encoder.as_deref().unwrap_or(self.codec.encoder_name())
    }
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            codec: VideoCodec::H264,
            crf: 23,
            preset: None,
            encoder: None,
            height: None,
        }
    }
}

/// Which scene detector turns per-frame scores into cuts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum SceneDetector {
    /// Cut where the weighted HSV delta reaches `threshold`.
    Content { threshold: f32 },
    /// Cut where the delta stands out from its neighbours by `adaptive_threshold`.
    Adaptive {
        adaptive_threshold: f32,
        min_content_val: f32,
        window_width: u32,
    },
    /// Cut where the shot-boundary network (TransNetV2, run on every frame) gives a
    /// transition probability above `threshold`.
    Neural { threshold: f32 },
    /// The cascade: the content scores of every frame settle clean hard cuts and calm
    /// stretches (cut at `threshold`); the network decides the blocks they leave open (weak
    /// or crowded spikes, sustained change) at `neural_threshold`. Without the network in the
    /// mesh, the content detector alone.
    Auto {
        threshold: f32,
        neural_threshold: f32,
    },
}

/// Options of a scene-detection job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SceneOptions {
    pub detector: SceneDetector,
    /// Minimum scene length in frames.
    pub min_scene_len: u32,
    /// Weights of hue, saturation and luma deltas.
    pub weights: [f32; 3],
    /// What a shard computes; part of the shard cache key.
    pub scoring: ScoreParams,
}

impl Default for SceneOptions {
    fn default() -> Self {
        Self {
            detector: SceneDetector::Content { threshold: 27.0 },
            min_scene_len: 15,
            weights: [1.0, 1.0, 1.0],
            scoring: ScoreParams::default(),
        }
    }
}

/// Parameters of per-frame scoring: everything that changes a shard's scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ScoreParams {
    /// Target width of the analysed frame; 0 picks width/⌊width/256⌋ like PySceneDetect.
    pub analysis_width: u32,
    /// Skip the decoder's loop filter (deblocking): faster, and invisible after downscaling.
    pub fast_decode: bool,
}

impl Default for ScoreParams {
    fn default() -> Self {
        Self {
            analysis_width: 0,
            fast_decode: true,
        }
    }
}

/// A half-open range of frames of one video stream, by presentation timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FrameRange {
    /// First pts that belongs to the shard.
    pub start_pts: i64,
    /// First pts that no longer belongs to it; `None` = until the end.
    pub end_pts: Option<i64>,
    /// Time base of the pts values.
    pub time_base: Rational,
    /// Index of the first frame in the whole stream (presentation order).
    pub first_frame: u64,
    /// Number of frames in the range, known from the probe.
    pub frames: u64,
    /// Frame rate of the stream (encoders need it for rate control).
    pub fps: Rational,
    /// Added to every timestamp inside the chunk (in `time_base`), so that no container
    /// ever sees a negative decode timestamp and shifts the timeline on its own.
    pub ts_offset: i64,
}

impl FrameRange {
    pub fn contains(&self, pts: i64) -> bool {
        pts >= self.start_pts && self.end_pts.is_none_or(|e| pts < e)
    }
}

/// Change of one frame against the one before: mean absolute delta of hue, saturation, luma.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HsvDelta {
    pub hue: f32,
    pub sat: f32,
    pub lum: f32,
}

/// A downscaled frame in planar 8-bit HSV, kept at shard edges so the coordinator can
/// score the frame pair that straddles a shard boundary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeFrame {
    pub width: u32,
    pub height: u32,
    pub hsv: Vec<u8>,
}

/// Scene scores of one shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SceneScores {
    /// Index of the first frame in the whole stream.
    pub first_frame: u64,
    /// `deltas[i]` compares frame `first_frame + i` with the frame before it; the first
    /// entry is `None` (its predecessor lies in the previous shard).
    pub deltas: Vec<Option<HsvDelta>>,
    pub first: Option<EdgeFrame>,
    pub last: Option<EdgeFrame>,
    /// How sampled frames look (every [`LOOK_EVERY`]th frame of the stream), when the shard
    /// was asked for them (a montage's analysis); empty otherwise.
    pub looks: Vec<FrameLook>,
}

/// The shot-boundary network's predictions for consecutive frames of a stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuralScores {
    /// Index of the first frame in the whole stream.
    pub first_frame: u64,
    /// Per frame: the probability of a transition at it.
    pub single: Vec<f32>,
    /// Per frame: the probability that it lies inside a transition.
    pub many: Vec<f32>,
    /// Per frame: mean luma (0–255) of the frame as the network saw it (48×27), which tells a
    /// fade through black from a dissolve.
    pub luma: Vec<u8>,
}

/// Frames in one block of the neural pass: the network runs on the windows of whole blocks
/// (block `k` keeps frames `50k..50k+50` of a window over `50k-25..50k+75`), placed on the
/// stream, not on shards, so the predictions do not depend on the sharding.
pub const NEURAL_BLOCK: u64 = 50;

/// Frames between two [`FrameLook`] samples (counted on the whole stream: frame indices that
/// are multiples of it).
pub const LOOK_EVERY: u64 = 4;

/// How one frame looks, for choosing material: measured on the frame scaled to the scene
/// analysis size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameLook {
    /// Index of the frame in the whole stream.
    pub frame: u64,
    /// Mean luma (0–255).
    pub luma: u8,
    /// Standard deviation of luma (0–255): contrast.
    pub contrast: u8,
    /// Mean absolute Laplacian of luma: sharpness (higher is sharper).
    pub sharpness: f32,
    /// Mean absolute luma change against the previous frame: motion.
    pub motion: f32,
    /// 64-bit average hash of an 8×8 luma grid: near-duplicate frames differ in few bits.
    pub hash: u64,
}

/// The frame looks of one whole file (its shards' looks stitched in order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileLooks {
    pub input: crate::id::ContentId,
    pub looks: Vec<FrameLook>,
}

/// The scene list of one input file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SceneList {
    pub input: ContentId,
    /// Frame rate of the video stream.
    pub fps: Rational,
    pub frames: u64,
    /// Frame indices where a new scene starts (never 0), ascending.
    pub cuts: Vec<u64>,
    /// The gradual ones among the cuts (ascending by cut); a cut not listed is a hard cut.
    /// Only a detector that runs the shot-boundary network sees them.
    pub transitions: Vec<Transition>,
}

/// A gradual transition between two scenes: the cut that starts the next scene and the
/// frames `[first, end)` the transition spans (the cut lies among them or at `end`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub cut: u64,
    pub kind: TransitionKind,
    pub first: u64,
    pub end: u64,
}

impl Transition {
    /// Frames the transition spans.
    pub fn frames(&self) -> u64 {
        self.end.saturating_sub(self.first)
    }
}

/// How one scene becomes the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransitionKind {
    /// Both pictures at once, one fading as the other appears.
    Dissolve,
    /// Through black: a fade out, a fade in, or both (a dip).
    Fade,
}

impl TransitionKind {
    pub fn name(self) -> &'static str {
        match self {
            TransitionKind::Dissolve => "dissolve",
            TransitionKind::Fade => "fade",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_range_contains() {
        let r = FrameRange {
            start_pts: 100,
            end_pts: Some(200),
            time_base: Rational::new(1, 100),
            first_frame: 0,
            frames: 10,
            fps: Rational::new(30, 1),
            ts_offset: 0,
        };
        assert!(!r.contains(99));
        assert!(r.contains(100));
        assert!(r.contains(199));
        assert!(!r.contains(200));
        let open = FrameRange { end_pts: None, ..r };
        assert!(open.contains(i64::MAX));
    }

    #[test]
    fn codec_names_parse() {
        for c in VideoCodec::all() {
            assert_eq!(c.name().parse::<VideoCodec>().unwrap(), c);
            assert_eq!(c.encoder_name().parse::<VideoCodec>().unwrap(), c);
        }
        assert!("mpeg2".parse::<VideoCodec>().unwrap_err().contains("h264"));
    }
}
