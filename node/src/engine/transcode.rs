//! The transcode job: probe, cut at keyframes into chunk blobs, one encode shard per chunk,
//! then concatenate the segments and mux the source audio once.

use std::path::PathBuf;

use rendermesh_cache::{Cache, PinGuard};
use rendermesh_mesh::{JobDriver, JobError, Plan};
use rendermesh_protocol::{
    ContentId, CostHint, EncodeOptions, JobId, JobResult, ShardOutput, ShardResult, ShardSpec,
    ShardTask, WorkStats,
};

use super::caps::verify_encoder;
use super::chunk::{plan_chunks, write_chunks};
use super::concat::concat;
use super::encode::{available_codecs, encoder_available};
use super::probe::{identify, probe_cached, Probe};

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
        }
    }

    fn cleanup(&mut self, segments: &[ContentId]) {
        let chunks: Vec<ContentId> = self.chunks.drain(..).map(|pin| *pin.id()).collect();
        for id in chunks.iter().chain(segments) {
            let _ = self.cache.blobs.remove(id);
        }
    }
}

impl JobDriver for TranscodeDriver {
    fn plan(&mut self, job: JobId) -> Result<Plan, JobError> {
        let mut notes = Vec::new();
        if let Some(name) = self.options.encoder.clone() {
            // a requested (hardware) encoder must prove itself here, or the job falls back
            let dir = self.cache.blobs.temp_path("verify");
            let dir = dir.parent().unwrap_or(std::path::Path::new("."));
            if let Err(reason) = verify_encoder(&name, dir) {
                let note = format!(
                    "encoder {name} cannot be used on this node ({reason}); falling back to {}",
                    self.options.codec.encoder_name()
                );
                tracing::warn!("{note}");
                notes.push(note);
                self.options.encoder = None;
            }
        }
        if self.options.encoder.is_none() && !encoder_available(self.options.codec) {
            return Err(JobError(format!(
                "encoder {} for --codec {} is not in this FFmpeg build (available: {})",
                self.options.codec.encoder_name(),
                self.options.codec.name(),
                available_codecs().join(", ")
            )));
        }
        let err = |e: super::MediaError| JobError(e.to_string());
        let ident = identify(&self.cache, &self.input).map_err(err)?;
        let (probe, _) = probe_cached(&self.cache, &self.input, &ident.id).map_err(err)?;
        let plans = plan_chunks(&probe, self.chunk_seconds);
        let want = vec![true; plans.len()];
        let written =
            write_chunks(&self.input, &probe, &plans, &want, &self.cache.blobs).map_err(err)?;
        let mut shards = Vec::with_capacity(plans.len());
        for (plan, w) in plans.iter().zip(written) {
            let Some((chunk, bytes)) = w else {
                return Err(JobError(format!(
                    "{}: chunk {} was not cut",
                    self.input.display(),
                    plan.index
                )));
            };
            self.chunks.push(self.cache.blobs.pin(&chunk));
            shards.push(ShardSpec {
                job,
                index: plan.index,
                task: ShardTask::Encode {
                    chunk,
                    range: plan.range,
                    options: self.options.clone(),
                },
                cost: CostHint {
                    frames: plan.range.frames,
                    width: probe.width,
                    height: probe.height,
                    bytes,
                },
            });
        }
        tracing::info!(
            file = %self.input.display(),
            frames = probe.frames,
            seconds = probe.duration_s(),
            chunks = shards.len(),
            "transcode planned"
        );
        let frames_total = probe.frames;
        self.probe = Some(probe);
        Ok(Plan::Shards {
            shards,
            done: Vec::new(),
            frames_total,
            stats: WorkStats {
                hashed_bytes: ident.hashed_bytes,
                ..Default::default()
            },
            notes,
        })
    }

    fn finish(&mut self, results: Vec<ShardResult>) -> Result<(JobResult, WorkStats), JobError> {
        let probe = self
            .probe
            .take()
            .ok_or_else(|| JobError("finish before plan".into()))?;
        let mut ids = Vec::with_capacity(results.len());
        for r in &results {
            match &r.output {
                ShardOutput::Blob { id, .. } => ids.push(*id),
                other => {
                    return Err(JobError(format!(
                        "shard {} returned {other:?}, not a segment",
                        r.index
                    )))
                }
            }
        }
        let pins: Vec<PinGuard> = ids.iter().map(|id| self.cache.blobs.pin(id)).collect();
        let paths: Vec<PathBuf> = ids.iter().map(|id| self.cache.blobs.path(id)).collect();
        let tmp = self.cache.blobs.temp_path("output");
        let result = concat(&paths, &self.input, &probe, &tmp, &self.container);
        drop(pins);
        self.cleanup(&ids);
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
        Ok((
            JobResult::Transcode {
                output,
                bytes,
                frames,
            },
            WorkStats::default(),
        ))
    }
}
