//! The beats driver: one shard per file that the cache cannot answer.
//!
//! Plan: for each input, its content id (from the file-identity table) and the cache key of
//! its grid (the tracker's version and the tempo range are in the key). A cached grid —
//! computed here or replicated from a peer — answers at once, with no decode. Otherwise the
//! file's audio track is copied (no decode) into a blob and a shard asks for its grid.
//! Finish: check each grid, give it the file's id, cache it.

use std::path::PathBuf;

use rendermesh_cache::{Cache, PinGuard};
use rendermesh_mesh::{Finish, JobDriver, JobError, Plan, Stage};
use rendermesh_protocol::{
    codec, BeatGrid, BeatParams, CacheKey, CacheKind, ContentId, JobId, JobResult, ShardCost,
    ShardResult, ShardSpec, ShardTask, WorkStats,
};

use super::{CLASS, TRACKER_VERSION};
use crate::engine::pcm::{audio_source, AudioSource};
use crate::engine::probe::identify;
use crate::jobs::kind::release_blobs;

/// Memory a beat shard needs: the features of three hours of audio and the process.
const RAM: u64 = 256 << 20;

struct FileWork {
    path: PathBuf,
    id: ContentId,
    key: CacheKey,
    grid: Option<BeatGrid>,
    /// The shard's index when the grid is computed.
    index: Option<u32>,
}

/// Plans and assembles one beats job.
pub struct BeatsDriver {
    cache: Cache,
    inputs: Vec<PathBuf>,
    params: BeatParams,
    files: Vec<FileWork>,
    /// The audio blobs of this job's shards.
    pins: Vec<PinGuard>,
}

impl BeatsDriver {
    pub fn new(cache: Cache, inputs: Vec<PathBuf>, params: BeatParams) -> Self {
        Self {
            cache,
            inputs,
            params,
            files: Vec::new(),
            pins: Vec::new(),
        }
    }

    /// The cache key of the grid of content `id` with these parameters.
    pub fn key(params: &BeatParams, id: &ContentId) -> CacheKey {
        let p = codec::canonical(&(params.min_bpm.to_bits(), params.max_bpm.to_bits()));
        CacheKey::derive(CacheKind::BeatGrid, TRACKER_VERSION, &p, id)
    }

    /// The sound of `path` as a pinned blob (the file itself, or its audio track when it has
    /// video), and what it is.
    fn audio_blob(
        &self,
        path: &std::path::Path,
    ) -> Result<(ContentId, u64, AudioSource, PinGuard), JobError> {
        let tmp = self.cache.blobs.temp_path("beats-audio.nut");
        let fail = |e: String| {
            let _ = std::fs::remove_file(&tmp);
            JobError(e)
        };
        let source = audio_source(path, &tmp).map_err(|e| fail(e.to_string()))?;
        if let AudioSource::Whole { .. } = source {
            crate::engine::source::copy_to(path, &tmp)
                .map_err(|e| fail(format!("{}: cannot read: {e}", path.display())))?;
        }
        let (id, bytes, pin) = self
            .cache
            .blobs
            .adopt_pinned(&tmp)
            .map_err(|e| fail(format!("{}: cannot store its audio: {e}", path.display())))?;
        Ok((id, bytes, source, pin))
    }
}

impl JobDriver for BeatsDriver {
    fn abandon(&mut self) {
        release_blobs(&self.cache, std::mem::take(&mut self.pins));
    }

    fn plan(&mut self, job: JobId) -> Result<Plan, JobError> {
        let mut stage = Stage {
            name: "beats".into(),
            ..Stage::default()
        };
        for path in self.inputs.clone() {
            let ident = identify(&self.cache, &path).map_err(|e| JobError(e.to_string()))?;
            stage.stats.hashed_bytes += ident.hashed_bytes;
            let key = Self::key(&self.params, &ident.id);
            let cached = self.cache.entries.get::<BeatGrid>(&key).unwrap_or(None);
            if let Some(grid) = cached.filter(|g| g.validate().is_ok()) {
                stage.stats.cache_hits += 1;
                self.files.push(FileWork {
                    path,
                    id: ident.id,
                    key,
                    grid: Some(grid),
                    index: None,
                });
                continue;
            }
            let (audio, bytes, source, pin) = self.audio_blob(&path)?;
            let seconds = source.seconds();
            let trim_s = match source {
                AudioSource::Extracted { trim_s, .. } => trim_s as f32,
                AudioSource::Whole { .. } => 0.0,
            };
            self.pins.push(pin);
            let index = stage.shards.len() as u32;
            let units = seconds.ceil().max(1.0) as u64;
            stage.frames_total += units;
            stage.shards.push(ShardSpec {
                job,
                index,
                task: ShardTask::Beats {
                    params: self.params,
                    trim_s,
                },
                class: CLASS.into(),
                required: false,
                inputs: vec![audio],
                cost: ShardCost {
                    units,
                    work: seconds.max(0.1),
                    ram: RAM,
                    input_bytes: bytes,
                },
            });
            self.files.push(FileWork {
                path,
                id: ident.id,
                key,
                grid: None,
                index: Some(index),
            });
        }
        if stage.shards.is_empty() {
            let grids = self.files.iter().filter_map(|f| f.grid.clone()).collect();
            return Ok(Plan::Cached {
                result: JobResult::Beats { grids },
                stats: stage.stats,
            });
        }
        Ok(Plan::Shards(stage))
    }

    fn finish(&mut self, results: Vec<ShardResult>) -> Result<Finish, JobError> {
        release_blobs(&self.cache, std::mem::take(&mut self.pins));
        let mut by_index = std::collections::HashMap::new();
        for r in results {
            let grid = r
                .output
                .decode::<BeatGrid>()
                .map_err(|e| JobError(format!("shard {} returned no beat grid ({e})", r.index)))?;
            grid.validate().map_err(|e| {
                JobError(format!(
                    "shard {} (from {}) returned a bad beat grid: {e}",
                    r.index, r.peer
                ))
            })?;
            by_index.insert(r.index, grid);
        }
        let mut grids = Vec::with_capacity(self.files.len());
        for f in &mut self.files {
            if let Some(g) = &f.grid {
                grids.push(g.clone());
                continue;
            }
            let index = f.index.unwrap_or(u32::MAX);
            let mut grid = by_index.remove(&index).ok_or_else(|| {
                JobError(format!("{}: its beat grid is missing", f.path.display()))
            })?;
            grid.input = f.id;
            if let Err(e) = self.cache.entries.put(&f.key, &grid) {
                tracing::warn!(error = %e, "cannot cache a beat grid");
            }
            grids.push(grid);
        }
        if let Err(e) = self.cache.entries.flush() {
            tracing::warn!(error = %e, "cannot flush the cache");
        }
        Ok(Finish::Done(
            JobResult::Beats { grids },
            WorkStats::default(),
        ))
    }
}
