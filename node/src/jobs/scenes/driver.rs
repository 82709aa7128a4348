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
    codec, CacheKey, CacheKind, ContentId, FileLooks, FrameRange, JobId, JobResult, ModelCap,
    NeuralScores, SceneDetector, SceneList, SceneOptions, SceneScores, ShardOutput, ShardResult,
    ShardSpec, ShardTask, WorkStats,
};

use super::analyze::from_edge;
use super::detect::{
    adaptive_cuts, content_cuts, frame_delta, AdaptiveParams, ContentParams, FrameDelta,
};
use super::neural::cuts as neural_cuts;
use super::neural_stage::{self, Chunk};
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
    /// The shot-boundary network's weights held in the mesh (the neural detector's input).
    model: Option<ModelCap>,
    /// Peers' blobs: the weights are fetched from the node that holds them when this one
    /// does not, and served from here to the shards' runners.
    mesh: Option<crate::jobs::kind::MeshBlobs>,
    /// The weights held for this job (kept in the store after it).
    model_pin: Option<PinGuard>,
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
            model: None,
            mesh: None,
            model_pin: None,
        }
    }

    /// The shot-boundary network's weights, when a node of the mesh holds them.
    pub fn with_model(
        mut self,
        model: Option<ModelCap>,
        mesh: Option<crate::jobs::kind::MeshBlobs>,
    ) -> Self {
        self.model = model;
        self.mesh = mesh;
        self
    }

    /// The weights in this node's store, fetched by id (verified) from a peer that holds them
    /// when they are not, and pinned for the job.
    fn hold_model(&mut self, model: &ModelCap) -> Result<(), JobError> {
        if self.cache.blobs.contains(&model.id) {
            self.model_pin = Some(self.cache.blobs.pin(&model.id));
            return Ok(());
        }
        let mesh = self.mesh.as_ref().ok_or_else(|| {
            JobError("the TransNetV2 weights are neither here nor on a peer".into())
        })?;
        let pin = mesh.fetch(model.id, model.bytes).map_err(|e| {
            JobError(format!(
                "cannot fetch the TransNetV2 weights from a peer: {e}"
            ))
        })?;
        self.model_pin = Some(pin);
        Ok(())
    }

    /// The network's weights when the detector is the neural one (an error when no node of
    /// the mesh holds them), else `None`.
    fn neural_model(&self) -> Result<Option<ModelCap>, JobError> {
        if !matches!(self.options.detector, SceneDetector::Neural { .. }) {
            return Ok(None);
        }
        match &self.model {
            Some(m) => Ok(Some(m.clone())),
            None => Err(JobError(format!(
                "the neural detector needs the TransNetV2 weights ({}) in the models dir of \
                 at least one node of the mesh; none holds them",
                crate::models::TRANSNET_FILE
            ))),
        }
    }

    /// A neural shard's predictions depend on the weights and its blocks, not on the chunks.
    fn neural_key(&self, id: &ContentId, task: &ShardTask) -> CacheKey {
        let blocks = match task {
            ShardTask::SceneNeural {
                first_block,
                blocks,
                total_frames,
                ..
            } => (*first_block, *blocks, *total_frames),
            _ => (0, 0, 0),
        };
        let params = codec::canonical(&("neural", self.model.as_ref().map(|m| m.id), blocks));
        CacheKey::derive(CacheKind::SceneShard, ENGINE_VERSION, &params, id)
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
        let model = self.neural_model()?;
        if let Some(m) = &model {
            self.hold_model(m)?;
        }
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
            if let Some(model) = &model {
                let written = write_chunks(
                    &path,
                    &probe,
                    &plans,
                    &vec![true; plans.len()],
                    &self.cache.blobs,
                )
                .map_err(err)?;
                let mut chunks = Vec::with_capacity(plans.len());
                for (plan, w) in plans.iter().zip(written) {
                    let (id, bytes) = w.ok_or_else(|| {
                        JobError(format!("{}: a chunk was not written", path.display()))
                    })?;
                    self.chunks.push(self.cache.blobs.pin(&id));
                    chunks.push(Chunk {
                        range: plan.range,
                        id,
                        bytes,
                    });
                }
                let fps = probe.fps.as_f64();
                let specs = neural_stage::shards(
                    job,
                    &mut next_index,
                    &chunks,
                    probe.frames,
                    self.chunk_seconds * fps,
                    model,
                    probe.width,
                    probe.height,
                );
                let mut keyed = Vec::with_capacity(specs.len());
                for spec in specs {
                    let key = self.neural_key(&ident.id, &spec.task);
                    keyed.push((spec.index, key));
                    let cached = self.cache.entries.get::<NeuralScores>(&key).unwrap_or(None);
                    match cached.and_then(|s| ShardOutput::inline(&s).ok()) {
                        Some(output) => done.push(ShardResult {
                            job,
                            index: spec.index,
                            peer: format!("{} (cache)", self.peer),
                            output,
                            stats: WorkStats::default(),
                        }),
                        None => shards.push(spec),
                    }
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
                continue;
            }
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
            name: if model.is_some() { "neural" } else { "scores" }.into(),
            shards,
            done,
            frames_total,
            stats,
            notes: Vec::new(),
        }))
    }

    fn finish(&mut self, results: Vec<ShardResult>) -> Result<Finish, JobError> {
        release_blobs(&self.cache, std::mem::take(&mut self.chunks));
        if let SceneDetector::Neural { threshold } = self.options.detector {
            return self.finish_neural(results, threshold);
        }
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
        let keys: Vec<(CacheKey, CacheKey)> = self
            .files
            .iter()
            .map(|f| (self.looks_key(&f.id), self.list_key(&f.id)))
            .collect();
        for (f, (looks_key, list_key)) in self.files.iter_mut().zip(keys) {
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
            keep_list(&self.cache, &list_key, &list);
            lists.push(list);
        }
        Ok(self.done(lists))
    }
}

/// Cache a file's scene list (a failure costs only the next run's cache hit).
fn keep_list(cache: &Cache, key: &CacheKey, list: &SceneList) {
    if let Err(e) = cache.entries.put(key, list) {
        tracing::warn!(error = %e, "cannot cache scene list");
    }
}

impl ScenesDriver {
    /// The job's result, once every entry it made is flushed.
    fn done(&self, lists: Vec<SceneList>) -> Finish {
        if let Err(e) = self.cache.entries.flush() {
            tracing::warn!(error = %e, "cannot flush the cache");
        }
        Finish::Done(JobResult::Scenes { lists }, WorkStats::default())
    }

    /// The neural detector's lists: each file's predictions from its shards, cut where the
    /// transition probability ends a run above `threshold`.
    fn finish_neural(
        &mut self,
        results: Vec<ShardResult>,
        threshold: f32,
    ) -> Result<Finish, JobError> {
        let mut by_index = std::collections::HashMap::new();
        for r in results {
            let s = r.output.decode::<NeuralScores>().map_err(|e| {
                JobError(format!("shard {} returned no predictions ({e})", r.index))
            })?;
            by_index.insert(r.index, s);
        }
        let mut lists = Vec::with_capacity(self.files.len());
        for f in &self.files {
            if let Some(list) = &f.list {
                lists.push(list.clone());
                continue;
            }
            let mut parts = Vec::with_capacity(f.shards.len());
            for (index, key) in &f.shards {
                let s = by_index.remove(index).ok_or_else(|| {
                    JobError(format!(
                        "{}: predictions of shard {index} missing",
                        f.path.display()
                    ))
                })?;
                if let Err(e) = self.cache.entries.put(key, &s) {
                    tracing::warn!(error = %e, "cannot cache the network's predictions");
                }
                parts.push(s);
            }
            let single = neural_stage::assemble(&parts, f.frames)
                .map_err(|e| JobError(format!("{}: {e}", f.path.display())))?;
            let list = SceneList {
                input: f.id,
                fps: f.fps,
                frames: f.frames,
                cuts: neural_cuts(&single, threshold, self.options.min_scene_len)
                    .into_iter()
                    .map(u64::from)
                    .collect(),
            };
            keep_list(&self.cache, &self.list_key(&f.id), &list);
            lists.push(list);
        }
        Ok(self.done(lists))
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
        // the neural detector's cuts come from the network (`finish_neural`), not from deltas
        SceneDetector::Neural { .. } => Vec::new(),
    }
}
