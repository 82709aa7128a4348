//! Shards, results and progress.
//!
//! The coordinator plans a job into [`ShardSpec`]s (an envelope the mesh reads — inputs, task
//! class, cost — around a [`ShardTask`] only the node reads); a worker runs a shard and answers
//! with a [`ShardResult`] or a [`ShardError`]; [`JobStatus`] is what `status` and progress bars
//! read; [`JobResult`] is what a finished job produced.

use serde::{Deserialize, Serialize};

use crate::beats::{BeatGrid, BeatParams};
use crate::id::{ContentId, JobId};
use crate::media::{EncodeOptions, FrameRange, SceneList, ScoreParams};
use crate::montage::{MontagePlan, RenderSpec};

/// Largest number of input blobs one shard may name.
pub const MAX_SHARD_INPUTS: usize = 256;
/// Largest number of output blobs one shard may return.
pub const MAX_SHARD_OUTPUTS: usize = 256;
/// Longest task class name.
pub const MAX_CLASS_LEN: usize = 64;
/// Largest number of work units (frames) of one shard: a day of 240 fps video.
pub const MAX_SHARD_UNITS: u64 = 240 * 86_400;
/// Largest work of one shard, in its class's units: a day of 8K video at 240 fps.
pub const MAX_SHARD_WORK: f64 = 240.0 * 86_400.0 * 16.0;

/// What a shard costs, in terms any bidder understands without knowing what it computes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardCost {
    /// Units of progress (frames, for video): what `frames_done` counts.
    pub units: u64,
    /// Work in the unit the task class's speed is measured in (see
    /// [`Capabilities::speeds`](crate::Capabilities::speeds)): compute seconds on a node are
    /// `work / speed`.
    pub work: f64,
    /// Memory a node needs to run it; a node whose limit or free memory is below declines.
    pub ram: u64,
    /// Bytes of input a node that holds none of it must fetch.
    pub input_bytes: u64,
}

/// One unit of work of a job: what the mesh schedules, moves and verifies.
///
/// The mesh reads only the envelope: the `inputs` it must move to the runner, the `class`
/// whose measured speed prices it, whether that class is `required`, and the `cost`. The
/// `task` says what to compute; only the node (its job kinds) looks inside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardSpec {
    pub job: JobId,
    /// Unique within the job, across all its stages.
    pub index: u32,
    pub task: ShardTask,
    /// Task class, e.g. `encode/libx264@1080p`, `scenes@720p`, `checksum`: the key of the
    /// speed a node measured for this kind of work. The part before `@` is the class family.
    pub class: String,
    /// Only nodes with a measured speed for `class` may run it (e.g. a named hardware
    /// encoder); otherwise an uncalibrated node bids with a default speed.
    pub required: bool,
    /// Blobs the runner needs, fetched by content id from the coordinator and verified.
    pub inputs: Vec<ContentId>,
    pub cost: ShardCost,
}

impl ShardSpec {
    /// The family of the class: `encode/libx264@1080p` → `encode/libx264`.
    pub fn class_family(&self) -> &str {
        self.class.split('@').next().unwrap_or(&self.class)
    }

    /// Check every number and length a peer could have made absurd. A spec that fails is
    /// refused (declined, not run); nothing is sized by it before this passes.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.cost;
        if self.class.is_empty() || self.class.len() > MAX_CLASS_LEN {
            return Err(format!(
                "shard {}: task class of {} bytes",
                self.index,
                self.class.len()
            ));
        }
        if self.inputs.len() > MAX_SHARD_INPUTS {
            return Err(format!(
                "shard {}: {} inputs (at most {MAX_SHARD_INPUTS})",
                self.index,
                self.inputs.len()
            ));
        }
        if c.units > MAX_SHARD_UNITS {
            return Err(format!(
                "shard {}: {} work units (at most {MAX_SHARD_UNITS})",
                self.index, c.units
            ));
        }
        if !c.work.is_finite() || c.work < 0.0 || c.work > MAX_SHARD_WORK {
            return Err(format!(
                "shard {}: work {} out of range",
                self.index, c.work
            ));
        }
        self.task
            .validate()
            .map_err(|e| format!("shard {}: {e}", self.index))
    }
}

/// The memory a video shard needs at `width`×`height`: decoder and encoder frame queues
/// (about 64 frames of 8-bit 4:2:0, lookahead included) plus 64 MiB for the codec and the
/// process. Saturates instead of overflowing.
pub fn video_ram_estimate(width: u32, height: u32) -> u64 {
    let frame = (width as u64)
        .saturating_mul(height as u64)
        .saturating_mul(3)
        / 2;
    frame.saturating_mul(64).saturating_add(64 << 20)
}

/// The work of one shard. Only these built-in tasks exist; nothing runs commands from the wire.
/// The mesh never looks inside: each variant belongs to one job kind of the node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ShardTask {
    /// Decode `range` from the chunk blob (the shard's only input) and encode it.
    Encode {
        range: FrameRange,
        options: EncodeOptions,
    },
    /// Decode `range` from the chunk blob (the shard's only input) and score every frame for
    /// scene changes; with `looks`, also measure how sampled frames look.
    SceneScores {
        range: FrameRange,
        params: ScoreParams,
        looks: bool,
    },
    /// Run the shot-boundary network on `blocks` blocks of [`crate::NEURAL_BLOCK`] frames
    /// from block `first_block` of a stream of `total_frames` frames: decode the chunk blobs
    /// (inputs `0..chunks.len()`, one per range, in time order, together holding every frame
    /// the blocks' windows need) and load the network's weights from the last input.
    SceneNeural {
        chunks: Vec<FrameRange>,
        first_block: u64,
        blocks: u32,
        total_frames: u64,
    },
    /// The checksum job, stage 1: blake3 of the input blob, then `rounds` more rounds of
    /// blake3 over the digest (a stand-in for heavy work of a known result).
    Checksum { rounds: u64 },
    /// The checksum job, stage 2: blake3 over the digests of stage 1, in order.
    CombineDigests { parts: Vec<ContentId> },
    /// Decode the audio of the input blob (a file, or a video's audio track) and track its
    /// beats. `trim_s` seconds of decoded sound come before the file's time 0 (an encoder's
    /// priming that the file's container marked and the extracted track cannot) and are
    /// dropped.
    Beats { params: BeatParams, trim_s: f32 },
    /// Render one shot of a montage: decode the chunk blobs (the shard's inputs, one per
    /// range of `chunks`, in time order), conform the frames `spec` asks for and encode them.
    MontageRender {
        chunks: Vec<FrameRange>,
        spec: RenderSpec,
        options: EncodeOptions,
    },
}

impl ShardTask {
    /// The job kind whose runner runs this task.
    pub fn kind(&self) -> &'static str {
        match self {
            ShardTask::Encode { .. } => "transcode",
            ShardTask::SceneScores { .. } | ShardTask::SceneNeural { .. } => "scenes",
            ShardTask::Checksum { .. } | ShardTask::CombineDigests { .. } => "checksum",
            ShardTask::Beats { .. } => "beats",
            ShardTask::MontageRender { .. } => "montage",
        }
    }

    fn validate(&self) -> Result<(), String> {
        let range = |r: &FrameRange| {
            if r.frames > MAX_SHARD_UNITS {
                return Err(format!("{} frames in a range", r.frames));
            }
            if r.time_base.den <= 0 || r.time_base.num <= 0 || r.fps.den <= 0 || r.fps.num <= 0 {
                return Err("a time base or frame rate that is not positive".to_string());
            }
            Ok(())
        };
        match self {
            ShardTask::Encode { range: r, options } => {
                range(r)?;
                if let Some(h) = options.height {
                    if !crate::media::SCALE_HEIGHTS.contains(&h) {
                        return Err(format!("a scale height of {h}"));
                    }
                }
                if options.preset.as_ref().is_some_and(|p| p.len() > 64)
                    || options.encoder.as_ref().is_some_and(|e| e.len() > 64)
                {
                    return Err("an encoder or preset name over 64 bytes".into());
                }
                Ok(())
            }
            ShardTask::SceneScores {
                range: r, params, ..
            } => {
                range(r)?;
                if params.analysis_width > 7680 {
                    return Err(format!("analysis width {}", params.analysis_width));
                }
                Ok(())
            }
            ShardTask::SceneNeural {
                chunks,
                first_block,
                blocks,
                total_frames,
            } => {
                if chunks.is_empty() || chunks.len() >= MAX_SHARD_INPUTS {
                    return Err(format!("{} chunks to run the network on", chunks.len()));
                }
                for r in chunks {
                    range(r)?;
                }
                let frames = u64::from(*blocks) * crate::NEURAL_BLOCK;
                let start = first_block.checked_mul(crate::NEURAL_BLOCK);
                if *blocks == 0
                    || frames > MAX_SHARD_UNITS
                    || start.is_none_or(|s| s >= *total_frames)
                {
                    return Err(format!(
                        "{blocks} blocks from block {first_block} of {total_frames} frames"
                    ));
                }
                Ok(())
            }
            ShardTask::Checksum { rounds } if *rounds > 1 << 40 => Err(format!("{rounds} rounds")),
            ShardTask::Checksum { .. } => Ok(()),
            ShardTask::CombineDigests { parts } if parts.len() > 1 << 16 => {
                Err(format!("{} digests to combine", parts.len()))
            }
            ShardTask::CombineDigests { .. } => Ok(()),
            ShardTask::Beats { trim_s, .. } if !(0.0..=10.0).contains(trim_s) => {
                Err(format!("{trim_s} s to trim"))
            }
            ShardTask::Beats { params, .. } => params.validate(),
            ShardTask::MontageRender {
                chunks,
                spec,
                options,
            } => {
                if chunks.is_empty() || chunks.len() > MAX_SHARD_INPUTS {
                    return Err(format!("{} chunks to render from", chunks.len()));
                }
                for r in chunks {
                    range(r)?;
                }
                if options.preset.as_ref().is_some_and(|p| p.len() > 64)
                    || options.encoder.as_ref().is_some_and(|e| e.len() > 64)
                {
                    return Err("an encoder or preset name over 64 bytes".into());
                }
                spec.validate()
            }
        }
    }
}

/// A blob a shard produced, by content id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub id: ContentId,
    pub bytes: u64,
}

/// What a shard produced: output blobs (kept by the runner until the coordinator fetches
/// them, by hash, verified) and small inline data (in the codec; its job kind decodes it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardOutput {
    pub blobs: Vec<BlobRef>,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl ShardOutput {
    /// One blob, no data (an encoded segment).
    pub fn blob(id: ContentId, bytes: u64) -> Self {
        Self {
            blobs: vec![BlobRef { id, bytes }],
            data: Vec::new(),
        }
    }

    /// Inline data only: `value` in the codec.
    pub fn inline<T: Serialize>(value: &T) -> Result<Self, crate::CodecError> {
        Ok(Self {
            blobs: Vec::new(),
            data: crate::codec::encode(value)?,
        })
    }

    /// The inline data as a `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::CodecError> {
        crate::codec::decode(&self.data)
    }

    /// Check what a peer returned before anything is sized by it.
    pub fn validate(&self) -> Result<(), String> {
        if self.blobs.len() > MAX_SHARD_OUTPUTS {
            return Err(format!(
                "{} output blobs (at most {MAX_SHARD_OUTPUTS})",
                self.blobs.len()
            ));
        }
        Ok(())
    }
}

/// Counters a shard reports; tests use them to prove what did (not) happen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkStats {
    pub decoded_frames: u64,
    pub encoded_frames: u64,
    pub hashed_bytes: u64,
    pub cache_hits: u64,
    pub wall_ms: u64,
}

impl WorkStats {
    pub fn add(&mut self, o: &WorkStats) {
        self.decoded_frames += o.decoded_frames;
        self.encoded_frames += o.encoded_frames;
        self.hashed_bytes += o.hashed_bytes;
        self.cache_hits += o.cache_hits;
        self.wall_ms += o.wall_ms;
    }
}

/// A worker's answer for one shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardResult {
    pub job: JobId,
    pub index: u32,
    pub peer: String,
    pub output: ShardOutput,
    pub stats: WorkStats,
}

/// Lifecycle of a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardState {
    Pending,
    Running,
    Done,
    Cached,
    Failed,
}

/// One row of a job's shard table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardRow {
    pub index: u32,
    pub state: ShardState,
    /// Where the shard runs; once done, the node whose result was used.
    pub peer: Option<String>,
    pub frames: u64,
    /// Frames done so far (a peer's progress arrives with its heartbeats, every 2 s).
    pub frames_done: u64,
    pub millis: u64,
    /// Times the shard was put up for auction again (a lost peer, a lost lease, a bad result).
    pub retries: u32,
    /// Speculative copies started (at most one): a second run of a slow shard on an idle node.
    #[serde(default)]
    pub copies: u32,
    /// What happened beyond the state, e.g. `"copy on c won; b cancelled"`.
    #[serde(default)]
    pub note: Option<String>,
    /// The stage of the job the shard belongs to (0 = the first).
    #[serde(default)]
    pub stage: u32,
    /// When the run whose result was used started and ended, in milliseconds since the
    /// coordinator began the job (its plan included); `None` until the shard is done here.
    #[serde(default)]
    pub start_ms: Option<u64>,
    #[serde(default)]
    pub end_ms: Option<u64>,
}

/// Lifecycle of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    Planning,
    Running,
    Finishing,
    Done,
    Failed,
    /// Stopped by a user (`rendermesh cancel`, the dashboard): every run of it was cancelled.
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Progress of a job, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: JobId,
    pub kind: String,
    /// What the user named, for display.
    pub inputs: Vec<String>,
    pub state: JobState,
    pub frames_total: u64,
    pub frames_done: u64,
    pub shards: Vec<ShardRow>,
    /// Set when the job failed: one line naming the file and the cause.
    pub error: Option<String>,
    pub stats: WorkStats,
    /// Whole-job answer came from the cache.
    pub from_cache: bool,
    /// Things the user should know that did not fail the job (e.g. an encoder fallback).
    pub notes: Vec<String>,
    pub started_unix_ms: u64,
    pub elapsed_ms: u64,
    /// The stage running now (0 = the first), and its name (e.g. "analysis", "combine");
    /// a job of one stage stays at 0 with the kind's own name.
    #[serde(default)]
    pub stage: u32,
    #[serde(default)]
    pub stage_name: String,
    /// The files of a job of many files, each with its state (empty for other jobs).
    #[serde(default)]
    pub items: Vec<crate::batch::JobItem>,
    /// What the job produced, one short line each, once it is done ([`JobResult::outputs`]).
    #[serde(default)]
    pub outputs: Vec<String>,
}

/// What a finished job produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobResult {
    /// The transcoded file, as a blob in the coordinating node's store.
    Transcode {
        output: ContentId,
        bytes: u64,
        frames: u64,
    },
    /// One scene list per input, in submit order.
    Scenes { lists: Vec<SceneList> },
    /// The checksum job: the digest of every input (submit order) and their combination.
    Checksum {
        parts: Vec<ContentId>,
        combined: ContentId,
    },
    /// One beat grid per input, in submit order.
    Beats { grids: Vec<BeatGrid> },
    /// The montage, as a blob in the coordinating node's store, and the plan it rendered.
    Montage {
        output: ContentId,
        bytes: u64,
        frames: u64,
        plan: Box<MontagePlan>,
    },
    /// A job of many files: each file as it ended (outputs are blobs in the coordinating
    /// node's store; two files of the same content share one).
    Batch { items: Vec<crate::batch::JobItem> },
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

impl JobResult {
    /// What the job produced, one short line each (the dashboard's "outputs").
    pub fn outputs(&self) -> Vec<String> {
        match self {
            JobResult::Transcode {
                output,
                bytes,
                frames,
            }
            | JobResult::Montage {
                output,
                bytes,
                frames,
                ..
            } => vec![format!(
                "{frames} frames, {} (blob {})",
                megabytes(*bytes),
                &output.to_string()[..12]
            )],
            JobResult::Scenes { lists } => lists
                .iter()
                .map(|l| format!("{} scenes in {} frames", l.cuts.len() + 1, l.frames))
                .collect(),
            JobResult::Checksum { combined, .. } => vec![format!("checksum {combined}")],
            JobResult::Beats { grids } => grids
                .iter()
                .map(|g| format!("{} beats at {:.1} bpm", g.beats.len(), g.tempo_bpm))
                .collect(),
            JobResult::Batch { items } => items
                .iter()
                .map(|i| match i.output {
                    Some(_) => format!("{}: {}, {} frames", i.name, megabytes(i.bytes), i.frames),
                    None => format!("{}: {:?}", i.name, i.state),
                })
                .collect(),
        }
    }
}

/// Why a shard did not produce a result. Travels over the wire as such: nobody matches on
/// the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureKind {
    /// Nobody wants the run any more (another copy won, the lease was revoked, the job
    /// ended), or its runner stopped it.
    Cancelled,
    /// Something passing went wrong (a lost peer, a transfer, the disk): worth another try.
    Retryable,
    /// The input itself is bad (broken media): no other node will do better.
    Input,
    /// The engine failed on this node (an encoder that would not open): another may succeed.
    Engine,
    /// The node would not run it (draining, too little memory, a spec it does not accept).
    Refused,
}

/// A shard failed: what kind of failure, and one line saying what happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ShardError {
    pub kind: FailureKind,
    pub message: String,
}

impl ShardError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Retryable, message)
    }

    pub fn input(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Input, message)
    }

    pub fn engine(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Engine, message)
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Refused, message)
    }

    /// The run was stopped because nobody wants its result any more. Not retryable:
    /// whoever cancelled it knows.
    pub fn cancelled() -> Self {
        Self::new(FailureKind::Cancelled, "shard cancelled")
    }

    pub fn is_cancelled(&self) -> bool {
        self.kind == FailureKind::Cancelled
    }

    /// Worth running again (elsewhere).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::Retryable | FailureKind::Engine | FailureKind::Refused
        )
    }

    /// The same failure, its message prefixed (e.g. with the peer it happened on).
    pub fn context(self, prefix: impl std::fmt::Display) -> Self {
        Self {
            kind: self.kind,
            message: format!("{prefix}: {}", self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{FrameRange, Rational, ScoreParams};

    fn spec() -> ShardSpec {
        ShardSpec {
            job: JobId(1),
            index: 2,
            task: ShardTask::Checksum { rounds: 10 },
            class: "checksum".into(),
            required: false,
            inputs: vec![ContentId::of(b"x")],
            cost: ShardCost {
                units: 10,
                work: 1.0,
                ram: 1 << 20,
                input_bytes: 1,
            },
        }
    }

    #[test]
    fn a_spec_with_absurd_numbers_is_refused() {
        assert_eq!(spec().validate(), Ok(()));
        let mut bad = Vec::new();
        let mut s = spec();
        s.cost.units = 65535 * 65535;
        bad.push(s);
        let mut s = spec();
        s.cost.work = f64::NAN;
        bad.push(s);
        let mut s = spec();
        s.cost.work = 1e300;
        bad.push(s);
        let mut s = spec();
        s.class = "c".repeat(1000);
        bad.push(s);
        let mut s = spec();
        s.inputs = vec![ContentId::of(b"x"); 100_000];
        bad.push(s);
        let mut s = spec();
        s.task = ShardTask::Checksum { rounds: u64::MAX };
        bad.push(s);
        let mut s = spec();
        s.task = ShardTask::SceneScores {
            range: FrameRange {
                start_pts: 0,
                end_pts: None,
                time_base: Rational::new(1, 30),
                first_frame: 0,
                frames: 65535 * 65535,
                fps: Rational::new(30, 1),
                ts_offset: 0,
            },
            params: ScoreParams::default(),
            looks: false,
        };
        bad.push(s);
        for s in bad {
            assert!(s.validate().is_err(), "{s:?}");
        }
        // the memory of a frame size a peer made up saturates instead of overflowing
        assert_eq!(video_ram_estimate(u32::MAX, u32::MAX), u64::MAX);
        assert_eq!(video_ram_estimate(0, 0), 64 << 20);
    }
}
