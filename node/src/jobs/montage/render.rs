//! Stage 3 of a montage: one render shard per shot, then the join.
//!
//! Each shot needs a short range of one source. The coordinator cuts its sources at clean
//! keyframes about a second apart, by stream copy, and a shard gets only the chunks its range
//! touches (moved by hash; chunks shared by two shots are one blob). The shard decodes them,
//! picks the frame on screen at each output frame's time, conforms it (rotation, aspect,
//! size, range) and encodes. The join copies the segments in order and muxes the song once.

use std::path::PathBuf;

use rendermesh_cache::{Cache, PinGuard};
use rendermesh_mesh::{Finish, JobError, Stage};
use rendermesh_protocol::{
    codec, CacheKey, CacheKind, ContentId, EncodeOptions, Fit, JobId, JobResult, MontagePlan,
    RenderSpec, ShardOutput, ShardResult, ShardSpec, ShardTask, WorkStats,
};

use crate::engine::assemble::join_montage;
use crate::engine::chunk::{plan_chunks, write_chunks};
use crate::engine::probe::Probe;
use crate::engine::ENGINE_VERSION;
use crate::jobs::kind::{one_blob_each, release_blobs, remember_output};
use crate::jobs::video::{video_class, video_cost};

/// Source chunks are cut at clean keyframes at least this far apart.
const CHUNK_S: f64 = 1.0;
/// Fade-out of the song at the end, seconds.
pub const FADE_S: f64 = 1.0;

/// A clip the montage may use: where it is, what it is.
#[derive(Clone, Debug)]
pub struct Clip {
    pub path: PathBuf,
    pub id: ContentId,
    pub probe: Probe,
}

/// The render stage of one montage.
pub struct Render {
    cache: Cache,
    plan: MontagePlan,
    options: EncodeOptions,
    container: String,
    /// Index of the first render shard.
    base: u32,
    chunks: Vec<PinGuard>,
    segments: Vec<PinGuard>,
    keys: Vec<Option<CacheKey>>,
}

/// How a source fits the frame: cropped to fill when it has the output's orientation,
/// letterboxed when not (a portrait clip in a landscape montage).
pub fn fit_for(display: (u32, u32), out: (u32, u32)) -> Fit {
    let portrait = |(w, h): (u32, u32)| h > w;
    if portrait(display) == portrait(out) {
        Fit::Fill
    } else {
        Fit::Fit
    }
}

impl Render {
    pub fn new(cache: Cache, plan: MontagePlan, options: EncodeOptions, container: String) -> Self {
        Self {
            cache,
            plan,
            options,
            container,
            base: 0,
            chunks: Vec::new(),
            segments: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// The render shards, numbered from `base`; `clips` are the plan's sources in order.
    pub fn plan(&mut self, job: JobId, base: u32, clips: &[Clip]) -> Result<Stage, JobError> {
        self.base = base;
        self.keys = vec![None; self.plan.segments.len()];
        let plan = &self.plan;
        let fps = plan.fps_f64();
        let out = (plan.width, plan.height);
        let mut shards: Vec<Option<ShardSpec>> = vec![None; plan.segments.len()];
        let mut done = Vec::new();
        for (si, clip) in clips.iter().enumerate() {
            let segs: Vec<usize> = (0..plan.segments.len())
                .filter(|&i| plan.segments[i].source == si)
                .collect();
            if segs.is_empty() {
                continue;
            }
            let probe = &clip.probe;
            let tb = probe.time_base.as_f64();
            let chunks = plan_chunks(probe, CHUNK_S);
            let chunk_start = |c: &crate::engine::chunk::ChunkPlan| c.range.start_pts as f64 * tb;
            let mut want = vec![false; chunks.len()];
            let mut needs: Vec<(usize, std::ops::RangeInclusive<usize>, RenderSpec)> = Vec::new();
            for &i in &segs {
                let seg = &plan.segments[i];
                let t0 = probe.start_pts as f64 * tb + seg.src_start as f64 / fps;
                let t_last = t0 + (seg.frames.saturating_sub(1)) as f64 / fps;
                let find = |t: f64| {
                    chunks
                        .iter()
                        .rposition(|c| chunk_start(c) <= t + 1e-6)
                        .unwrap_or(0)
                };
                let (a, b) = (find(t0), find(t_last));
                let display = probe.display_size();
                let spec = RenderSpec {
                    width: plan.width,
                    height: plan.height,
                    fps: plan.fps,
                    frames: seg.frames as u32,
                    start_s: t0,
                    rotation: probe.rotation,
                    fit: fit_for(display, out),
                };
                let key = CacheKey::derive(
                    CacheKind::Segment,
                    ENGINE_VERSION,
                    &codec::canonical(&("montage", &spec, &self.options)),
                    &clip.id,
                );
                if let Some((id, bytes)) = self.reusable(&key) {
                    self.segments.push(self.cache.blobs.pin(&id));
                    done.push(ShardResult {
                        job,
                        index: base + i as u32,
                        peer: "(resumed)".into(),
                        output: ShardOutput::blob(id, bytes),
                        stats: WorkStats::default(),
                    });
                } else {
                    for w in &mut want[a..=b] {
                        *w = true;
                    }
                    needs.push((i, a..=b, spec));
                }
                self.keys[i] = Some(key);
            }
            if needs.is_empty() {
                continue;
            }
            let written = write_chunks(&clip.path, probe, &chunks, &want, &self.cache.blobs)
                .map_err(|e| JobError(e.to_string()))?;
            for (id, _) in written.iter().flatten() {
                self.chunks.push(self.cache.blobs.pin(id));
            }
            for (i, range, spec) in needs {
                let mut inputs = Vec::new();
                let mut ranges = Vec::new();
                let mut bytes = 0;
                for c in range {
                    let Some((id, b)) = written.get(c).copied().flatten() else {
                        return Err(JobError(format!(
                            "{}: chunk {c} was not cut",
                            clip.path.display()
                        )));
                    };
                    inputs.push(id);
                    ranges.push(chunks[c].range);
                    bytes += b;
                }
                let family = format!("encode/{}", self.options.encoder_name());
                shards[i] = Some(ShardSpec {
                    job,
                    index: base + i as u32,
                    class: video_class(&family, plan.width, plan.height),
                    required: false,
                    inputs,
                    cost: video_cost(spec.frames as u64, plan.width, plan.height, bytes),
                    task: ShardTask::MontageRender {
                        chunks: ranges,
                        spec,
                        options: self.options.clone(),
                    },
                });
            }
        }
        Ok(Stage {
            name: "render".into(),
            shards: shards.into_iter().flatten().collect(),
            done,
            frames_total: plan.frames,
            stats: WorkStats::default(),
            notes: Vec::new(),
        })
    }

    fn reusable(&self, key: &CacheKey) -> Option<(ContentId, u64)> {
        let out = self.cache.entries.get::<ShardOutput>(key).ok().flatten()?;
        match out.blobs.as_slice() {
            [b] if self.cache.blobs.contains(&b.id) => Some((b.id, b.bytes)),
            _ => None,
        }
    }

    /// Remember a finished segment for a resumed job, and keep it until the join.
    /// The montage was cancelled or failed: its chunks and shots go (unless another job
    /// holds them).
    pub fn abandon(&mut self) {
        let mine = self.chunks.drain(..).chain(self.segments.drain(..));
        release_blobs(&self.cache, mine.collect());
    }

    pub fn shard_done(&mut self, result: &ShardResult) {
        let i = result.index.wrapping_sub(self.base) as usize;
        if let (Some(Some(key)), [_]) = (self.keys.get(i), result.output.blobs.as_slice()) {
            remember_output(&self.cache, key, &result.output);
        }
        for b in &result.output.blobs {
            self.segments.push(self.cache.blobs.pin(&b.id));
        }
    }

    /// Join the segments (results in shard order) and mux the song.
    pub fn finish(&mut self, results: Vec<ShardResult>) -> Result<Finish, JobError> {
        let ids = one_blob_each(&results)?;
        if ids.len() != self.plan.segments.len() {
            return Err(JobError(format!(
                "{} segments rendered for {} shots",
                ids.len(),
                self.plan.segments.len()
            )));
        }
        let pins: Vec<PinGuard> = ids.iter().map(|id| self.cache.blobs.pin(id)).collect();
        let paths: Vec<PathBuf> = ids.iter().map(|id| self.cache.blobs.path(id)).collect();
        let tmp = self.cache.blobs.temp_path("montage");
        let joined = join_montage(
            &paths,
            self.plan.fps,
            &self.plan.music.path,
            self.plan.music.start_s,
            FADE_S,
            &tmp,
            &self.container,
        );
        let mine = self.chunks.drain(..).chain(self.segments.drain(..));
        release_blobs(&self.cache, mine.chain(pins).collect());
        for key in std::mem::take(&mut self.keys).into_iter().flatten() {
            let _ = self.cache.entries.remove(&key);
        }
        let frames = match joined {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(JobError(e.to_string()));
            }
        };
        if frames != self.plan.frames {
            let _ = std::fs::remove_file(&tmp);
            return Err(JobError(format!(
                "the montage has {frames} frames, its plan {}; not writing it",
                self.plan.frames
            )));
        }
        let (output, bytes) = self
            .cache
            .blobs
            .adopt(&tmp)
            .map_err(|e| JobError(format!("storing the montage: {e}")))?;
        Ok(Finish::Done(
            JobResult::Montage {
                output,
                bytes,
                frames,
                plan: Box::new(self.plan.clone()),
            },
            WorkStats::default(),
        ))
    }
}
