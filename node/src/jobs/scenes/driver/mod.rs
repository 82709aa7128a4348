//! The scene-detection driver: time-sharded per file, file-sharded across files.
//!
//! Plan: for each input, answer from the cached scene list if there is one; otherwise probe,
//! cut into chunks, and make a score shard for every chunk whose scores are not cached.
//! Finish: stitch each file's shard scores in order, score the frame pair across every shard
//! boundary from the shards' edge frames (so a cut on a boundary is found exactly once), run
//! the detector on the whole file, cache shard scores and scene lists. The network's stages
//! (the `neural` detector's only one, the `auto` cascade's second) are in [`network`].

mod network;

use std::path::{Path, PathBuf};

use rendermesh_cache::{Cache, PinGuard};
use rendermesh_mesh::{Finish, JobDriver, JobError, Plan, Stage};
use rendermesh_protocol::{
    codec, CacheKey, CacheKind, ContentId, FileLooks, FrameRange, JobId, JobResult, ModelCap,
    SceneDetector, SceneList, SceneOptions, SceneScores, ShardOutput, ShardResult, ShardSpec,
    ShardTask, Transition, WorkStats,
};

use self::network::{auto_cuts, Auto, Planned};
use super::cascade::Triage;
use super::detect::{adaptive_cuts, content_cuts, AdaptiveParams, ContentParams, FrameDelta};
use super::edges;
use crate::engine::chunk::{plan_chunks_tapered, write_chunks};
use crate::engine::probe::{identify, probe_cached, Probe};
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
    /// Global shard indices of this file's current stage, in time order, with their cache
    /// keys.
    shards: Vec<(u32, CacheKey)>,
    /// The `auto` cascade: what its scores settled and the blocks the network decides.
    triage: Option<Triage>,
    /// The `auto` cascade: the content detector's cuts, should the network fail to run.
    fallback: Vec<u32>,
}

/// The version of how the network's predictions (and the cascade) become cuts: a scene list
/// made by other rules is not the one asked for.
const CUT_RULES: u32 = 3;

/// The version of the scene list's format (in every detector's list key).
const LIST_FORMAT: u32 = 2;

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
    /// The next shard index (unique across the job's stages).
    next_index: u32,
    /// The job, once planned (the cascade plans its network stage from it).
    job: Option<JobId>,
    /// The stage running is the network's.
    network_stage: bool,
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
            next_index: 0,
            job: None,
            network_stage: false,
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
        // the cascade's cuts depend on whether the network could run, and on its weights
        let params = match self.options.detector {
            SceneDetector::Auto { .. } => {
                codec::canonical(&(&self.options, self.model.as_ref().map(|m| m.id), CUT_RULES))
            }
            SceneDetector::Neural { .. } => codec::canonical(&(&self.options, CUT_RULES)),
            // a list of another format (before transitions) would not decode
            _ => codec::canonical(&(&self.options, LIST_FORMAT)),
        };
        CacheKey::derive(CacheKind::SceneList, ENGINE_VERSION, &params, id)
    }

    /// A shard answered from the cache.
    fn cached_result(&self, job: JobId, index: u32, output: ShardOutput) -> ShardResult {
        ShardResult {
            job,
            index,
            peer: format!("{} (cache)", self.peer),
            output,
            stats: WorkStats::default(),
        }
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
    fn abandon(&mut self) {
        release_blobs(&self.cache, std::mem::take(&mut self.chunks));
        self.model_pin = None;
    }

    fn plan(&mut self, job: JobId) -> Result<Plan, JobError> {
        let err = |e: crate::engine::MediaError| JobError(e.to_string());
        self.job = Some(job);
        let model = self.neural_model()?;
        if let Some(m) = &model {
            self.hold_model(m)?;
        }
        let mut stats = WorkStats::default();
        let mut shards = Vec::new();
        let mut done = Vec::new();
        let mut frames_total = 0;
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
            let mut file = FileWork {
                path: path.clone(),
                id: ident.id,
                frames: 0,
                fps: rendermesh_protocol::Rational { num: 0, den: 1 },
                list: None,
                looks: None,
                shards: Vec::new(),
                triage: None,
                fallback: Vec::new(),
            };
            if let Some(list) = list.filter(|_| looks.is_some() || !self.looks) {
                stats.cache_hits += 1;
                (file.frames, file.fps) = (list.frames, list.fps);
                (file.list, file.looks) = (Some(list), looks);
                self.files.push(file);
                continue;
            }
            let (probe, _) = probe_cached(&self.cache, &path, &ident.id).map_err(err)?;
            frames_total += probe.frames;
            (file.frames, file.fps) = (probe.frames, probe.fps);
            file.shards = match &model {
                Some(model) => {
                    let mut to = Planned {
                        job,
                        shards: &mut shards,
                        done: &mut done,
                    };
                    self.plan_neural_file(&mut to, &path, &ident.id, &probe, model)?
                }
                None => self.plan_scores(job, &path, &ident.id, &probe, &mut shards, &mut done)?,
            };
            self.files.push(file);
        }
        if self.files.iter().all(|f| f.list.is_some()) {
            let lists = self.files.iter().filter_map(|f| f.list.clone()).collect();
            return Ok(Plan::Cached {
                result: JobResult::Scenes { lists },
                stats,
            });
        }
        let mut notes = Vec::new();
        if matches!(self.options.detector, SceneDetector::Auto { .. }) && self.model.is_none() {
            notes.push(format!(
                "auto: no node of the mesh holds the TransNetV2 weights ({}): the content \
                 detector decides alone",
                crate::models::TRANSNET_FILE
            ));
        }
        Ok(Plan::Shards(Stage {
            name: if model.is_some() { "neural" } else { "scores" }.into(),
            shards,
            done,
            frames_total,
            stats,
            notes,
        }))
    }

    fn finish(&mut self, results: Vec<ShardResult>) -> Result<Finish, JobError> {
        release_blobs(&self.cache, std::mem::take(&mut self.chunks));
        match self.options.detector {
            SceneDetector::Neural { threshold } => return self.finish_network(results, threshold),
            SceneDetector::Auto {
                neural_threshold, ..
            } if self.network_stage => return self.finish_network(results, neural_threshold),
            _ => {}
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
        let keys: Vec<(CacheKey, CacheKey)> = self
            .files
            .iter()
            .map(|f| (self.looks_key(&f.id), self.list_key(&f.id)))
            .collect();
        for (f, (looks_key, list_key)) in self.files.iter_mut().zip(keys) {
            if f.list.is_some() {
                continue;
            }
            let mut shards = Vec::with_capacity(f.shards.len());
            for (index, _) in &f.shards {
                let s = by_index.remove(index).ok_or_else(|| {
                    JobError(format!(
                        "{}: scores of shard {index} missing",
                        f.path.display()
                    ))
                })?;
                shards.push(s);
            }
            edges::join(&mut shards);
            let mut looks = Vec::new();
            let mut deltas: Vec<Option<FrameDelta>> = Vec::with_capacity(f.frames as usize);
            for ((index, key), s) in f.shards.iter().zip(shards) {
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
                deltas.extend(s.deltas);
                looks.extend(s.looks);
            }
            if deltas.len() as u64 != f.frames {
                return Err(JobError(format!(
                    "{}: scored {} frames, the file has {}",
                    f.path.display(),
                    deltas.len(),
                    f.frames
                )));
            }
            if self.looks {
                let file_looks = FileLooks { input: f.id, looks };
                if let Err(e) = self.cache.entries.put(&looks_key, &file_looks) {
                    tracing::warn!(error = %e, "cannot cache frame looks");
                }
                f.looks = Some(file_looks);
            }
            let cuts = match self.options.detector {
                SceneDetector::Auto { threshold, .. } => {
                    match auto_cuts(&deltas, &self.options, threshold, self.model.is_some()) {
                        Auto::Cuts(cuts) => cuts,
                        Auto::Undecided(t, fallback) => {
                            f.triage = Some(t);
                            f.fallback = fallback;
                            continue;
                        }
                    }
                }
                _ => detect(&deltas, &self.options),
            };
            let list = list_of(f, cuts, Vec::new());
            keep_list(&self.cache, &list_key, &list);
            f.list = Some(list);
        }
        if self.files.iter().any(|f| f.list.is_none()) {
            let job = self
                .job
                .ok_or_else(|| JobError("a scenes job finished before it was planned".into()))?;
            match self.plan_auto_network(job) {
                Ok(plan) => return Ok(Finish::Next(plan)),
                // the weights went away (their only holder left): the content detector's
                // cuts, not cached, so the next run asks the network again
                Err(e) => {
                    tracing::warn!(error = %e.0, "auto: the network cannot run; the content detector decides alone");
                    for f in self.files.iter_mut().filter(|f| f.list.is_none()) {
                        let cuts = std::mem::take(&mut f.fallback);
                        f.list = Some(list_of(f, cuts, Vec::new()));
                    }
                }
            }
        }
        let lists = self.files.iter().filter_map(|f| f.list.clone()).collect();
        Ok(self.done(lists))
    }
}

/// A file's scene list from its cuts and the gradual transitions among them.
fn list_of(f: &FileWork, cuts: Vec<u32>, transitions: Vec<Transition>) -> SceneList {
    SceneList {
        input: f.id,
        fps: f.fps,
        frames: f.frames,
        cuts: cuts.into_iter().map(u64::from).collect(),
        transitions,
    }
}

/// Cache a file's scene list (a failure costs only the next run's cache hit).
fn keep_list(cache: &Cache, key: &CacheKey, list: &SceneList) {
    if let Err(e) = cache.entries.put(key, list) {
        tracing::warn!(error = %e, "cannot cache scene list");
    }
}

impl ScenesDriver {
    /// The score shards of one file: cached scores are answered at once, and only the
    /// others' chunks are written.
    fn plan_scores(
        &mut self,
        job: JobId,
        path: &Path,
        id: &ContentId,
        probe: &Probe,
        shards: &mut Vec<ShardSpec>,
        done: &mut Vec<ShardResult>,
    ) -> Result<Vec<(u32, CacheKey)>, JobError> {
        let plans = plan_chunks_tapered(probe, self.chunk_seconds);
        let mut keyed = Vec::with_capacity(plans.len());
        let mut cached = Vec::with_capacity(plans.len());
        for plan in &plans {
            let key = self.shard_key(id, &plan.range);
            let index = self.next_index;
            self.next_index += 1;
            keyed.push((index, key));
            let scores = self.cache.entries.get::<SceneScores>(&key).unwrap_or(None);
            cached.push(scores.and_then(|s| Some((ShardOutput::inline(&s).ok()?, s))));
        }
        let usable = edges::usable(
            &cached
                .iter()
                .map(|c| c.as_ref().map(|c| &c.1))
                .collect::<Vec<_>>(),
        );
        let mut want = Vec::with_capacity(plans.len());
        for ((&(index, _), c), ok) in keyed.iter().zip(cached).zip(usable) {
            match c.filter(|_| ok) {
                Some((output, _)) => {
                    want.push(false);
                    done.push(self.cached_result(job, index, output));
                }
                None => want.push(true),
            }
        }
        let written = write_chunks(path, probe, &plans, &want, &self.cache.blobs)
            .map_err(|e| JobError(e.to_string()))?;
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
        Ok(keyed)
    }

    /// The job's result, once every entry it made is flushed.
    fn done(&self, lists: Vec<SceneList>) -> Finish {
        if let Err(e) = self.cache.entries.flush() {
            tracing::warn!(error = %e, "cannot flush the cache");
        }
        Finish::Done(JobResult::Scenes { lists }, WorkStats::default())
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
        // the network's cuts come from its predictions (`finish_network`), not from deltas
        SceneDetector::Neural { .. } => Vec::new(),
        SceneDetector::Auto { threshold, .. } => content_cuts(
            deltas,
            &ContentParams {
                threshold,
                min_scene_len: o.min_scene_len,
                weights: o.weights,
            },
        ),
    }
}
