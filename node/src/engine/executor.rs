//! The media engine as the mesh's [`ShardExecutor`]: runs encode and scene-score shards on
//! chunk blobs from the local blob store.

use std::sync::atomic::{AtomicU64, Ordering};

use rendermesh_cache::BlobStore;
use rendermesh_mesh::executor::ShardCtl;
use rendermesh_mesh::{ShardError, ShardExecutor};
use rendermesh_protocol::{ShardOutput, ShardSpec, ShardTask, WorkStats};

use super::encode::encode_chunk;
use super::scenes::analyze::score_chunk;
use super::MediaError;

static DECODED: AtomicU64 = AtomicU64::new(0);
static ENCODED: AtomicU64 = AtomicU64::new(0);

pub(crate) fn count_decoded(n: u64) {
    DECODED.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn count_encoded(n: u64) {
    ENCODED.fetch_add(n, Ordering::Relaxed);
}

/// Frames decoded and encoded by this process so far.
pub fn process_counters() -> (u64, u64) {
    (
        DECODED.load(Ordering::Relaxed),
        ENCODED.load(Ordering::Relaxed),
    )
}

impl From<MediaError> for ShardError {
    fn from(e: MediaError) -> Self {
        if matches!(e, MediaError::Cancelled) {
            return ShardError::cancelled();
        }
        ShardError {
            retryable: !e.is_input_fault(),
            message: e.to_string(),
        }
    }
}

/// Runs shards with ffmpeg.
pub struct MediaExecutor {
    blobs: BlobStore,
    /// Codec threads per shard.
    threads: usize,
}

impl MediaExecutor {
    pub fn new(blobs: BlobStore, threads: usize) -> Self {
        Self {
            blobs,
            threads: threads.max(1),
        }
    }
}

impl ShardExecutor for MediaExecutor {
    fn run(
        &self,
        shard: &ShardSpec,
        ctl: &ShardCtl<'_>,
    ) -> Result<(ShardOutput, WorkStats), ShardError> {
        let chunk = match &shard.task {
            ShardTask::Encode { chunk, .. } | ShardTask::SceneScores { chunk, .. } => *chunk,
        };
        let path = self.blobs.path(&chunk);
        if !path.is_file() {
            return Err(ShardError::retryable(format!(
                "chunk {} is not in the blob store",
                chunk.short()
            )));
        }
        match &shard.task {
            ShardTask::Encode { range, options, .. } => {
                let tmp = self.blobs.temp_path("segment.nut");
                let result = encode_chunk(&path, range, options, &tmp, self.threads, ctl);
                let frames = match result {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(e.into());
                    }
                };
                let (id, bytes) = self
                    .blobs
                    .adopt(&tmp)
                    .map_err(|e| ShardError::retryable(format!("storing segment: {e}")))?;
                let stats = WorkStats {
                    decoded_frames: frames,
                    encoded_frames: frames,
                    ..Default::default()
                };
                Ok((ShardOutput::Blob { id, bytes }, stats))
            }
            ShardTask::SceneScores { range, params, .. } => {
                let scores = score_chunk(&path, range, params, self.threads, ctl)?;
                let stats = WorkStats {
                    decoded_frames: scores.deltas.len() as u64,
                    ..Default::default()
                };
                Ok((ShardOutput::SceneScores(scores), stats))
            }
        }
    }
}
