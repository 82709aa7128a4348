//! The beats kind: tempo, beats, bars, per-beat loudness and onsets, and sections of songs,
//! one shard per file, cached by content.
//!
//! - [`features`]: streamed spectra → onset envelopes, energy, chroma and timbre.
//! - [`tempo`]: the tempo path and its metrical level.
//! - [`track`]: beat placement by dynamic programming.
//! - [`bars`]: meter, bar starts, per-beat values, sections.
//! - [`analyze`]: features → [`BeatGrid`].
//! - [`driver`]: cache, audio extraction, shards, results.
//! - [`export`]: grids as JSON and CSV.
//! - Here: the parameters, the shard runner and the speed of the `beats` class.

pub mod analyze;
pub mod bars;
pub mod driver;
pub mod export;
pub mod features;
pub mod tempo;
pub mod track;

use std::path::{Path, PathBuf};
use std::time::Instant;

use rendermesh_mesh::exec::ShardCtl;
use rendermesh_mesh::ShardError;
use rendermesh_protocol::{
    BeatGrid, BeatParams, Capabilities, ContentId, ShardOutput, ShardSpec, ShardTask, WorkStats,
};
use serde::{Deserialize, Serialize};

use self::driver::BeatsDriver;
use self::features::{FrontEnd, RATE};
use super::kind::{params, JobContext, JobKind, RunEnv, Speeds, Started};
use crate::engine::pcm::decode_mono;
use crate::engine::MediaError;

/// The class of beat shards; its speed is in seconds of audio per second.
pub const CLASS: &str = "beats";
/// Samples handed from the decoder to the front end at a time, and blocks in flight.
const BLOCK: usize = 1 << 14;
const QUEUE_BLOCKS: usize = 8;
/// Version of the tracker's results, part of every grid's cache key: bump it when a change
/// makes old grids wrong.
pub const TRACKER_VERSION: u32 = 1;

/// What `rendermesh submit beats` sends.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub inputs: Vec<PathBuf>,
    #[serde(default)]
    pub beats: BeatParams,
}

/// The beat grid of the audio in `path` (a file, or a blob of its audio track, whose first
/// `trim_s` seconds are dropped), decoded as a stream. `progress` gets the seconds decoded so far and returns false to stop.
pub fn analyse_file(
    path: &Path,
    input: ContentId,
    params: &BeatParams,
    trim_s: f64,
    mut progress: impl FnMut(u64) -> bool,
) -> Result<(BeatGrid, u64), MediaError> {
    // the front end runs beside the decoder, fed blocks through a short queue
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<f32>>(QUEUE_BLOCKS);
    let t0 = Instant::now();
    let (decoded, f) = std::thread::scope(|scope| {
        let front = scope.spawn(move || {
            let mut fe = FrontEnd::new();
            for block in rx {
                fe.push(&block);
            }
            fe.finish()
        });
        let mut block = Vec::with_capacity(BLOCK);
        let mut samples = 0u64;
        let mut seconds = 0u64;
        let decoded = decode_mono(path, RATE, trim_s, |s| {
            block.extend_from_slice(s);
            samples += s.len() as u64;
            if block.len() >= BLOCK {
                let full = std::mem::replace(&mut block, Vec::with_capacity(BLOCK));
                if tx.send(full).is_err() {
                    return false;
                }
            }
            let now = samples / u64::from(RATE);
            if now != seconds {
                seconds = now;
                return progress(now);
            }
            true
        });
        if !block.is_empty() {
            let _ = tx.send(block);
        }
        drop(tx);
        let f = front.join();
        (decoded, f)
    });
    let stats = decoded?;
    let f = f.map_err(|_| MediaError::other(path, "the beat tracker's front end failed"))?;
    let t = Instant::now();
    let grid = analyze::grid(input, &f, params);
    tracing::debug!(
        frames = f.frames(),
        decode_ms = (t - t0).as_millis() as u64,
        analysis_ms = t.elapsed().as_millis() as u64,
        "beat grid"
    );
    Ok((grid, stats.frames))
}

pub struct Beats;

impl JobKind for Beats {
    fn name(&self) -> &'static str {
        "beats"
    }

    fn start(&self, ctx: &JobContext, value: serde_json::Value) -> Result<Started, String> {
        let p: Params = params(self.name(), value)?;
        if p.inputs.is_empty() {
            return Err("a beats job needs at least one input".into());
        }
        p.beats.validate()?;
        let inputs = p.inputs.iter().map(|p| p.display().to_string()).collect();
        Ok(Started {
            inputs,
            driver: Box::new(BeatsDriver::new(ctx.cache.clone(), p.inputs, p.beats)),
        })
    }

    fn run(
        &self,
        env: &RunEnv,
        shard: &ShardSpec,
        ctl: &ShardCtl<'_>,
    ) -> Result<(ShardOutput, WorkStats), ShardError> {
        let ShardTask::Beats { params, trim_s } = &shard.task else {
            return Err(ShardError::refused("not a beats task"));
        };
        let started = Instant::now();
        let path = env.input(shard, 0)?;
        let id = shard.inputs[0];
        let (grid, frames) = analyse_file(&path, id, params, f64::from(*trim_s), |s| {
            ctl.progress(s);
            !ctl.is_cancelled()
        })?;
        let output = ShardOutput::inline(&grid)
            .map_err(|e| ShardError::engine(format!("beat grid too large to send: {e}")))?;
        let stats = WorkStats {
            decoded_frames: frames,
            wall_ms: started.elapsed().as_millis() as u64,
            ..Default::default()
        };
        Ok((output, stats))
    }

    /// The front end on 20 s of generated clicks gives the class's speed.
    fn speeds(&self, _caps: &Capabilities, out: &mut Speeds) {
        let t = Instant::now();
        let mut fe = FrontEnd::new();
        let second: Vec<f32> = (0..RATE as usize)
            .map(|i| if i % 12_000 < 24 { 0.5 } else { 0.0 })
            .collect();
        for _ in 0..20 {
            fe.push(&second);
        }
        let f = fe.finish();
        let _ = analyze::grid(ContentId::of(b"calibration"), &f, &BeatParams::default());
        let secs_per_s = 20.0 / t.elapsed().as_secs_f64().max(1e-6);
        out.speeds.insert(CLASS.to_string(), secs_per_s as f32);
    }
}
