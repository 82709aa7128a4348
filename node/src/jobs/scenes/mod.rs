//! The scenes kind: per-frame scene scores in time shards over the mesh, the detectors that
//! turn a whole file's scores into cuts, and the scene-list exports.
//!
//! - [`analyze`]: the scores of one shard (weighted HSV deltas of downscaled frames).
//! - [`detect`]: the content and adaptive detectors.
//! - [`cascade`]: the `auto` detector's choice of the blocks the network decides.
//! - [`neural`]: the shot-boundary network on blocks of frames (a shard's side);
//!   [`neural_stage`] plans its shards and puts their predictions together.
//! - [`driver`]: plans the score shards (cache, probe, cut) and stitches the results;
//!   [`edges`] scores the frame pairs across shard boundaries and caches shards compact.
//! - [`export`]: scene lists as CSV, JSON and EDL.
//! - [`looks`]: how sampled frames look (a montage's material analysis).
//! - Here: the parameters, the shard runner and the speeds of the `scenes@720p|1080p` classes.

pub mod analyze;
pub mod cascade;
pub mod detect;
pub mod driver;
pub mod edges;
pub mod export;
pub mod looks;
pub mod neural;
pub mod neural_stage;

use std::path::PathBuf;

use rendermesh_mesh::exec::ShardCtl;
use rendermesh_mesh::ShardError;
use rendermesh_protocol::{
    Capabilities, SceneOptions, ShardOutput, ShardSpec, ShardTask, WorkStats, TRANSNET_V2,
};
use serde::{Deserialize, Serialize};

use self::analyze::score_chunk;
use self::driver::ScenesDriver;
use super::kind::{params, JobContext, JobKind, RunEnv, Speeds, Started};
use super::video::video_speeds;

/// What `rendermesh submit scenes` sends.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub inputs: Vec<PathBuf>,
    pub options: SceneOptions,
    pub chunk_seconds: Option<f64>,
}

pub struct Scenes;

impl JobKind for Scenes {
    fn name(&self) -> &'static str {
        "scenes"
    }

    fn start(&self, ctx: &JobContext, value: serde_json::Value) -> Result<Started, String> {
        let p: Params = params(self.name(), value)?;
        if p.inputs.is_empty() {
            return Err("a scenes job needs at least one input".into());
        }
        let inputs = p.inputs.iter().map(|p| p.display().to_string()).collect();
        let driver = ScenesDriver::new(
            ctx.cache.clone(),
            p.inputs,
            p.options,
            ctx.chunk(p.chunk_seconds)?,
            ctx.name.clone(),
        )
        .with_model(
            crate::models::find(&ctx.models, TRANSNET_V2),
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
        if let ShardTask::SceneNeural {
            chunks,
            first_block,
            blocks,
            total_frames,
        } = &shard.task
        {
            let mut inputs = Vec::with_capacity(chunks.len());
            for (i, range) in chunks.iter().enumerate() {
                inputs.push((env.input(shard, i)?, *range));
            }
            let weights = env.input(shard, chunks.len())?;
            let model = *shard.inputs.get(chunks.len()).ok_or_else(|| {
                ShardError::refused(format!("shard {} names no weights", shard.index))
            })?;
            let scores = neural::run_shard(
                &inputs,
                &weights,
                &model,
                *first_block,
                *blocks,
                *total_frames,
                env.threads,
                ctl,
            )?;
            tracing::info!(
                first_block,
                blocks,
                frames = scores.single.len(),
                "the network ran on these blocks"
            );
            // the weights came from a peer: keep them, and the next job finds them here
            env.models.keep(TRANSNET_V2, &model, &env.blobs);
            let stats = WorkStats {
                decoded_frames: scores.single.len() as u64,
                ..Default::default()
            };
            let output = ShardOutput::inline(&scores)
                .map_err(|e| ShardError::engine(format!("predictions too large to send: {e}")))?;
            return Ok((output, stats));
        }
        let ShardTask::SceneScores {
            range,
            params,
            looks,
        } = &shard.task
        else {
            return Err(ShardError::refused("not a scenes task"));
        };
        let chunk = env.input(shard, 0)?;
        let scores = score_chunk(&chunk, range, params, *looks, env.threads, ctl)?;
        let stats = WorkStats {
            decoded_frames: scores.deltas.len() as u64,
            ..Default::default()
        };
        let output = ShardOutput::inline(&scores)
            .map_err(|e| ShardError::engine(format!("scene scores too large to send: {e}")))?;
        Ok((output, stats))
    }

    fn speeds(&self, caps: &Capabilities, out: &mut Speeds) {
        video_speeds(out, "scenes", caps.scene_fps_720p, caps.scene_fps_1080p);
    }
}
