//! The batch driver: every file identified (duplicates found by content), probed, looked up
//! in the cache of finished files (here, then on the peers), cut into chunks; one stage of
//! encode shards for all files; a file's segments go to the joiner as soon as the last one
//! is in. A file whose shard fails for good fails alone.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use rendermesh_cache::{Cache, PinGuard};
use rendermesh_mesh::{Finish, JobDriver, JobError, Plan, ShardError, Stage};
use rendermesh_protocol::{
    codec, CacheKey, CacheKind, ContentId, FileOutput, ItemState, JobId, JobItem, JobResult,
    ShardOutput, ShardResult, ShardSpec, ShardTask, WorkStats,
};

use super::items::Items;
use super::join::{JoinTask, Joiner};
use super::Work;
use crate::engine::chunk::{plan_chunks, write_chunks};
use crate::engine::encode::{scaled_size, DNXHR_MIN};
use crate::engine::probe::{identify, probe_cached, Probe};
use crate::engine::ENGINE_VERSION;
use crate::jobs::kind::{release_blobs, remember_output, MeshBlobs};
use crate::jobs::transcode::driver::settle_encoder;
use crate::jobs::video::{video_class, video_cost};

/// A file up to this many chunk lengths long is one shard: cutting it would only add joins.
const WHOLE_FILE_CHUNKS: f64 = 3.0;

/// Can this work's codec encode `probe`'s frames at the size asked? DNxHR has a smallest frame.
fn fits_codec(work: &Work, probe: &Probe) -> Result<(), String> {
    let o = &work.options;
    if o.codec != rendermesh_protocol::VideoCodec::DnxHr {
        return Ok(());
    }
    let (w, h) = match o.height {
        Some(to) => scaled_size(probe.width, probe.height, ffmpeg_next::Rational(1, 1), to),
        None => (probe.width, probe.height),
    };
    let (min_w, min_h) = DNXHR_MIN;
    if w < min_w || h < min_h {
        return Err(format!(
            "DNxHR needs a frame of at least {min_w}x{min_h}; this file's would be {w}x{h} (ask for a larger --height)"
        ));
    }
    Ok(())
}

/// One distinct file (by content) of the batch.
struct FileJob {
    input: PathBuf,
    probe: Option<Probe>,
    output_key: Option<CacheKey>,
    segment_keys: Vec<CacheKey>,
    segments: Vec<Option<ContentId>>,
    chunk_pins: Vec<PinGuard>,
    segment_pins: Vec<PinGuard>,
    /// The items (inputs) this content stands for.
    items: Vec<usize>,
    /// Failed, answered from the cache, or handed to the joiner: nothing more to do here.
    over: bool,
}

impl FileJob {
    /// Its chunks' and segments' pins, to release.
    fn take_pins(&mut self) -> Vec<PinGuard> {
        self.chunk_pins
            .drain(..)
            .chain(self.segment_pins.drain(..))
            .collect()
    }
}

/// Plans and follows one batch.
pub struct BatchDriver {
    cache: Cache,
    inputs: Vec<PathBuf>,
    work: Work,
    chunk_seconds: f64,
    peer_encoders: Vec<(String, Vec<String>)>,
    mesh: Option<MeshBlobs>,
    items: Items,
    files: Vec<FileJob>,
    /// Shard index → (file, chunk position).
    shards: BTreeMap<u32, (usize, usize)>,
    joiner: Option<Joiner>,
}

impl BatchDriver {
    pub fn new(cache: Cache, inputs: Vec<PathBuf>, work: Work, chunk_seconds: f64) -> Self {
        let names = inputs.iter().map(|p| p.display().to_string()).collect();
        Self {
            cache,
            inputs,
            work,
            chunk_seconds,
            peer_encoders: Vec::new(),
            mesh: None,
            items: Items::new(names),
            files: Vec::new(),
            shards: BTreeMap::new(),
            joiner: None,
        }
    }

    /// The mesh's other nodes and their verified encoders (see [`settle_encoder`]).
    pub fn with_peer_encoders(mut self, peers: Vec<(String, Vec<String>)>) -> Self {
        self.peer_encoders = peers;
        self
    }

    /// Where finished files made on other boxes can be fetched from.
    pub fn with_mesh(mut self, mesh: Option<MeshBlobs>) -> Self {
        self.mesh = mesh;
        self
    }

    /// Key of the finished file of content `id` with this batch's work (not `keep`: a kept
    /// proxy answers a request that would not keep it, and the other way round).
    fn output_key(&self, id: &ContentId) -> CacheKey {
        let w = &self.work;
        let params = codec::canonical(&(&w.options, &w.container, w.pcm_audio));
        CacheKey::derive(CacheKind::FileOutput, ENGINE_VERSION, &params, id)
    }

    fn segment_key(&self, id: &ContentId, range: &rendermesh_protocol::FrameRange) -> CacheKey {
        let params = codec::canonical(&(
            &self.work.options,
            range.start_pts,
            range.end_pts,
            range.time_base,
        ));
        CacheKey::derive(CacheKind::Segment, ENGINE_VERSION, &params, id)
    }

    /// A finished file of this work: here, or fetched from a peer that holds it.
    fn finished(&self, key: &CacheKey) -> Option<(FileOutput, Option<String>)> {
        let out = self.cache.entries.get::<FileOutput>(key).ok().flatten()?;
        if self.cache.blobs.contains(&out.output) {
            return Some((out, None));
        }
        let mesh = self.mesh.as_ref()?;
        match mesh.fetch(out.output, out.bytes) {
            Ok(_pin) => Some((out, Some("made earlier on a peer; fetched from it".into()))),
            Err(e) => {
                tracing::debug!(blob = %out.output.short(), error = %e, "a finished file is not on any peer");
                None
            }
        }
    }

    /// A segment an interrupted run of the same work left here.
    fn reusable(&self, key: &CacheKey) -> Option<(ContentId, u64)> {
        let out = self.cache.entries.get::<ShardOutput>(key).ok().flatten()?;
        match out.blobs.as_slice() {
            [b] if self.cache.blobs.contains(&b.id) => Some((b.id, b.bytes)),
            _ => None,
        }
    }

    /// File `f` failed: its items say why, its blobs go.
    fn fail_file(&mut self, f: usize, why: &str) {
        let file = &mut self.files[f];
        if file.over {
            return;
        }
        file.over = true;
        tracing::warn!(file = %file.input.display(), error = %why, "file of a batch failed");
        self.items.fail(&file.items, why);
        release_blobs(&self.cache, file.take_pins());
    }

    /// Every segment of file `f` is in: the joiner takes it.
    fn maybe_join(&mut self, f: usize) {
        let file = &mut self.files[f];
        if file.over || file.segments.iter().any(Option::is_none) {
            return;
        }
        let (Some(probe), Some(output_key)) = (file.probe.clone(), file.output_key) else {
            return;
        };
        file.over = true;
        // the chunks are encoded: only the segments are needed now
        release_blobs(&self.cache, std::mem::take(&mut file.chunk_pins));
        let task = JoinTask {
            input: file.input.clone(),
            probe,
            segments: file.segments.iter().flatten().copied().collect(),
            pins: std::mem::take(&mut file.segment_pins),
            segment_keys: std::mem::take(&mut file.segment_keys),
            output_key,
            items: file.items.clone(),
        };
        self.items
            .update(&file.items, |it| it.state = ItemState::Running);
        let sent = match &self.joiner {
            Some(j) => j.send(task),
            None => Err("the batch was not planned".into()),
        };
        if let Err(why) = sent {
            let items = self.files[f].items.clone();
            self.items.fail(&items, &why);
        }
    }

    /// Plan one distinct file (content `id`, first named by item `items[0]`): its shards and
    /// resumed segments go into `stage`.
    fn plan_file(
        &mut self,
        job: JobId,
        id: ContentId,
        items: Vec<usize>,
        next_index: &mut u32,
        stage: &mut Stage,
    ) {
        let input = self.inputs[items[0]].clone();
        let f = self.files.len();
        self.files.push(FileJob {
            input: input.clone(),
            probe: None,
            output_key: None,
            segment_keys: Vec::new(),
            segments: Vec::new(),
            chunk_pins: Vec::new(),
            segment_pins: Vec::new(),
            items: items.clone(),
            over: false,
        });
        let probe = match probe_cached(&self.cache, &input, &id) {
            Ok((p, _)) => p,
            Err(e) => return self.fail_file(f, &e.to_string()),
        };
        if let Err(why) = fits_codec(&self.work, &probe) {
            return self.fail_file(f, &why);
        }
        let output_key = self.output_key(&id);
        if let Some((out, note)) = self.finished(&output_key) {
            self.files[f].over = true;
            self.items.update(&items, |it| {
                it.state = ItemState::Cached;
                it.output = Some(out.output);
                it.bytes = out.bytes;
                it.frames = out.frames;
                if note.is_some() {
                    it.note = note.clone();
                }
            });
            return;
        }
        let whole = probe.duration_s() <= WHOLE_FILE_CHUNKS * self.chunk_seconds;
        let plans = plan_chunks(&probe, if whole { 1e9 } else { self.chunk_seconds });
        let segment_keys: Vec<CacheKey> = plans
            .iter()
            .map(|p| self.segment_key(&id, &p.range))
            .collect();
        let mut want = Vec::with_capacity(plans.len());
        let mut segments = Vec::with_capacity(plans.len());
        let mut segment_pins = Vec::new();
        for (pos, key) in segment_keys.iter().enumerate() {
            match self.reusable(key) {
                Some((id, bytes)) => {
                    segment_pins.push(self.cache.blobs.pin(&id));
                    stage.done.push(ShardResult {
                        job,
                        index: *next_index + pos as u32,
                        peer: "(resumed)".into(),
                        output: ShardOutput::blob(id, bytes),
                        stats: WorkStats::default(),
                    });
                    segments.push(Some(id));
                    want.push(false);
                }
                None => {
                    segments.push(None);
                    want.push(true);
                }
            }
        }
        let written = match write_chunks(&input, &probe, &plans, &want, &self.cache.blobs) {
            Ok(w) => w,
            Err(e) => {
                release_blobs(&self.cache, segment_pins);
                // its resumed segments must not count for the stage either
                let first = *next_index;
                stage
                    .done
                    .retain(|r| r.index < first || r.index >= first + plans.len() as u32);
                return self.fail_file(f, &e.to_string());
            }
        };
        let family = format!("encode/{}", self.work.options.encoder_name());
        let mut chunk_pins = Vec::new();
        for (pos, (plan, w)) in plans.iter().zip(written).enumerate() {
            let index = *next_index + pos as u32;
            self.shards.insert(index, (f, pos));
            let Some((chunk, bytes)) = w else { continue };
            chunk_pins.push(self.cache.blobs.pin(&chunk));
            stage.shards.push(ShardSpec {
                job,
                index,
                task: ShardTask::Encode {
                    range: plan.range,
                    options: self.work.options.clone(),
                },
                class: video_class(&family, probe.width, probe.height),
                required: self.work.options.encoder.is_some(),
                inputs: vec![chunk],
                cost: video_cost(plan.range.frames, probe.width, probe.height, bytes),
            });
            stage.frames_total += plan.range.frames;
        }
        *next_index += plans.len() as u32;
        let resumed = segments.iter().filter(|s| s.is_some()).count() as u32;
        self.items.update(&items, |it| {
            it.frames = probe.frames;
            it.shards = plans.len() as u32;
            it.shards_done = resumed;
        });
        let file = &mut self.files[f];
        file.probe = Some(probe);
        file.output_key = Some(output_key);
        file.segment_keys = segment_keys;
        file.segments = segments;
        file.chunk_pins = chunk_pins;
        file.segment_pins = segment_pins;
        self.maybe_join(f);
    }
}

impl JobDriver for BatchDriver {
    fn plan(&mut self, job: JobId) -> Result<Plan, JobError> {
        let notes = settle_encoder(&mut self.work.options, &self.cache, &self.peer_encoders)?;
        self.joiner = Some(Joiner::start(
            self.cache.clone(),
            self.work.clone(),
            self.items.clone(),
        ));
        let mut stage = Stage {
            name: "encode".into(),
            notes,
            ..Stage::default()
        };
        // every input identified first: the same content under two names is made once
        let mut by_id: HashMap<ContentId, usize> = HashMap::new();
        let mut groups: Vec<(ContentId, Vec<usize>)> = Vec::new();
        for (i, input) in self.inputs.iter().enumerate() {
            match identify(&self.cache, input) {
                Ok(ident) => {
                    stage.stats.hashed_bytes += ident.hashed_bytes;
                    match by_id.get(&ident.id) {
                        Some(&g) => {
                            let first = self.inputs[groups[g].1[0]].display().to_string();
                            self.items.update(&[i], |it| {
                                it.note = Some(format!("same content as {first}"))
                            });
                            groups[g].1.push(i);
                        }
                        None => {
                            by_id.insert(ident.id, groups.len());
                            groups.push((ident.id, vec![i]));
                        }
                    }
                }
                Err(e) => self.items.fail(&[i], &e.to_string()),
            }
        }
        let mut next_index = 0u32;
        for (id, items) in groups {
            self.plan_file(job, id, items, &mut next_index, &mut stage);
        }
        tracing::info!(
            files = self.inputs.len(),
            distinct = self.files.len(),
            shards = stage.shards.len(),
            resumed = stage.done.len(),
            "batch planned"
        );
        Ok(Plan::Shards(stage))
    }

    fn finish(&mut self, _results: Vec<ShardResult>) -> Result<Finish, JobError> {
        if let Some(mut j) = self.joiner.take() {
            j.wait();
        }
        for f in 0..self.files.len() {
            if !self.files[f].over {
                self.fail_file(f, "not every shard of the file came back");
            }
        }
        let items = self.items.snapshot();
        let failed = items.iter().filter(|i| !i.state.is_ok()).count();
        tracing::info!(files = items.len(), failed, "batch finished");
        Ok(Finish::Done(
            JobResult::Batch { items },
            WorkStats::default(),
        ))
    }

    fn shard_done(&mut self, result: &ShardResult) {
        let Some(&(f, pos)) = self.shards.get(&result.index) else {
            return;
        };
        if self.files[f].over {
            // its file failed meanwhile: the segment is not needed
            let pins = result
                .output
                .blobs
                .iter()
                .map(|b| self.cache.blobs.pin(&b.id))
                .collect();
            release_blobs(&self.cache, pins);
            return;
        }
        let [b] = result.output.blobs.as_slice() else {
            let n = result.output.blobs.len();
            return self.fail_file(f, &format!("a shard returned {n} blobs, not one segment"));
        };
        let file = &mut self.files[f];
        if let Some(key) = file.segment_keys.get(pos) {
            remember_output(&self.cache, key, &result.output);
        }
        file.segment_pins.push(self.cache.blobs.pin(&b.id));
        file.segments[pos] = Some(b.id);
        let items = file.items.clone();
        self.items.update(&items, |it| {
            it.state = ItemState::Running;
            it.shards_done += 1;
        });
        self.maybe_join(f);
    }

    fn shard_failed(&mut self, index: u32, error: &ShardError) -> bool {
        let Some(&(f, _)) = self.shards.get(&index) else {
            return false;
        };
        self.fail_file(f, &error.message);
        true
    }

    fn items(&mut self) -> Option<Vec<JobItem>> {
        self.items.take_changed()
    }
}

impl Drop for BatchDriver {
    fn drop(&mut self) {
        // a job stopped half-way: the joiner finishes what it has, the blobs go
        if let Some(mut j) = self.joiner.take() {
            j.wait();
        }
        for file in &mut self.files {
            release_blobs(&self.cache, file.take_pins());
        }
    }
}
