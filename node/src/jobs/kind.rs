//! What a job kind implements ([`JobKind`]) and what it is given: the coordinating node's
//! [`JobContext`] for its driver, the running node's [`RunEnv`] for its shards.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rendermesh_cache::{BlobStore, Cache, PinGuard};
use rendermesh_mesh::exec::ShardCtl;
use rendermesh_mesh::transfer::fetch_from_any;
use rendermesh_mesh::{JobDriver, MeshLink, PeerEntry, ShardError};
use rendermesh_protocol::{CacheKey, Capabilities, ContentId, ShardOutput, ShardSpec, WorkStats};
use serde::{Deserialize, Serialize};

/// A job as the CLI sends it to a node (over the control API, or in-process): the kind's
/// name and its parameters (the kind's own `Params`, as JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitRequest {
    pub kind: String,
    pub params: serde_json::Value,
}

impl SubmitRequest {
    pub fn new<P: Serialize>(kind: &str, params: &P) -> anyhow::Result<Self> {
        Ok(Self {
            kind: kind.to_string(),
            params: serde_json::to_value(params)?,
        })
    }
}

/// What a kind's driver may use on the coordinating node.
pub struct JobContext {
    pub cache: Cache,
    /// This node's name.
    pub name: String,
    /// Default chunk length of time-sharded kinds (config `chunk_seconds`).
    pub chunk_seconds: f64,
    /// The mesh's other nodes as they announce themselves.
    pub peers: Vec<PeerEntry>,
    /// Blobs the mesh's other nodes hold (none for a mesh of one).
    pub mesh: Option<MeshBlobs>,
    /// Models held in the mesh, this node's first (see [`crate::models`]).
    pub models: Vec<rendermesh_protocol::ModelCap>,
}

/// Blobs held by the mesh's other nodes, fetched by id into this node's store. For a driver's
/// `plan` or `finish` (they run on blocking threads, never on the async executor).
#[derive(Clone)]
pub struct MeshBlobs {
    link: MeshLink,
    rt: tokio::runtime::Handle,
}

impl MeshBlobs {
    /// Call inside the node's async runtime (it keeps that runtime's handle).
    pub fn new(link: MeshLink) -> Self {
        Self {
            link,
            rt: tokio::runtime::Handle::current(),
        }
    }

    /// Blob `id` from whichever live peer holds it (at most `max_size` bytes), verified and
    /// pinned here; one line when no peer could deliver it.
    pub fn fetch(&self, id: ContentId, max_size: u64) -> Result<PinGuard, String> {
        self.rt
            .block_on(fetch_from_any(&self.link, id, max_size))
            .map(|f| f.pin)
            .map_err(|e| e.to_string())
    }
}

impl JobContext {
    /// The requested chunk length, checked, or the node's default when none was asked.
    pub fn chunk(&self, requested: Option<f64>) -> Result<f64, String> {
        match requested {
            Some(s) => check_chunk_seconds(s),
            None => Ok(self.chunk_seconds),
        }
    }
}

/// A job ready to run: what to show as its inputs, and its driver.
pub struct Started {
    pub inputs: Vec<String>,
    pub driver: Box<dyn JobDriver>,
}

/// What a shard runner may use on the node that runs it.
pub struct RunEnv {
    pub blobs: BlobStore,
    /// The models this node holds (a model fetched for a shard is kept).
    pub models: crate::models::Models,
    /// Codec threads per shard.
    pub threads: usize,
}

impl RunEnv {
    /// Where input `n` of `shard` lies in the blob store (the mesh fetched and verified it
    /// before the run).
    pub fn input(&self, shard: &ShardSpec, n: usize) -> Result<PathBuf, ShardError> {
        let id = shard.inputs.get(n).ok_or_else(|| {
            ShardError::refused(format!("shard {} has no input {n}", shard.index))
        })?;
        let path = self.blobs.path(id);
        if !path.is_file() {
            return Err(ShardError::retryable(format!(
                "input {} is not in the blob store",
                id.short()
            )));
        }
        Ok(path)
    }
}

impl RunEnv {
    /// Run `make` on a temp path of the blob store (`name` shows in it) and keep what it wrote
    /// as a blob: its result, the blob's id and size. A failed `make` leaves no file behind.
    pub fn make_blob<T>(
        &self,
        name: &str,
        make: impl FnOnce(&std::path::Path) -> Result<T, crate::engine::MediaError>,
    ) -> Result<(T, ContentId, u64), ShardError> {
        let tmp = self.blobs.temp_path(name);
        let made = match make(&tmp) {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
        };
        let (id, bytes) = self
            .blobs
            .adopt(&tmp)
            .map_err(|e| ShardError::retryable(format!("storing {name}: {e}")))?;
        Ok((made, id, bytes))
    }
}

/// Task classes of a node: measured speeds and what it cannot run (see
/// [`Capabilities::speeds`] and [`Capabilities::lacks`]).
#[derive(Default)]
pub struct Speeds {
    pub speeds: BTreeMap<String, f32>,
    pub lacks: BTreeMap<String, String>,
}

/// One kind of job.
pub trait JobKind: Sync {
    /// Its name: `rendermesh submit NAME`, and the kind a job's status shows.
    fn name(&self) -> &'static str;

    /// A driver for `params` (the kind's own parameters as JSON); an error is one line.
    fn start(&self, ctx: &JobContext, params: serde_json::Value) -> Result<Started, String>;

    /// Run one shard of this kind's tasks on the calling (blocking) thread.
    fn run(
        &self,
        env: &RunEnv,
        shard: &ShardSpec,
        ctl: &ShardCtl<'_>,
    ) -> Result<(ShardOutput, WorkStats), ShardError>;

    /// The speeds of this kind's task classes from the node's calibration `caps`.
    fn speeds(&self, caps: &Capabilities, out: &mut Speeds);
}

/// Remember a shard's output under `key` for a resumed job (`CacheKind::Segment`), flushed
/// at once: a coordinator killed right after must still find it (the store otherwise writes
/// out every half second). A failure costs only the resume.
pub fn remember_output(cache: &Cache, key: &CacheKey, output: &ShardOutput) {
    let stored = cache
        .entries
        .put(key, output)
        .map_err(|e| e.to_string())
        .and_then(|()| cache.entries.flush().map_err(|e| e.to_string()));
    if let Err(e) = stored {
        tracing::debug!(error = %e, "cannot remember a shard's output");
    }
}

/// Chunk lengths a job may ask for, in seconds.
pub const CHUNK_SECONDS: std::ops::RangeInclusive<f64> = 0.5..=3600.0;

/// `seconds` when it is a chunk length a job may ask for, else why not (one line).
pub fn check_chunk_seconds(seconds: f64) -> Result<f64, String> {
    if CHUNK_SECONDS.contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!(
            "chunk length {seconds} s is out of range ({} to {} s)",
            CHUNK_SECONDS.start(),
            CHUNK_SECONDS.end()
        ))
    }
}

/// A job is done with these blobs (its chunks, its shards' outputs): drop its pins and delete
/// each blob no other job pins. Content-addressed blobs are shared: two jobs on the same file
/// cut the same chunks, and the first to finish must leave the other's in place.
pub fn release_blobs(cache: &Cache, pins: Vec<PinGuard>) {
    let mut ids: Vec<ContentId> = pins.iter().map(|p| *p.id()).collect();
    drop(pins);
    ids.sort();
    ids.dedup();
    for id in ids {
        if let Err(e) = cache.blobs.remove_unpinned(&id) {
            tracing::debug!(blob = %id.short(), error = %e, "cannot remove a job's blob");
        }
    }
}

/// The one blob each result holds (a segment), in order; a result with none or several is
/// an error naming its shard.
pub fn one_blob_each(
    results: &[rendermesh_protocol::ShardResult],
) -> Result<Vec<ContentId>, rendermesh_mesh::JobError> {
    results
        .iter()
        .map(|r| match r.output.blobs.as_slice() {
            [b] => Ok(b.id),
            other => Err(rendermesh_mesh::JobError(format!(
                "shard {} returned {} blobs, not one segment",
                r.index,
                other.len()
            ))),
        })
        .collect()
}

/// Parameters of a kind from JSON, with the kind named in the error.
pub fn params<P: serde::de::DeserializeOwned>(
    kind: &str,
    value: serde_json::Value,
) -> Result<P, String> {
    serde_json::from_value(value).map_err(|e| format!("bad parameters for a {kind} job: {e}"))
}
