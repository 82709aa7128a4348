//! The scene-detection driver: time-sharded per file, file-sharded across files.
//!
//! Plan: for each input, answer from the cached scene list if there is one; otherwise probe,
//! cut into chunks, and make a score shard for every chunk whose scores are not cached.
//! Finish: stitch each file's shard scores in order, score the frame pair across every shard
//! boundary from the shards' edge frames (so a cut on a boundary is found exactly once), run
//! the detector on the whole file, cache shard scores and scene lists.

use std::path::PathBuf;

use rendermesh_cache::{Cache, PinGuard};
use rendermesh_mesh::{Finish, JobDriver, JobError, Plan, Stage};
use rendermesh_protocol::{
    codec, CacheKey, CacheKind, ContentId, FileLooks, FrameRange, JobId, JobResult, SceneDetector,
    SceneList, SceneOptions, SceneScores, ShardOutput, ShardResult, ShardSpec, ShardTask,
    WorkStats,
};

use super::analyze::from_edge;
use super::detect::{
    adaptive_cuts, content_cuts, frame_delta, AdaptiveParams, ContentParams, FrameDelta,
};
use crate::engine::chunk::{plan_chunks_tapered, write_chunks};
use crate::engine::probe::{identify, probe_cached};
use crate::engine::ENGINE_VERSION;
use crate::jobs::kind::release_blobs;
use crate::jobs::video::{video_class, video_cost};

struct FileWork {
    path: PathBuf,
    id: ContentId,
    frames: u64,
    fps: rendermesh_protocol::Rational,
    list: Option<SceneList>,
    /// How its sampled frames look (when asked for).
    looks: Option<FileLooks>,
    /// Global shard indices of this file, in time order, with their cache keys.
    shards: Vec<(u32, CacheKey)>,
}

/// Plans and assembles one scene-detection job.
pub struct ScenesDriver {
    cache: Cache,
    inputs: Vec<PathBuf>,
    options: SceneOptions,
    chunk_seconds: f64,
    peer: String,
    files: Vec<FileWork>,
    /// This job's chunk blobs, pinned so a blob-store quota cannot evict them mid-job.
    chunks: Vec<PinGuard>,
    /// Measure how frames look too (a montage's analysis).
    looks: bool,
}

impl ScenesDriver {
    pub fn new(
        cache: Cache,
        inputs: Vec<PathBuf>,
        options: SceneOptions,
        chunk_seconds: f64,
        peer: String,
    ) -> Self {
        Self {
            cache,
            inputs,
            options,
            chunk_seconds,
            peer,
            files: Vec::new(),
            chunks: Vec::new(),
            looks: false,
        }
    }

    /// Also measure how every [`rendermesh_protocol::LOOK_EVERY`]th frame looks; the looks
    /// are cached per file beside the scene list and given by [`ScenesDriver::looks`].
    pub fn with_looks(mut self) -> Self {
        self.looks = true;
        self
    }

    /// The frame looks of each input (submit order), once the job is done; empty when they
    /// were not asked for.
    pub fn looks(&self) -> Vec<FileLooks> {
        self.files.iter().filter_map(|f| f.looks.clone()).collect()
    }

    fn looks_key(&self, id: &ContentId) -> CacheKey {
        let params = codec::canonical(&(
            "looks",
            rendermesh_protocol::LOOK_EVERY,
            self.options.scoring,
        ));
        CacheKey::derive(CacheKind::FrameLooks, ENGINE_VERSION, &params, id)
    }

    fn list_key(&self, id: &ContentId) -> CacheKey {
        CacheKey::derive(
            CacheKind::SceneList,
            ENGINE_VERSION,
            &codec::canonical(&self.options),
            id,
        )
    }

    fn shard_key(&self, id: &ContentId, range: &FrameRange) -> CacheKey {
        let params = if self.looks {
            codec::canonical(&(
                self.options.scoring,
                range.start_pts,
                range.end_pts,
                range.time_base,
                "looks",
            ))
        } else {
            codec::canonical(&(
                self.options.scoring,
                range.start_pts,
                range.end_pts,
                range.time_base,
            ))
        };
        CacheKey::derive(CacheKind::SceneShard, ENGINE_VERSION, &params, id)
    }
}

impl JobDriver for ScenesDriver {
    fn plan(&mut self, job: JobId) -> Result<Plan, JobError> {
        let err = |e: crate::engine::MediaError| JobError(e.to_string());
        let mut stats = WorkStats::default();
        let mut shards = Vec::new();
        let mut done = Vec::new();
        let mut frames_total = 0;
        let mut next_index = 0u32;
        for path in self.inputs.clone() {
            let ident = identify(&self.cache, &path).map_err(err)?;
            stats.hashed_bytes += ident.hashed_bytes;
            let list = self
                .cache
                .entries
                .get::<SceneList>(&self.list_key(&ident.id))
                .unwrap_or(None);
            let looks = match self.looks {
                true => self
                    .cache
                    .entries
                    .get::<FileLooks>(&self.looks_key(&ident.id))
                    .unwrap_or(None),
                false => None,
            };
            if let Some(list) = list.filter(|_| looks.is_some() || !self.looks) {
                stats.cache_hits += 1;
                self.files.push(FileWork {
                    path,
                    id: ident.id,
                    frames: list.frames,
                    fps: list.fps,
                    list: Some(list),
                    looks,
                    shards: Vec::new(),
                });
                continue;
            }
            let (probe, _) = probe_cached(&self.cache, &path, &ident.id).map_err(err)?;
            frames_total += probe.frames;
            let plans = plan_chunks_tapered(&probe, self.chunk_seconds);
            let mut want = Vec::with_capacity(plans.len());
            let mut keyed = Vec::with_capacity(plans.len());
            for plan in &plans {
                let key = self.shard_key(&ident.id, &plan.range);
                let index = next_index;
                next_index += 1;
                keyed.push((index, key));
                match self.cache.entries.get::<SceneScores>(&key).unwrap_or(None) {
                    Some(scores) => match ShardOutput::inline(&scores) {
                        Ok(output) => {
                            want.push(false);
                            done.push(ShardResult {
                                job,
                                index,
                                peer: format!("{} (cache)", self.peer),
                                output,
                                stats: WorkStats::default(),
                            });
                        }
                        Err(_) => want.push(true),
                    },
                    None => want.push(true),
                }
            }
            let written =
                write_chunks(&path, &probe, &plans, &want, &self.cache.blobs).map_err(err)?;
            for ((plan, w), (index, _)) in plans.iter().zip(written).zip(&keyed) {
                let Some((chunk, bytes)) = w else { continue };
                self.chunks.push(self.cache.blobs.pin(&chunk));
                shards.push(ShardSpec {
                    job,
                    index: *index,
                    task: ShardTask::SceneScores {
                        range: plan.range,
                        params: self.options.scoring,
                        looks: self.looks,
                    },
                    class: video_class("scenes", probe.width, probe.height),
                    required: false,
                    inputs: vec![chunk],
                    cost: video_cost(plan.range.frames, probe.width, probe.height, bytes),
                });
            }
            self.files.push(FileWork {
                path,
                id: ident.id,
                frames: probe.frames,
                fps: probe.fps,
                list: None,
                looks: None,
                shards: keyed,
            });
        }
        if self.files.iter().all(|f| f.list.is_some()) {
            let lists = self.files.iter().filter_map(|f| f.list.clone()).collect();
            return Ok(Plan::Cached {
                result: JobResult::Scenes { lists },
                stats,
            });
        }
        Ok(Plan::Shards(Stage {
            name: "scores".into(),
            shards,
            done,
            frames_total,
            stats,
            notes: Vec::new(),
        }))
    }

    fn finish(&mut self, results: Vec<ShardResult>) -> Result<Finish, JobError> {
        release_blobs(&self.cache, std::mem::take(&mut self.chunks));
        let mut by_index: std::collections::HashMap<u32, SceneScores> =
            std::collections::HashMap::new();
        for r in results {
            match r.output.decode::<SceneScores>() {
                Ok(s) => {
                    by_index.insert(r.index, s);
                }
                Err(e) => {
                    return Err(JobError(format!(
                        "shard {} returned no scene scores ({e})",
                        r.index
                    )))
                }
            }
        }
        let mut lists = Vec::with_capacity(self.files.len());
        let looks_keys: Vec<CacheKey> = self.files.iter().map(|f| self.looks_key(&f.id)).collect();
        for (f, looks_key) in self.files.iter_mut().zip(looks_keys) {
            if let Some(list) = &f.list {
                lists.push(list.clone());
                continue;
            }
            let mut looks = Vec::new();
            let mut deltas: Vec<Option<FrameDelta>> = Vec::with_capacity(f.frames as usize);
            let mut prev_last = None;
            for (index, key) in &f.shards {
                let s = by_index.remove(index).ok_or_else(|| {
                    JobError(format!(
                        "{}: scores of shard {index} missing",
                        f.path.display()
                    ))
                })?;
                if s.first_frame != deltas.len() as u64 {
                    return Err(JobError(format!(
                        "{}: shard {index} starts at frame {}, expected {}",
                        f.path.display(),
                        s.first_frame,
                        deltas.len()
                    )));
                }
                if let Err(e) = self.cache.entries.put(key, &s) {
                    tracing::warn!(error = %e, "cannot cache shard scores");
                }
                let mut shard_deltas = s.deltas.clone();
                // score the pair across the boundary from the edge frames
                if let (Some(last), Some(first), Some(d0)) =
                    (&prev_last, &s.first, shard_deltas.first_mut())
                {
                    if let (Some(a), Some(b)) = (from_edge(last), from_edge(first)) {
                        *d0 = frame_delta(&a, &b).ok();
                    }
                }
                deltas.extend(shard_deltas);
                looks.extend_from_slice(&s.looks);
                prev_last = s.last.clone();
            }
            if deltas.len() as u64 != f.frames {
                return Err(JobError(format!(
                    "{}: scored {} frames, the file has {}",
                    f.path.display(),
                    deltas.len(),
                    f.frames
                )));
            }
            let cuts = detect(&deltas, &self.options);
            let list = SceneList {
                input: f.id,
                fps: f.fps,
                frames: f.frames,
                cuts: cuts.into_iter().map(u64::from).collect(),
            };
            if self.looks {
                let file_looks = FileLooks { input: f.id, looks };
                if let Err(e) = self.cache.entries.put(&looks_key, &file_looks) {
                    tracing::warn!(error = %e, "cannot cache frame looks");
                }
                f.looks = Some(file_looks);
            }
            let list_key = CacheKey::derive(
                CacheKind::SceneList,
                ENGINE_VERSION,
                &codec::canonical(&self.options),
                &f.id,
            );
            if let Err(e) = self.cache.entries.put(&list_key, &list) {
                tracing::warn!(error = %e, "cannot cache scene list");
            }
            lists.push(list);
        }
        if let Err(e) = self.cache.entries.flush() {
            tracing::warn!(error = %e, "cannot flush the cache");
        }
        Ok(Finish::Done(
            JobResult::Scenes { lists },
            WorkStats::default(),
        ))
    }
}

/// Run the configured detector over a whole file's deltas.
pub fn detect(deltas: &[Option<FrameDelta>], o: &SceneOptions) -> Vec<u32> {
    match o.detector {
        SceneDetector::Content { threshold } => content_cuts(
            deltas,
            &ContentParams {
                threshold,
                min_scene_len: o.min_scene_len,
                weights: o.weights,
            },
        ),
        SceneDetector::Adaptive {
            adaptive_threshold,
            min_content_val,
            window_width,
        } => adaptive_cuts(
            deltas,
            &AdaptiveParams {
                adaptive_threshold,
                min_content_val,
                window_width,
                min_scene_len: o.min_scene_len,
                weights: o.weights,
            },
        ),
    }
}
