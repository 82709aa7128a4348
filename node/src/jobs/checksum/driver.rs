//! The checksum driver: stage 1 digests every input on the mesh, stage 2 combines them.

use std::path::PathBuf;

use rendermesh_cache::{Cache, PinGuard};
use rendermesh_mesh::{Finish, JobDriver, JobError, Plan, Stage};
use rendermesh_protocol::{
    codec, CacheKey, CacheKind, ContentId, JobId, JobResult, ShardCost, ShardOutput, ShardResult,
    ShardSpec, ShardTask, WorkStats,
};

use super::{units, CLASS, ROUNDS_PER_UNIT};
use crate::engine::ENGINE_VERSION;
use crate::jobs::kind::{release_blobs, remember_output};

/// Memory a checksum shard needs (its read buffer and the process).
const RAM: u64 = 64 << 20;

/// Plans and assembles one checksum job.
pub struct ChecksumDriver {
    cache: Cache,
    inputs: Vec<PathBuf>,
    rounds: u64,
    job: Option<JobId>,
    /// The input blobs, pinned for the job, and the cache key of each one's digest.
    pins: Vec<PinGuard>,
    keys: Vec<CacheKey>,
    /// The stage-1 digests, once stage 1 ended.
    parts: Option<Vec<ContentId>>,
}

impl ChecksumDriver {
    pub fn new(cache: Cache, inputs: Vec<PathBuf>, rounds: u64) -> Self {
        Self {
            cache,
            inputs,
            rounds,
            job: None,
            pins: Vec::new(),
            keys: Vec::new(),
            parts: None,
        }
    }

    /// Put `path` into the blob store (peers fetch it from there by hash).
    fn store(&self, path: &std::path::Path) -> Result<(ContentId, u64, PinGuard), JobError> {
        let tmp = self.cache.blobs.temp_path("checksum-input");
        let cant = |e: std::io::Error| {
            let _ = std::fs::remove_file(&tmp);
            match e.kind() {
                std::io::ErrorKind::NotFound => {
                    JobError(format!("{}: no such file", path.display()))
                }
                _ => JobError(format!("{}: cannot read: {e}", path.display())),
            }
        };
        use crate::engine::source;
        if !source::metadata(path).map_err(cant)?.is_file() {
            return Err(JobError(format!("{}: not a regular file", path.display())));
        }
        source::copy_to(path, &tmp).map_err(cant)?;
        self.cache.blobs.adopt_pinned(&tmp).map_err(cant)
    }

    fn digests(results: &[ShardResult]) -> Result<Vec<ContentId>, JobError> {
        results
            .iter()
            .map(|r| {
                r.output
                    .decode::<ContentId>()
                    .map_err(|e| JobError(format!("shard {} returned no digest ({e})", r.index)))
            })
            .collect()
    }
}

impl JobDriver for ChecksumDriver {
    fn abandon(&mut self) {
        release_blobs(&self.cache, std::mem::take(&mut self.pins));
    }

    fn plan(&mut self, job: JobId) -> Result<Plan, JobError> {
        self.job = Some(job);
        let params = codec::canonical(&("checksum", self.rounds));
        let mut stage = Stage {
            name: "digest".into(),
            ..Stage::default()
        };
        for (i, path) in self.inputs.clone().iter().enumerate() {
            let index = i as u32;
            let (id, bytes, pin) = self.store(path)?;
            self.pins.push(pin);
            stage.stats.hashed_bytes += bytes;
            let key = CacheKey::derive(CacheKind::Segment, ENGINE_VERSION, &params, &id);
            self.keys.push(key);
            stage.frames_total += units(self.rounds);
            // a digest an interrupted run of the same job left here
            let earlier = self.cache.entries.get::<ShardOutput>(&key).ok().flatten();
            if let Some(output) = earlier.filter(|o| o.decode::<ContentId>().is_ok()) {
                stage.done.push(ShardResult {
                    job,
                    index,
                    peer: "(resumed)".into(),
                    output,
                    stats: WorkStats::default(),
                });
                continue;
            }
            stage.shards.push(ShardSpec {
                job,
                index,
                task: ShardTask::Checksum {
                    rounds: self.rounds,
                },
                class: CLASS.into(),
                required: false,
                inputs: vec![id],
                cost: ShardCost {
                    units: units(self.rounds),
                    work: (self.rounds as f64 / ROUNDS_PER_UNIT as f64).max(1e-3),
                    ram: RAM,
                    input_bytes: bytes,
                },
            });
        }
        Ok(Plan::Shards(stage))
    }

    fn finish(&mut self, results: Vec<ShardResult>) -> Result<Finish, JobError> {
        let job = self
            .job
            .ok_or_else(|| JobError("finish before plan".into()))?;
        match self.parts.take() {
            None => {
                let parts = Self::digests(&results)?;
                if parts.len() != self.inputs.len() {
                    return Err(JobError(format!(
                        "{} digests for {} files",
                        parts.len(),
                        self.inputs.len()
                    )));
                }
                let combine = ShardSpec {
                    job,
                    index: parts.len() as u32,
                    task: ShardTask::CombineDigests {
                        parts: parts.clone(),
                    },
                    class: CLASS.into(),
                    required: false,
                    inputs: Vec::new(),
                    cost: ShardCost {
                        units: 1,
                        work: 1e-3,
                        ram: RAM,
                        input_bytes: 0,
                    },
                };
                self.parts = Some(parts);
                Ok(Finish::Next(Plan::Shards(Stage {
                    name: "combine".into(),
                    shards: vec![combine],
                    frames_total: 1,
                    ..Stage::default()
                })))
            }
            Some(parts) => {
                let combined = Self::digests(&results)?
                    .pop()
                    .ok_or_else(|| JobError("the combine stage returned nothing".into()))?;
                for key in std::mem::take(&mut self.keys) {
                    let _ = self.cache.entries.remove(&key);
                }
                release_blobs(&self.cache, std::mem::take(&mut self.pins));
                Ok(Finish::Done(
                    JobResult::Checksum { parts, combined },
                    WorkStats::default(),
                ))
            }
        }
    }

    fn shard_done(&mut self, result: &ShardResult) {
        if self.parts.is_some() {
            return;
        }
        if let Some(key) = self.keys.get(result.index as usize) {
            remember_output(&self.cache, key, &result.output);
        }
    }
}
