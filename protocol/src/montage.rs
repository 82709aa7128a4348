//! Montages: the plan document (what `--plan` writes and `--from-plan` reads, and what a
//! finished montage job returns) and what one render shard is asked to make
//! ([`RenderSpec`]).
//!
//! Times in a plan are integer frames at the output rate (`fps`): a segment's place on the
//! timeline (`out_start`, `frames`) and where it starts in its source (`src_start`, frames at
//! the output rate counted from the source's first frame). An editor's timeline uses the
//! same numbers, so the rendered cut and the exported timelines agree to the frame.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::media::Rational;

/// Version of the plan document. A plan of another version is refused.
pub const PLAN_VERSION: u32 = 1;
/// Most segments a plan may hold.
pub const MAX_SEGMENTS: usize = 20_000;
/// Largest output frame side.
pub const MAX_SIDE: u32 = 8192;
/// Output frame rates a montage may use.
pub const FPS_LIMITS: std::ops::RangeInclusive<f64> = 1.0..=240.0;

/// A frame size a montage may have: even sides from 16 to [`MAX_SIDE`].
pub fn size_ok(width: u32, height: u32) -> bool {
    let side = |v: u32| (16..=MAX_SIDE).contains(&v) && v.is_multiple_of(2);
    side(width) && side(height)
}

/// A montage plan: the whole cut, reproducible from it alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MontagePlan {
    pub version: u32,
    /// Output frame size (even) and rate.
    pub width: u32,
    pub height: u32,
    pub fps: Rational,
    /// Length of the output in frames (the sum of the segments' frames).
    pub frames: u64,
    /// The seed the plan was made with, and its pace (`fast`, `medium`, `slow`, `auto`).
    pub seed: u64,
    pub pace: String,
    pub music: PlanMusic,
    pub sources: Vec<PlanSource>,
    /// The segments in timeline order; each starts where the one before ends.
    pub segments: Vec<PlanSegment>,
    /// Things the user should know (footage that was short, clips that were skipped).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The song under the cut.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanMusic {
    pub path: PathBuf,
    /// Content id (hex) of the song file.
    pub id: String,
    /// Where in the song the montage starts, in seconds.
    pub start_s: f64,
    /// The whole song's length, in seconds.
    pub duration_s: f64,
    /// Its tempo, for the summary.
    pub tempo_bpm: f32,
}

/// One source clip the plan uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanSource {
    pub path: PathBuf,
    /// Content id (hex) of the file.
    pub id: String,
    /// Coded frame size, and the clockwise rotation a player applies (0, 90, 180, 270).
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub rotation: u32,
    /// Its (average) frame rate, frame count and length in seconds.
    pub fps: Rational,
    pub frames: u64,
    pub duration_s: f64,
    pub has_audio: bool,
    /// Scene cuts: indices of the frames (at the source's own rate) that start a new scene.
    #[serde(default)]
    pub cuts: Vec<u64>,
}

/// One shot of the montage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanSegment {
    /// First output frame and number of frames.
    pub out_start: u64,
    pub frames: u64,
    /// Index into `sources`.
    pub source: usize,
    /// First frame in the source, in frames at the output rate from the source's first frame.
    pub src_start: u64,
    /// Which scene of the source (0 = before its first cut) the shot comes from.
    #[serde(default)]
    pub scene: u32,
    /// Does the cut into this shot fall on a downbeat?
    #[serde(default)]
    pub on_downbeat: bool,
    /// The song's section the shot plays in.
    #[serde(default)]
    pub section: u32,
    /// How good the material was judged (0–1; higher is better).
    #[serde(default)]
    pub score: f32,
}

impl MontagePlan {
    /// Output frame rate as a number.
    pub fn fps_f64(&self) -> f64 {
        self.fps.as_f64()
    }

    /// Length in seconds.
    pub fn duration_s(&self) -> f64 {
        self.frames as f64 / self.fps_f64().max(f64::MIN_POSITIVE)
    }

    /// Start of a segment in its source, in seconds from the source's first frame.
    pub fn src_start_s(&self, seg: &PlanSegment) -> f64 {
        seg.src_start as f64 / self.fps_f64().max(f64::MIN_POSITIVE)
    }

    /// The plan, checked: version, sizes and rates in range, segments back to back from
    /// frame 0, each inside its source. An error is one line.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != PLAN_VERSION {
            return Err(format!(
                "plan version {} is not {PLAN_VERSION}, the one this build reads",
                self.version
            ));
        }
        if !size_ok(self.width, self.height) {
            return Err(format!(
                "output size {}x{} (sides must be even, 16 to {MAX_SIDE})",
                self.width, self.height
            ));
        }
        let fps = self.fps_f64();
        if self.fps.den <= 0 || self.fps.num <= 0 || !FPS_LIMITS.contains(&fps) {
            return Err(format!(
                "output frame rate {}/{} is outside {}–{} fps",
                self.fps.num,
                self.fps.den,
                FPS_LIMITS.start(),
                FPS_LIMITS.end()
            ));
        }
        if self.segments.is_empty() || self.segments.len() > MAX_SEGMENTS {
            return Err(format!(
                "{} segments (1 to {MAX_SEGMENTS})",
                self.segments.len()
            ));
        }
        if !self.music.start_s.is_finite() || self.music.start_s < 0.0 {
            return Err(format!("music start {} s", self.music.start_s));
        }
        let mut at = 0u64;
        for (i, s) in self.segments.iter().enumerate() {
            if s.out_start != at {
                return Err(format!(
                    "segment {i} starts at frame {}, the one before ends at {at}",
                    s.out_start
                ));
            }
            if s.frames == 0 {
                return Err(format!("segment {i} has no frames"));
            }
            let src = self.sources.get(s.source).ok_or_else(|| {
                format!(
                    "segment {i} names source {} of {}",
                    s.source,
                    self.sources.len()
                )
            })?;
            let end_s = (s.src_start + s.frames) as f64 / fps;
            if end_s > src.duration_s + 0.5 / fps {
                return Err(format!(
                    "segment {i} ends at {end_s:.3} s of {}, which is {:.3} s long",
                    src.path.display(),
                    src.duration_s
                ));
            }
            at = at.saturating_add(s.frames);
        }
        if at != self.frames {
            return Err(format!(
                "the segments hold {at} frames, the plan says {}",
                self.frames
            ));
        }
        Ok(())
    }
}

/// How a source's frames are made to fit the output frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fit {
    /// Scale to cover the frame and crop the overflow (same orientation as the output).
    Fill,
    /// Scale to fit inside the frame and pad with black (e.g. a portrait clip in a
    /// landscape montage).
    Fit,
}

/// What one render shard makes: `frames` output frames at `fps`, frame `k` showing the
/// source frame on screen at `start_s + k / fps` (seconds on the source's timestamps),
/// conformed to `width`×`height`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenderSpec {
    pub width: u32,
    pub height: u32,
    pub fps: Rational,
    pub frames: u32,
    pub start_s: f64,
    /// Clockwise rotation a player would apply to the source (0, 90, 180, 270).
    pub rotation: u32,
    pub fit: Fit,
}

impl RenderSpec {
    pub fn validate(&self) -> Result<(), String> {
        let fps = self.fps.as_f64();
        if !size_ok(self.width, self.height) {
            return Err(format!("render size {}x{}", self.width, self.height));
        }
        if self.fps.den <= 0 || self.fps.num <= 0 || !FPS_LIMITS.contains(&fps) {
            return Err(format!("render rate {}/{}", self.fps.num, self.fps.den));
        }
        if self.frames == 0 || self.frames > 1_000_000 {
            return Err(format!("{} frames to render", self.frames));
        }
        if !self.start_s.is_finite() || self.start_s.abs() > 1e7 {
            return Err(format!("render start {} s", self.start_s));
        }
        if !matches!(self.rotation, 0 | 90 | 180 | 270) {
            return Err(format!("rotation {}", self.rotation));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn plan() -> MontagePlan {
        MontagePlan {
            version: PLAN_VERSION,
            width: 640,
            height: 360,
            fps: Rational::new(30, 1),
            frames: 60,
            seed: 1,
            pace: "auto".into(),
            music: PlanMusic {
                path: "/m/song.flac".into(),
                id: "00".into(),
                start_s: 0.0,
                duration_s: 10.0,
                tempo_bpm: 120.0,
            },
            sources: vec![PlanSource {
                path: "/m/a.mp4".into(),
                id: "11".into(),
                width: 640,
                height: 360,
                rotation: 0,
                fps: Rational::new(25, 1),
                frames: 100,
                duration_s: 4.0,
                has_audio: true,
                cuts: vec![50],
            }],
            segments: vec![
                PlanSegment {
                    out_start: 0,
                    frames: 30,
                    source: 0,
                    src_start: 0,
                    scene: 0,
                    on_downbeat: true,
                    section: 0,
                    score: 0.5,
                },
                PlanSegment {
                    out_start: 30,
                    frames: 30,
                    source: 0,
                    src_start: 70,
                    scene: 1,
                    on_downbeat: false,
                    section: 0,
                    score: 0.5,
                },
            ],
            notes: Vec::new(),
        }
    }

    #[test]
    fn a_good_plan_passes_and_each_flaw_is_named() {
        assert_eq!(plan().validate(), Ok(()));
        let mut p = plan();
        p.version = 9;
        assert!(p.validate().unwrap_err().contains("version 9"));
        let mut p = plan();
        p.segments[1].out_start = 31;
        assert!(p.validate().unwrap_err().contains("starts at frame 31"));
        let mut p = plan();
        p.segments[1].src_start = 100;
        assert!(p.validate().unwrap_err().contains("ends at"));
        let mut p = plan();
        p.segments[1].source = 3;
        assert!(p.validate().unwrap_err().contains("source 3"));
        let mut p = plan();
        p.frames = 61;
        assert!(p.validate().unwrap_err().contains("hold 60 frames"));
        let mut p = plan();
        p.width = 641;
        assert!(p.validate().unwrap_err().contains("641x360"));
        let mut p = plan();
        p.fps = Rational::new(0, 1);
        assert!(p.validate().is_err());
    }

    #[test]
    fn render_specs_are_bounded() {
        let good = RenderSpec {
            width: 640,
            height: 360,
            fps: Rational::new(30, 1),
            frames: 30,
            start_s: 1.0,
            rotation: 90,
            fit: Fit::Fit,
        };
        assert_eq!(good.validate(), Ok(()));
        for bad in [
            RenderSpec {
                rotation: 45,
                ..good.clone()
            },
            RenderSpec {
                frames: 0,
                ..good.clone()
            },
            RenderSpec {
                start_s: f64::NAN,
                ..good.clone()
            },
            RenderSpec {
                width: 9000,
                ..good.clone()
            },
            RenderSpec {
                fps: Rational::new(1, 0),
                ..good.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
