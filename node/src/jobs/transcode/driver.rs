//! The transcode driver: probe, cut at keyframes into chunk blobs, one encode shard per chunk,
//! then concatenate the segments and mux the source audio once.

use std::path::PathBuf;

use rendermesh_cache::{Cache, PinGuard};
use rendermesh_mesh::{Finish, JobDriver, JobError, Plan, Stage};
use rendermesh_protocol::{
    codec, CacheKey, CacheKind, ContentId, EncodeOptions, FrameRange, JobId, JobResult,
    ShardOutput, ShardResult, ShardSpec, ShardTask, WorkStats,
};

use crate::engine::chunk::{plan_chunks_tapered, write_chunks};
use crate::engine::concat::{concat, JoinOptions};
use crate::engine::encode::{available_codecs, encoder_available};
use crate::engine::probe::{identify, probe_cached, Probe};
use crate::engine::{MediaError, ENGINE_VERSION};
use crate::jobs::calibrate::verify_encoder;
use crate::jobs::kind::{one_blob_each, release_blobs, remember_output};
use crate::jobs::video::{video_class, video_cost};

/// Plans and assembles one transcode.
pub struct TranscodeDriver {
    cache: Cache,
    input: PathBuf,
    options: EncodeOptions,
    /// Output container (muxer name).
    container: String,
    chunk_seconds: f64,
    probe: Option<Probe>,
    /// This job's chunk blobs, pinned so a blob-store quota cannot evict them mid-job.
    chunks: Vec<PinGuard>,
    /// Segment cache key of each shard, by index.
    segment_keys: Vec<CacheKey>,
    /// The segments of this job (reused from an interrupted run, or arrived), pinned until
    /// the join.
    segments: Vec<PinGuard>,
    /// Live peers and the encoders each verified by a test encode.
    peer_encoders: Vec<(String, Vec<String>)>,
}

impl TranscodeDriver {
    pub fn new(
        cache: Cache,
        input: PathBuf,
        options: EncodeOptions,
        container: String,
        chunk_seconds: f64,
    ) -> Self {
        Self {
            cache,
            input,
            options,
            container,
            chunk_seconds,
            probe: None,
            chunks: Vec::new(),
            segment_keys: Vec::new(),
            segments: Vec::new(),
            peer_encoders: Vec::new(),
        }
    }

    /// The mesh's other nodes (name, verified encoders): a requested encoder that cannot run
    /// here is kept when one of them verified it, and only they bid for its shards.
    pub fn with_peer_encoders(mut self, peers: Vec<(String, Vec<String>)>) -> Self {
        self.peer_encoders = peers;
        self
    }

    /// Key of the segment of the shard encoding `range` of input `id` with our options.
    fn segment_key(&self, id: &ContentId, range: &FrameRange) -> CacheKey {
        let params = codec::canonical(&(
            &self.options,
            range.start_pts,
            range.end_pts,
            range.time_base,
        ));
        CacheKey::derive(CacheKind::Segment, ENGINE_VERSION, &params, id)
    }

    /// A segment an earlier (interrupted) run of this job left here.
    fn reusable(&self, key: &CacheKey) -> Option<(ContentId, u64)> {
        let out = self.cache.entries.get::<ShardOutput>(key).ok().flatten()?;
        match out.blobs.as_slice() {
            [b] if self.cache.blobs.contains(&b.id) => Some((b.id, b.bytes)),
            _ => None,
        }
    }

    /// The job's chunks and segments are no longer needed here (another job on the same
    /// file may still need the same blobs: those stay).
    fn cleanup(&mut self, pins: Vec<PinGuard>) {
        let mine = self.chunks.drain(..).chain(self.segments.drain(..));
        release_blobs(&self.cache, mine.chain(pins).collect());
    }
}

impl JobDriver for TranscodeDriver {
    fn abandon(&mut self) {
        self.cleanup(Vec::new());
    }

    fn plan(&mut self, job: JobId) -> Result<Plan, JobError> {
        let notes = settle_encoder(&mut self.options, &self.cache, &self.peer_encoders)?;
        let err = |e: MediaError| JobError(e.to_string());
        let ident = identify(&self.cache, &self.input).map_err(err)?;
        let (probe, _) = probe_cached(&self.cache, &self.input, &ident.id).map_err(err)?;
        let plans = plan_chunks_tapered(&probe, self.chunk_seconds);
        self.segment_keys = plans
            .iter()
            .map(|p| self.segment_key(&ident.id, &p.range))
            .collect();
        // segments of an interrupted run of the same job: only the missing shards run
        let mut done = Vec::new();
        let mut want = Vec::with_capacity(plans.len());
        for (plan, key) in plans.iter().zip(&self.segment_keys) {
            match self.reusable(key) {
                Some((id, bytes)) => {
                    self.segments.push(self.cache.blobs.pin(&id));
                    done.push(ShardResult {
                        job,
                        index: plan.index,
                        peer: "(resumed)".into(),
                        output: ShardOutput::blob(id, bytes),
                        stats: WorkStats::default(),
                    });
                    want.push(false);
                }
                None => want.push(true),
            }
        }
        let written =
            write_chunks(&self.input, &probe, &plans, &want, &self.cache.blobs).map_err(err)?;
        let mut shards = Vec::with_capacity(plans.len());
        for ((plan, w), wanted) in plans.iter().zip(written).zip(&want) {
            if !wanted {
                continue;
            }
            let Some((chunk, bytes)) = w else {
                return Err(JobError(format!(
                    "{}: chunk {} was not cut",
                    self.input.display(),
                    plan.index
                )));
            };
            self.chunks.push(self.cache.blobs.pin(&chunk));
            let family = format!("encode/{}", self.options.encoder_name());
            shards.push(ShardSpec {
                job,
                index: plan.index,
                task: ShardTask::Encode {
                    range: plan.range,
                    options: self.options.clone(),
                },
                class: video_class(&family, probe.width, probe.height),
                // a named (hardware) encoder runs only where it passed its test encode
                required: self.options.encoder.is_some(),
                inputs: vec![chunk],
                cost: video_cost(plan.range.frames, probe.width, probe.height, bytes),
            });
        }
        tracing::info!(
            file = %self.input.display(),
            frames = probe.frames,
            seconds = probe.duration_s(),
            chunks = shards.len() + done.len(),
            resumed = done.len(),
            "transcode planned"
        );
        let frames_total = probe.frames;
        self.probe = Some(probe);
        Ok(Plan::Shards(Stage {
            name: "encode".into(),
            shards,
            done,
            frames_total,
            stats: WorkStats {
                hashed_bytes: ident.hashed_bytes,
                ..Default::default()
            },
            notes,
        }))
    }

    fn finish(&mut self, results: Vec<ShardResult>) -> Result<Finish, JobError> {
        let probe = self
            .probe
            .take()
            .ok_or_else(|| JobError("finish before plan".into()))?;
        let ids = one_blob_each(&results)?;
        let pins: Vec<PinGuard> = ids.iter().map(|id| self.cache.blobs.pin(id)).collect();
        let paths: Vec<PathBuf> = ids.iter().map(|id| self.cache.blobs.path(id)).collect();
        let tmp = self.cache.blobs.temp_path("output");
        let result = concat(
            &paths,
            &self.input,
            &probe,
            &tmp,
            &self.container,
            JoinOptions::default(),
        );
        self.cleanup(pins);
        for key in std::mem::take(&mut self.segment_keys) {
            let _ = self.cache.entries.remove(&key);
        }
        let frames = match result {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(JobError(e.to_string()));
            }
        };
        if frames != probe.frames {
            let _ = std::fs::remove_file(&tmp);
            return Err(JobError(format!(
                "{}: output has {frames} frames, source {}; not writing it",
                self.input.display(),
                probe.frames
            )));
        }
        let (output, bytes) = self
            .cache
            .blobs
            .adopt(&tmp)
            .map_err(|e| JobError(format!("storing the output: {e}")))?;
        Ok(Finish::Done(
            JobResult::Transcode {
                output,
                bytes,
                frames,
            },
            WorkStats::default(),
        ))
    }

    fn shard_done(&mut self, result: &ShardResult) {
        if let (Some(key), [_]) = (
            self.segment_keys.get(result.index as usize),
            result.output.blobs.as_slice(),
        ) {
            remember_output(&self.cache, key, &result.output);
        }
        // pinned until the join: a job on the same file that ends first leaves it in place
        for b in &result.output.blobs {
            self.segments.push(self.cache.blobs.pin(&b.id));
        }
    }
}

/// Settle which encoder a job of `options` runs: a requested (hardware) encoder must prove
/// itself here by a test encode, or be verified by one of the peers (name, verified encoders;
/// its shards then go to those), or the job falls back to the codec's software encoder with a
/// note. The software encoder must be in this FFmpeg build. Returns the notes for the user.
pub(crate) fn settle_encoder(
    options: &mut EncodeOptions,
    cache: &Cache,
    peer_encoders: &[(String, Vec<String>)],
) -> Result<Vec<String>, JobError> {
    let mut notes = Vec::new();
    if let Some(name) = options.encoder.clone() {
        let elsewhere: Vec<&str> = peer_encoders
            .iter()
            .filter(|(_, encoders)| encoders.contains(&name))
            .map(|(peer, _)| peer.as_str())
            .collect();
        // a requested (hardware) encoder must prove itself here or on a peer, or the job falls back
        let dir = cache.blobs.temp_path("verify");
        let dir = dir.parent().unwrap_or(std::path::Path::new("."));
        let elsewhere = elsewhere.join(", ");
        match verify_encoder(&name, dir) {
            Err(reason) if !elsewhere.is_empty() => {
                let note = format!(
                    "encoder {name} cannot be used on this node ({reason}); its shards go to \
                     the peers that verified it: {elsewhere}"
                );
                tracing::info!("{note}");
                notes.push(note);
            }
            Err(reason) => {
                let note = format!(
                    "encoder {name} cannot be used on this node ({reason}); falling back to {}",
                    options.codec.encoder_name()
                );
                tracing::warn!("{note}");
                notes.push(note);
                options.encoder = None;
            }
            Ok(()) => {}
        }
    }
    if options.encoder.is_none() && !encoder_available(options.codec) {
        return Err(JobError(format!(
            "encoder {} for --codec {} is not in this FFmpeg build (available: {})",
            options.codec.encoder_name(),
            options.codec.name(),
            available_codecs().join(", ")
        )));
    }
    Ok(notes)
}
