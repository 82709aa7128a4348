//! The scene driver's network stages: the weights held for the job, the network's shards of a
//! file (the `neural` detector's every block, the `auto` cascade's undecided ones), and the
//! cuts from their predictions.

use std::path::Path;

use rendermesh_mesh::{Finish, JobError, Plan, Stage};
use rendermesh_protocol::{
    codec, CacheKey, CacheKind, ContentId, JobId, ModelCap, NeuralScores, SceneDetector,
    SceneOptions, ShardOutput, ShardResult, ShardSpec,
};

use super::super::cascade::{decide, triage, Triage};
use super::super::detect::{content_cuts, content_score, ContentParams, FrameDelta};
use super::super::neural::{blocks_of, transitions, Predictions};
use super::super::neural_stage::{self, Chunk};
use super::{keep_list, ScenesDriver};
use crate::engine::chunk::{plan_chunks_tapered, write_chunks};
use crate::engine::probe::{probe_cached, Probe};
use crate::engine::ENGINE_VERSION;

/// Where one file's network shards go.
pub(super) struct Planned<'a> {
    pub job: JobId,
    pub shards: &'a mut Vec<ShardSpec>,
    pub done: &'a mut Vec<ShardResult>,
}

impl ScenesDriver {
    /// The weights in this node's store, fetched by id (verified) from a peer that holds them
    /// when they are not, and pinned for the job.
    pub(super) fn hold_model(&mut self, model: &ModelCap) -> Result<(), JobError> {
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
    pub(super) fn neural_model(&self) -> Result<Option<ModelCap>, JobError> {
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

    /// A network shard's predictions depend on the weights and its blocks, not on the chunks.
    fn neural_key(&self, id: &ContentId, blocks: (u64, u32), total: u64) -> CacheKey {
        let params = codec::canonical(&(
            "neural+luma",
            self.model.as_ref().map(|m| m.id),
            (blocks.0, blocks.1, total),
        ));
        CacheKey::derive(CacheKind::SceneShard, ENGINE_VERSION, &params, id)
    }

    /// The network's shards of one file over `runs` of blocks: cached predictions are
    /// answered at once, and only the chunks the others read are written. Returns the
    /// shards' indices and cache keys, in time order.
    pub(super) fn plan_network(
        &mut self,
        to: &mut Planned<'_>,
        path: &Path,
        id: &ContentId,
        probe: &Probe,
        runs: &[(u64, u32)],
        model: &ModelCap,
    ) -> Result<Vec<(u32, CacheKey)>, JobError> {
        let parts = neural_stage::split(runs, self.chunk_seconds * probe.fps.as_f64());
        let mut keyed = Vec::with_capacity(parts.len());
        let mut todo = Vec::new();
        for part in parts {
            let key = self.neural_key(id, part, probe.frames);
            let index = self.next_index;
            self.next_index += 1;
            keyed.push((index, key));
            let cached = self.cache.entries.get::<NeuralScores>(&key).unwrap_or(None);
            match cached.and_then(|s| ShardOutput::inline(&s).ok()) {
                Some(output) => to.done.push(self.cached_result(to.job, index, output)),
                None => todo.push((index, part)),
            }
        }
        let plans = plan_chunks_tapered(probe, self.chunk_seconds);
        let want: Vec<bool> = plans
            .iter()
            .map(|p| {
                todo.iter()
                    .any(|(_, part)| neural_stage::reads(&p.range, *part, probe.frames))
            })
            .collect();
        let written = write_chunks(path, probe, &plans, &want, &self.cache.blobs)
            .map_err(|e| JobError(e.to_string()))?;
        let mut chunks = Vec::new();
        for (plan, w) in plans.iter().zip(written) {
            let Some((id, bytes)) = w else { continue };
            self.chunks.push(self.cache.blobs.pin(&id));
            chunks.push(Chunk {
                range: plan.range,
                id,
                bytes,
            });
        }
        for (index, part) in todo {
            to.shards.push(neural_stage::spec(
                to.job,
                index,
                &chunks,
                part,
                probe.frames,
                model,
                probe.width,
                probe.height,
            ));
        }
        Ok(keyed)
    }

    /// The `neural` detector's stage: the network on every block of every file.
    pub(super) fn plan_neural_file(
        &mut self,
        to: &mut Planned<'_>,
        path: &Path,
        id: &ContentId,
        probe: &Probe,
        model: &ModelCap,
    ) -> Result<Vec<(u32, CacheKey)>, JobError> {
        let blocks = blocks_of(probe.frames);
        let mut runs = Vec::new();
        let mut first = 0;
        while first < blocks {
            let n = (blocks - first).min(u64::from(u32::MAX)) as u32;
            runs.push((first, n));
            first += u64::from(n);
        }
        self.plan_network(to, path, id, probe, &runs, model)
    }

    /// The `auto` cascade's network stage over the files whose scores left blocks undecided.
    pub(super) fn plan_auto_network(&mut self, job: JobId) -> Result<Plan, JobError> {
        let model = self
            .model
            .clone()
            .ok_or_else(|| JobError("the cascade lost its weights".into()))?;
        self.hold_model(&model)?;
        let (mut shards, mut done) = (Vec::new(), Vec::new());
        let mut to = Planned {
            job,
            shards: &mut shards,
            done: &mut done,
        };
        let (mut frames, mut of) = (0, 0);
        for i in 0..self.files.len() {
            let Some(runs) = self.files[i].triage.as_ref().map(|t| t.runs()) else {
                continue;
            };
            let (path, id) = (self.files[i].path.clone(), self.files[i].id);
            let (probe, _) =
                probe_cached(&self.cache, &path, &id).map_err(|e| JobError(e.to_string()))?;
            let keyed = self.plan_network(&mut to, &path, &id, &probe, &runs, &model)?;
            let f = &mut self.files[i];
            f.shards = keyed;
            frames += f.triage.as_ref().map_or(0, |t| t.frames(f.frames));
            of += f.frames;
        }
        self.network_stage = true;
        Ok(Plan::Shards(Stage {
            name: "neural".into(),
            shards,
            done,
            frames_total: frames,
            notes: vec![format!(
                "auto: the network decides {frames} of {of} frames ({:.1} %); the scores \
                 settle the rest",
                frames as f64 * 100.0 / of.max(1) as f64
            )],
            ..Default::default()
        }))
    }

    /// The lists once the network's predictions are in: every frame's for the `neural`
    /// detector, the undecided blocks' (beside the settled cuts) for `auto`.
    pub(super) fn finish_network(
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
        let full = matches!(self.options.detector, SceneDetector::Neural { .. });
        let keys: Vec<CacheKey> = self.files.iter().map(|f| self.list_key(&f.id)).collect();
        for (f, list_key) in self.files.iter_mut().zip(&keys) {
            if f.list.is_some() {
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
            let predictions = neural_stage::assemble(&parts, f.frames, full)
                .map_err(|e| JobError(format!("{}: {e}", f.path.display())))?;
            let (settled, scores) = f
                .triage
                .as_ref()
                .map_or((&[][..], &[][..]), |t| (&t.settled[..], &t.scores[..]));
            let cuts = decide(
                settled,
                scores,
                &predictions,
                threshold,
                self.options.min_scene_len,
            );
            let transitions = transitions(&predictions, &cuts);
            let list = super::list_of(f, cuts, transitions);
            keep_list(&self.cache, list_key, &list);
            f.list = Some(list);
        }
        let lists = self.files.iter().filter_map(|f| f.list.clone()).collect();
        Ok(self.done(lists))
    }
}

/// What the `auto` cascade makes of a file's stitched scores.
pub(super) enum Auto {
    /// The scores settle every frame (or no node holds the network: the content detector's).
    Cuts(Vec<u32>),
    /// The network must decide some blocks; the content detector's cuts, should it fail.
    Undecided(Triage, Vec<u32>),
}

pub(super) fn auto_cuts(
    deltas: &[Option<FrameDelta>],
    o: &SceneOptions,
    threshold: f32,
    network: bool,
) -> Auto {
    if !network {
        let p = ContentParams {
            threshold,
            min_scene_len: o.min_scene_len,
            weights: o.weights,
        };
        return Auto::Cuts(content_cuts(deltas, &p));
    }
    let scores: Vec<Option<f32>> = deltas
        .iter()
        .map(|d| d.as_ref().map(|d| content_score(d, &o.weights)))
        .collect();
    let t = triage(&scores, threshold);
    if t.blocks.is_empty() {
        return Auto::Cuts(decide(
            &t.settled,
            &[],
            &Predictions::default(),
            0.5,
            o.min_scene_len,
        ));
    }
    let p = ContentParams {
        threshold,
        min_scene_len: o.min_scene_len,
        weights: o.weights,
    };
    Auto::Undecided(t, content_cuts(deltas, &p))
}
