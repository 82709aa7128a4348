//! The montage driver: analysis (scenes and frame looks of every clip, beats of the song, in
//! one stage of shards), the plan (on this node), the render (one shard per shot), the join.
//!
//! The analysis stage is the scenes kind's driver and the beats kind's driver side by side:
//! their shards are numbered one after the other and their results handed back to each, so
//! every piece is cached by content exactly as those kinds cache it, and a second montage
//! over the same clips and song plans straight away.

use std::path::PathBuf;

use rendermesh_cache::Cache;
use rendermesh_mesh::{Finish, JobDriver, JobError, Plan, Stage};
use rendermesh_protocol::{
    BeatGrid, BeatParams, ContentId, JobId, JobResult, ModelCap, MontagePlan, PlanMusic,
    PlanSource, SceneDetector, SceneList, SceneOptions, ShardResult,
};

use super::grid::Pace;
use super::plan::{make_plan, Settings, SourceFacts};
use super::render::{Clip, Render};
use super::Params;
use crate::engine::encode::{available_codecs, encoder_available};
use crate::engine::probe::{identify, probe_cached};
use crate::engine::MediaError;
use crate::jobs::beats::driver::BeatsDriver;
use crate::jobs::kind::MeshBlobs;
use crate::jobs::scenes::driver::ScenesDriver;

/// Where the job is.
enum Phase {
    Analysis,
    /// The scene cascade's network stage, after the analysis stage left blocks undecided.
    SceneNetwork,
    Render,
}

/// The montage's scene detector: the cascade (the content detector with a note when no node
/// holds the network's weights), so shots keep clear of dissolves and fades too.
fn scene_options() -> SceneOptions {
    SceneOptions {
        detector: SceneDetector::Auto {
            threshold: 27.0,
            neural_threshold: 0.5,
        },
        ..SceneOptions::default()
    }
}

/// One sub-driver's part of the analysis stage: its shards are numbered from `base`.
struct Part {
    base: u32,
    count: u32,
}

/// Plans and assembles one montage.
pub struct MontageDriver {
    cache: Cache,
    p: Params,
    peer: String,
    job: Option<JobId>,
    phase: Phase,
    clips: Vec<Clip>,
    notes: Vec<String>,
    scenes: ScenesDriver,
    beats: BeatsDriver,
    parts: Option<(Part, Part)>,
    lists: Option<Vec<SceneList>>,
    grid: Option<BeatGrid>,
    music_id: Option<ContentId>,
    render: Option<Render>,
    /// Notes already shown with the analysis stage.
    reported: Vec<String>,
    chunk_seconds: f64,
    /// The shot-boundary network's weights and the mesh to fetch them from.
    model: Option<ModelCap>,
    mesh: Option<MeshBlobs>,
    /// The scenes' network stage: its shards are the scenes driver's shifted past every index
    /// the analysis stage used.
    net: Option<NetStage>,
}

/// Where the scenes' network stage sits among the job's shard indices.
#[derive(Clone, Copy)]
struct NetStage {
    shift: u32,
    /// One past its highest index.
    end: u32,
}

fn media(e: MediaError) -> JobError {
    JobError(e.to_string())
}

impl MontageDriver {
    /// `chunk_seconds`: the length of the scene analysis shards.
    pub fn new(cache: Cache, p: Params, peer: String, chunk_seconds: f64) -> Self {
        let scenes = ScenesDriver::new(
            cache.clone(),
            Vec::new(),
            scene_options(),
            chunk_seconds,
            peer.clone(),
        )
        .with_looks();
        let beats = BeatsDriver::new(cache.clone(), vec![p.music.clone()], BeatParams::default());
        Self {
            cache,
            p,
            peer,
            job: None,
            phase: Phase::Analysis,
            clips: Vec::new(),
            notes: Vec::new(),
            scenes,
            beats,
            parts: None,
            lists: None,
            grid: None,
            music_id: None,
            render: None,
            reported: Vec::new(),
            chunk_seconds,
            model: None,
            mesh: None,
            net: None,
        }
    }

    /// The scenes driver's next stage, its indices moved past `used` (the job's indices so far).
    fn scene_network(&mut self, plan: Plan, used: u32) -> Plan {
        let Plan::Shards(stage) = plan else {
            return plan;
        };
        let lo = stage
            .shards
            .iter()
            .map(|s| s.index)
            .chain(stage.done.iter().map(|d| d.index))
            .min()
            .unwrap_or(used);
        let shift = used.saturating_sub(lo);
        let stage = shifted(stage, shift);
        self.net = Some(NetStage {
            shift,
            end: count(&stage).max(used),
        });
        self.phase = Phase::SceneNetwork;
        Plan::Shards(stage)
    }

    /// The shot-boundary network's weights, when a node of the mesh holds them: the scene
    /// analysis then runs the cascade's network where the scores cannot settle a boundary.
    pub fn with_model(mut self, model: Option<ModelCap>, mesh: Option<MeshBlobs>) -> Self {
        self.model = model;
        self.mesh = mesh;
        self
    }

    /// Identify and probe every clip; a clip that cannot be read is skipped with a note.
    fn read_clips(&mut self, paths: &[PathBuf]) -> Result<(), JobError> {
        let mut skipped = Vec::new();
        for path in paths {
            let got = identify(&self.cache, path).and_then(|ident| {
                probe_cached(&self.cache, path, &ident.id).map(|(probe, _)| (ident.id, probe))
            });
            match got {
                Ok((id, probe)) if probe.frames > 0 => self.clips.push(Clip {
                    path: path.clone(),
                    id,
                    probe,
                }),
                Ok(_) => skipped.push(format!("{}: no video frames", path.display())),
                Err(e) => skipped.push(e.to_string()),
            }
        }
        for s in &skipped {
            self.notes.push(format!("skipped a clip: {s}"));
        }
        if self.clips.is_empty() {
            return Err(JobError(match skipped.first() {
                Some(first) => format!(
                    "no usable clips ({} skipped; first: {first})",
                    skipped.len()
                ),
                None => "a montage needs at least one clip".into(),
            }));
        }
        Ok(())
    }

    /// Output size and rate: asked for, or those of the most common clip format.
    fn format(&self) -> (u32, u32, rendermesh_protocol::Rational) {
        let mut counts: Vec<((u32, u32, rendermesh_protocol::Rational), usize)> = Vec::new();
        for c in &self.clips {
            let (w, h) = c.probe.display_size();
            let key = (w & !1, h & !1, standard_rate(c.probe.fps));
            match counts.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => counts.push((key, 1)),
            }
        }
        let common = counts
            .iter()
            .max_by_key(|(k, n)| (*n, k.0 as u64 * k.1 as u64))
            .map(|(k, _)| *k)
            .unwrap_or((1280, 720, rendermesh_protocol::Rational::new(30, 1)));
        let (w, h) = self.p.size.unwrap_or((common.0, common.1));
        (w, h, self.p.fps.unwrap_or(common.2))
    }

    /// Stage 2: the plan, from the scene lists, frame looks and the beat grid.
    fn make_plan(&mut self) -> Result<MontagePlan, JobError> {
        let grid = self
            .grid
            .clone()
            .ok_or_else(|| JobError("no beat grid for the song".into()))?;
        if grid.beats.is_empty() {
            return Err(JobError(format!(
                "{}: no beats found ({}); a montage cuts on beats",
                self.p.music.display(),
                grid.note.as_deref().unwrap_or("no rhythm")
            )));
        }
        let start = self.p.start_s;
        if start >= grid.duration_s {
            return Err(JobError(format!(
                "--start {start} s is beyond the end of {} ({:.1} s)",
                self.p.music.display(),
                grid.duration_s
            )));
        }
        let left = grid.duration_s - start;
        let length = match self.p.length_s {
            Some(l) if l > left + 1e-6 => {
                return Err(JobError(format!(
                    "--length {l} s is longer than {} from {start} s to its end ({left:.1} s)",
                    self.p.music.display()
                )))
            }
            Some(l) => l,
            None => left.min(60.0),
        };
        let (width, height, fps) = self.format();
        let frames = (length * fps.as_f64()).round() as u64;
        let lists = self.lists.clone().unwrap_or_default();
        let looks = self.scenes.looks();
        let mut sources = Vec::with_capacity(self.clips.len());
        for (i, c) in self.clips.iter().enumerate() {
            let list = lists.get(i);
            let times = c.probe.sorted_pts();
            let tb = c.probe.time_base.as_f64();
            let at = |frame: u64| -> f64 {
                times
                    .get(frame as usize)
                    .map_or(0.0, |p| (p - c.probe.start_pts) as f64 * tb)
            };
            let cuts = list.map(|l| l.cuts.clone()).unwrap_or_default();
            let file_looks = looks.iter().find(|l| l.input == c.id);
            sources.push(SourceFacts {
                source: PlanSource {
                    path: c.path.clone(),
                    id: c.id.to_string(),
                    width: c.probe.width,
                    height: c.probe.height,
                    rotation: c.probe.rotation,
                    fps: c.probe.fps,
                    frames: c.probe.frames,
                    duration_s: c.probe.duration_s(),
                    has_audio: c.probe.audio.is_some(),
                    cuts: cuts.clone(),
                },
                cut_times: cuts.iter().map(|&f| at(f)).collect(),
                transitions: list
                    .map(|l| {
                        l.transitions
                            .iter()
                            // a transition that runs to the last frame ends with the clip
                            .map(|t| {
                                let end = if t.end >= c.probe.frames {
                                    c.probe.duration_s()
                                } else {
                                    at(t.end)
                                };
                                (at(t.first), end)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                looks: file_looks
                    .map(|l| l.looks.iter().map(|x| (at(x.frame), *x)).collect())
                    .unwrap_or_default(),
            });
        }
        let music = PlanMusic {
            path: self.p.music.clone(),
            id: self.music_id.map(|m| m.to_string()).unwrap_or_default(),
            start_s: start,
            duration_s: grid.duration_s,
            tempo_bpm: grid.tempo_bpm as f32,
        };
        let settings = Settings {
            width,
            height,
            fps,
            frames,
            pace: self.p.pace.parse::<Pace>().map_err(JobError)?,
            seed: self.p.seed,
            allow_reuse: self.p.allow_reuse,
        };
        let mut plan = make_plan(&settings, music, &grid, sources).map_err(JobError)?;
        plan.notes.splice(0..0, self.notes.iter().cloned());
        Ok(plan)
    }

    /// Stage 3: the render shards of `plan`.
    fn start_render(&mut self, job: JobId, plan: MontagePlan) -> Result<Plan, JobError> {
        let plan_notes = plan.notes.clone();
        let base = self
            .parts
            .as_ref()
            .map_or(0, |(_, b)| b.base + b.count)
            .max(self.net.map_or(0, |n| n.end));
        let mut render = Render::new(
            self.cache.clone(),
            plan,
            self.p.options.clone(),
            self.p.container.clone(),
        );
        let mut stage = render.plan(job, base, &self.clips)?;
        // what the plan says that the analysis stage did not already
        stage.notes = plan_notes
            .into_iter()
            .filter(|n| !self.reported.contains(n))
            .collect();
        self.render = Some(render);
        self.phase = Phase::Render;
        Ok(Plan::Shards(stage))
    }
}

/// A measured average rate snapped to the standard rate within 1 % of it.
pub fn standard_rate(r: rendermesh_protocol::Rational) -> rendermesh_protocol::Rational {
    use rendermesh_protocol::Rational;
    const STANDARD: [Rational; 8] = [
        Rational::new(24000, 1001),
        Rational::new(24, 1),
        Rational::new(25, 1),
        Rational::new(30000, 1001),
        Rational::new(30, 1),
        Rational::new(50, 1),
        Rational::new(60000, 1001),
        Rational::new(60, 1),
    ];
    let f = r.as_f64();
    STANDARD
        .into_iter()
        .min_by(|a, b| (a.as_f64() - f).abs().total_cmp(&(b.as_f64() - f).abs()))
        .filter(|s| (s.as_f64() - f).abs() <= 0.01 * f)
        .unwrap_or(r)
}

/// Shift the indices of a sub-driver's stage by `base`.
fn shifted(mut stage: Stage, base: u32) -> Stage {
    for s in &mut stage.shards {
        s.index += base;
    }
    for d in &mut stage.done {
        d.index += base;
    }
    stage
}

fn count(stage: &Stage) -> u32 {
    stage
        .shards
        .iter()
        .map(|s| s.index + 1)
        .chain(stage.done.iter().map(|d| d.index + 1))
        .max()
        .unwrap_or(0)
}

impl JobDriver for MontageDriver {
    fn abandon(&mut self) {
        self.scenes.abandon();
        self.beats.abandon();
        if let Some(render) = self.render.as_mut() {
            render.abandon();
        }
    }

    fn plan(&mut self, job: JobId) -> Result<Plan, JobError> {
        self.job = Some(job);
        let codec = self.p.options.codec;
        if !encoder_available(codec) {
            return Err(JobError(format!(
                "encoder {} for --codec {} is not in this FFmpeg build (available: {})",
                codec.encoder_name(),
                codec.name(),
                available_codecs().join(", ")
            )));
        }
        if let Some(plan) = self.p.from_plan.clone() {
            plan.validate()
                .map_err(|e| JobError(format!("the plan does not hold: {e}")))?;
            if !crate::engine::source::metadata(&plan.music.path).is_ok_and(|m| m.is_file()) {
                return Err(JobError(format!(
                    "{}: no such file (the plan's song)",
                    plan.music.path.display()
                )));
            }
            let paths: Vec<PathBuf> = plan.sources.iter().map(|s| s.path.clone()).collect();
            self.read_clips(&paths)?;
            if self.clips.len() != plan.sources.len() {
                return Err(JobError(format!(
                    "the plan names {} clips and only {} can be read: {}",
                    plan.sources.len(),
                    self.clips.len(),
                    self.notes.join("; ")
                )));
            }
            for (c, s) in self.clips.iter().zip(&plan.sources) {
                if c.id.to_string() != s.id {
                    return Err(JobError(format!(
                        "{}: the file has changed since the plan was made",
                        c.path.display()
                    )));
                }
            }
            return self.start_render(job, plan);
        }
        let clips = self.p.clips.clone();
        self.read_clips(&clips)?;
        let music = identify(&self.cache, &self.p.music).map_err(media)?;
        self.music_id = Some(music.id);
        self.scenes = ScenesDriver::new(
            self.cache.clone(),
            self.clips.iter().map(|c| c.path.clone()).collect(),
            scene_options(),
            self.chunk_seconds,
            self.peer.clone(),
        )
        .with_looks()
        .with_model(self.model.clone(), self.mesh.clone());
        let mut stage = Stage {
            name: "analysis".into(),
            notes: self.notes.clone(),
            ..Stage::default()
        };
        let mut parts = (Part { base: 0, count: 0 }, Part { base: 0, count: 0 });
        match self.scenes.plan(job)? {
            Plan::Cached { result, stats } => {
                let JobResult::Scenes { lists } = result else {
                    return Err(JobError("scene analysis answered something else".into()));
                };
                self.lists = Some(lists);
                stage.stats.cache_hits += stats.cache_hits;
                stage.stats.hashed_bytes += stats.hashed_bytes;
            }
            Plan::Shards(s) => {
                parts.0.count = count(&s);
                merge(&mut stage, s);
            }
        }
        parts.1.base = parts.0.count;
        match self.beats.plan(job)? {
            Plan::Cached { result, stats } => {
                let JobResult::Beats { grids } = result else {
                    return Err(JobError("beat analysis answered something else".into()));
                };
                self.grid = grids.into_iter().next();
                stage.stats.cache_hits += stats.cache_hits;
            }
            Plan::Shards(s) => {
                parts.1.count = count(&s);
                merge(&mut stage, shifted(s, parts.1.base));
            }
        }
        self.parts = Some(parts);
        if self.lists.is_some() && self.grid.is_some() {
            // nothing to analyse: the notes go with the render stage
            let plan = self.make_plan()?;
            return self.start_render(job, plan);
        }
        self.reported = stage.notes.clone();
        Ok(Plan::Shards(stage))
    }

    fn finish(&mut self, results: Vec<ShardResult>) -> Result<Finish, JobError> {
        let job = self
            .job
            .ok_or_else(|| JobError("finish before plan".into()))?;
        match self.phase {
            Phase::Analysis => {
                let (scenes, beats) = self
                    .parts
                    .as_ref()
                    .map(|(_, b)| b.base)
                    .map(|base| {
                        let (a, b): (Vec<_>, Vec<_>) =
                            results.into_iter().partition(|r| r.index < base);
                        (a, b)
                    })
                    .unwrap_or_default();
                let mut next = None;
                if self.lists.is_none() {
                    match self.scenes.finish(scenes)? {
                        Finish::Done(JobResult::Scenes { lists }, _) => self.lists = Some(lists),
                        Finish::Next(plan) => next = Some(plan),
                        _ => return Err(JobError("scene analysis did not end".into())),
                    }
                }
                if self.grid.is_none() {
                    let base = self.parts.as_ref().map_or(0, |(_, b)| b.base);
                    let beats = beats
                        .into_iter()
                        .map(|mut r| {
                            r.index -= base;
                            r
                        })
                        .collect();
                    match self.beats.finish(beats)? {
                        Finish::Done(JobResult::Beats { grids }, _) => {
                            self.grid = grids.into_iter().next()
                        }
                        _ => return Err(JobError("beat analysis did not end".into())),
                    }
                }
                if let Some(plan) = next {
                    let used = self.parts.as_ref().map_or(0, |(_, b)| b.base + b.count);
                    return Ok(Finish::Next(self.scene_network(plan, used)));
                }
                let plan = self.make_plan()?;
                Ok(Finish::Next(self.start_render(job, plan)?))
            }
            Phase::SceneNetwork => {
                let net = self
                    .net
                    .ok_or_else(|| JobError("the scenes' network stage was not planned".into()))?;
                let results = results
                    .into_iter()
                    .map(|mut r| {
                        r.index = r.index.saturating_sub(net.shift);
                        r
                    })
                    .collect();
                match self.scenes.finish(results)? {
                    Finish::Done(JobResult::Scenes { lists }, _) => {
                        self.lists = Some(lists);
                        let plan = self.make_plan()?;
                        Ok(Finish::Next(self.start_render(job, plan)?))
                    }
                    Finish::Next(plan) => Ok(Finish::Next(self.scene_network(plan, net.end))),
                    _ => Err(JobError("scene analysis did not end".into())),
                }
            }
            Phase::Render => {
                let render = self
                    .render
                    .as_mut()
                    .ok_or_else(|| JobError("render before its plan".into()))?;
                render.finish(results)
            }
        }
    }

    fn shard_done(&mut self, result: &ShardResult) {
        match (&self.phase, self.parts.as_ref()) {
            (Phase::Analysis, Some((_, b))) if result.index >= b.base => {
                let mut r = result.clone();
                r.index -= b.base;
                self.beats.shard_done(&r);
            }
            (Phase::Analysis, _) => self.scenes.shard_done(result),
            (Phase::SceneNetwork, _) => {
                let mut r = result.clone();
                r.index = r.index.saturating_sub(self.net.map_or(0, |n| n.shift));
                self.scenes.shard_done(&r);
            }
            (Phase::Render, _) => {
                if let Some(r) = self.render.as_mut() {
                    r.shard_done(result);
                }
            }
        }
    }
}

fn merge(into: &mut Stage, s: Stage) {
    into.shards.extend(s.shards);
    into.done.extend(s.done);
    into.frames_total += s.frames_total;
    into.stats.cache_hits += s.stats.cache_hits;
    into.stats.hashed_bytes += s.stats.hashed_bytes;
    into.notes.extend(s.notes);
}
