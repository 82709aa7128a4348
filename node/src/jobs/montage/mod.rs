//! The montage kind: clips and a song in, a beat-synced cut out, rendered across the mesh.
//!
//! Stage 1, analysis: the scenes of every clip with how their frames look (the scenes
//! kind's shards, asked for frame looks too) and the song's beats, downbeats, loudness and
//! sections (the beats kind's shard), all cached by content. Stage 2, the plan, on the
//! coordinator: a cut grid on the beats and a source range for every shot. Stage 3, render:
//! one shard per shot, each fetching only the source chunks it needs; then the join, with
//! the song muxed once.
//!
//! - [`grid`]: the cut grid (shot lengths from the music's energy, downbeats, sections).
//! - [`select`]: scene scores from frame looks, and a source range for every slot.
//! - [`plan`]: the two together into a [`MontagePlan`], or a shorter one with a note.
//! - [`driver`]: the stages.
//! - [`render`]: the render stage and the join.
//! - [`timeline`]: the plan as timelines an editor opens (OpenTimelineIO, CMX 3600 EDL,
//!   FCPXML).
//! - Here: the parameters, the render shard's runner and the speeds of its classes.

pub mod driver;
pub mod grid;
pub mod plan;
pub mod render;
pub mod select;
pub mod timeline;

use std::path::PathBuf;

use rendermesh_mesh::exec::ShardCtl;
use rendermesh_mesh::ShardError;
use rendermesh_protocol::{
    Capabilities, EncodeOptions, MontagePlan, Rational, ShardOutput, ShardSpec, ShardTask,
    WorkStats,
};
use serde::{Deserialize, Serialize};

use self::driver::MontageDriver;
use super::kind::{params, JobContext, JobKind, RunEnv, Speeds, Started};
use crate::engine::conform::render_shot;

/// What `rendermesh submit montage` sends.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    /// Video files (directories already expanded), absolute.
    pub clips: Vec<PathBuf>,
    /// The song.
    pub music: PathBuf,
    /// Muxer of the output.
    pub container: String,
    /// Length in seconds; `None`: the song from `start_s` to its end, at most 60 s.
    pub length_s: Option<f64>,
    /// Output size and rate; `None`: those of the most common clip format.
    pub size: Option<(u32, u32)>,
    pub fps: Option<Rational>,
    pub pace: String,
    pub seed: u64,
    /// Where in the song the montage starts.
    pub start_s: f64,
    pub allow_reuse: bool,
    /// Render this plan instead of making one.
    pub from_plan: Option<MontagePlan>,
    pub options: EncodeOptions,
    pub chunk_seconds: Option<f64>,
}

pub struct Montage;

impl JobKind for Montage {
    fn name(&self) -> &'static str {
        "montage"
    }

    fn start(&self, ctx: &JobContext, value: serde_json::Value) -> Result<Started, String> {
        let p: Params = params(self.name(), value)?;
        if !crate::jobs::transcode::CONTAINERS.contains(&p.container.as_str()) {
            return Err(format!(
                "output container {:?} is not one rendermesh writes",
                p.container
            ));
        }
        if p.clips.is_empty() && p.from_plan.is_none() {
            return Err("a montage needs at least one clip".into());
        }
        p.pace.parse::<grid::Pace>()?;
        if !p.start_s.is_finite() || p.start_s < 0.0 {
            return Err(format!("--start {} s is not a time in the song", p.start_s));
        }
        if let Some(l) = p.length_s {
            if !l.is_finite() || !(1.0..=3600.0).contains(&l) {
                return Err(format!("--length {l} s is outside 1 to 3600 s"));
            }
        }
        if let Some((w, h)) = p.size {
            if !rendermesh_protocol::montage::size_ok(w, h) {
                return Err(format!("--size {w}x{h}: sides must be even, 16 to 8192"));
            }
        }
        if let Some(f) = p.fps {
            if f.den <= 0
                || f.num <= 0
                || !rendermesh_protocol::montage::FPS_LIMITS.contains(&f.as_f64())
            {
                return Err(format!("--fps {}/{} is outside 1 to 240", f.num, f.den));
            }
        }
        let chunk_seconds = ctx.chunk(p.chunk_seconds)?;
        let mut inputs: Vec<String> = p.clips.iter().map(|c| c.display().to_string()).collect();
        inputs.push(p.music.display().to_string());
        if let Some(plan) = &p.from_plan {
            inputs.extend(plan.sources.iter().map(|s| s.path.display().to_string()));
            inputs.push(plan.music.path.display().to_string());
        }
        let driver = MontageDriver::new(ctx.cache.clone(), p, ctx.name.clone(), chunk_seconds)
            .with_model(
                crate::models::find(&ctx.models, rendermesh_protocol::TRANSNET_V2),
                ctx.mesh.clone(),
            );
        Ok(Started {
            inputs,
            driver: Box::new(driver),
        })
    }

    fn run(
        &self,
        env: &RunEnv,
        shard: &ShardSpec,
        ctl: &ShardCtl<'_>,
    ) -> Result<(ShardOutput, WorkStats), ShardError> {
        let ShardTask::MontageRender {
            chunks,
            spec,
            options,
        } = &shard.task
        else {
            return Err(ShardError::refused("not a montage task"));
        };
        let mut inputs = Vec::with_capacity(chunks.len());
        for (i, range) in chunks.iter().enumerate() {
            inputs.push((env.input(shard, i)?, *range));
        }
        let (frames, id, bytes) = env.make_blob("shot.nut", |tmp| {
            render_shot(&inputs, spec, options, tmp, env.threads, ctl)
        })?;
        let stats = WorkStats {
            encoded_frames: frames,
            ..Default::default()
        };
        Ok((ShardOutput::blob(id, bytes), stats))
    }

    /// A render shard is an encode at the output size: it runs in the transcode kind's
    /// `encode/<encoder>` classes, whose speeds that kind fills in.
    fn speeds(&self, _caps: &Capabilities, _out: &mut Speeds) {}
}
