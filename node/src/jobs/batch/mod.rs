//! The batch kind: many files in one job (`submit transcode IN… -o DIR/`, `submit proxy`,
//! watched folders). Every file is probed and cut on the coordinator; a short file is one
//! shard, a long one is cut into chunks as a transcode is; all shards of all files go up in
//! one auction, so the mesh stays busy to the end. A file's segments are joined (with its
//! audio) as soon as its last shard is in, while the other files still run. A file that
//! fails (unreadable, not media, broken) fails alone: the others go on.
//!
//! - [`driver`]: plans the files (identity, duplicates, cache, chunks) and follows them.
//! - `items`: the items (one per input), shared by the driver and the joiner.
//! - `join`: the thread that joins a finished file's segments, one file at a time.
//! - [`work`]: what is done to each file (a transcode, a proxy) and the outputs' names.
//! - Here: the parameters. The shards are transcode tasks (`ShardTask::Encode`), run by
//!   the transcode kind.

pub mod driver;
mod items;
mod join;
pub mod work;

use std::path::PathBuf;

use rendermesh_mesh::exec::ShardCtl;
use rendermesh_mesh::ShardError;
use rendermesh_protocol::{Capabilities, EncodeOptions, ShardOutput, ShardSpec, WorkStats};
use serde::{Deserialize, Serialize};

use self::driver::BatchDriver;
use super::kind::{params, JobContext, JobKind, RunEnv, Speeds, Started};
use super::transcode::{peer_encoders, CONTAINERS};

/// Most files one batch may name.
pub const MAX_FILES: usize = 10_000;

/// What is done to every file of a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Work {
    pub options: EncodeOptions,
    /// Muxer of the outputs.
    pub container: String,
    /// Audio as PCM (proxies in QuickTime for an editor), else copied (or AAC/Opus when the
    /// container cannot hold the source's codec).
    pub pcm_audio: bool,
    /// Keep the outputs in the blob store once delivered (proxies): asking again, on any
    /// box of the mesh, costs no encode.
    pub keep: bool,
}

/// What `rendermesh submit transcode IN… -o DIR/`, `submit proxy` and a watched folder send.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    /// Absolute paths, in the order the items are reported.
    pub inputs: Vec<PathBuf>,
    pub work: Work,
    pub chunk_seconds: Option<f64>,
}

pub struct Batch;

impl JobKind for Batch {
    fn name(&self) -> &'static str {
        "batch"
    }

    fn start(&self, ctx: &JobContext, value: serde_json::Value) -> Result<Started, String> {
        let p: Params = params(self.name(), value)?;
        if !CONTAINERS.contains(&p.work.container.as_str()) {
            return Err(format!(
                "output container {:?} is not one rendermesh writes (use {})",
                p.work.container,
                CONTAINERS.join(", ")
            ));
        }
        if p.inputs.is_empty() || p.inputs.len() > MAX_FILES {
            return Err(format!(
                "a batch names 1 to {MAX_FILES} files, not {}",
                p.inputs.len()
            ));
        }
        if let Some(h) = p.work.options.height {
            if !rendermesh_protocol::SCALE_HEIGHTS.contains(&h) {
                return Err(format!(
                    "height {h} is out of range ({} to {})",
                    rendermesh_protocol::SCALE_HEIGHTS.start(),
                    rendermesh_protocol::SCALE_HEIGHTS.end()
                ));
            }
        }
        let driver = BatchDriver::new(
            ctx.cache.clone(),
            p.inputs.clone(),
            p.work,
            ctx.chunk(p.chunk_seconds)?,
        )
        .with_peer_encoders(peer_encoders(ctx))
        .with_mesh(ctx.mesh.clone());
        Ok(Started {
            inputs: p.inputs.iter().map(|i| i.display().to_string()).collect(),
            driver: Box::new(driver),
        })
    }

    /// A batch's shards are transcode tasks: the transcode kind runs them.
    fn run(
        &self,
        _env: &RunEnv,
        _shard: &ShardSpec,
        _ctl: &ShardCtl<'_>,
    ) -> Result<(ShardOutput, WorkStats), ShardError> {
        Err(ShardError::refused("a batch has no tasks of its own"))
    }

    fn speeds(&self, _caps: &Capabilities, _out: &mut Speeds) {}
}
