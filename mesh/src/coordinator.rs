//! The coordinator actor: one per job.
//!
//! On start it asks the [`JobDriver`] for a plan (on the blocking pool), hands each shard to a
//! worker, records results and progress in the job's [`JobHandle`], retries a shard whose
//! failure is retryable (up to [`MAX_RETRIES`] times), and when every shard is in, asks the
//! driver to assemble the result. The first non-retryable failure fails the job.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use rendermesh_protocol::{
    JobId, JobResult, JobState, ShardResult, ShardRow, ShardSpec, ShardState, WorkStats,
};

use crate::board::JobHandle;
use crate::executor::{JobDriver, JobError, Plan, ShardError};
use crate::worker::{RunShard, ShardObserver, Worker};

/// How often one shard is retried before the job fails.
pub const MAX_RETRIES: u32 = 2;

/// Coordinates one job.
pub struct Coordinator {
    job: JobId,
    driver: Option<Box<dyn JobDriver>>,
    workers: Vec<Addr<Worker>>,
    handle: JobHandle,
    results: BTreeMap<u32, ShardResult>,
    expected: usize,
    next_worker: usize,
    failed: bool,
}

impl Coordinator {
    pub fn new(
        job: JobId,
        driver: Box<dyn JobDriver>,
        workers: Vec<Addr<Worker>>,
        handle: JobHandle,
    ) -> Self {
        Self {
            job,
            driver: Some(driver),
            workers,
            handle,
            results: BTreeMap::new(),
            expected: 0,
            next_worker: 0,
            failed: false,
        }
    }

    fn on_plan(&mut self, plan: Result<Plan, JobError>, ctx: &mut Context<Self>) {
        match plan {
            Err(e) => self.fail(e.0, ctx),
            Ok(Plan::Cached { result, stats }) => {
                tracing::info!(job = %self.job, "answered from cache");
                self.handle.update(|s| s.from_cache = true);
                self.handle.complete(Ok(result), stats);
                ctx.stop();
            }
            Ok(Plan::Shards {
                shards,
                done,
                frames_total,
                stats,
                notes,
            }) => {
                self.expected = shards.len() + done.len();
                tracing::info!(job = %self.job, shards = self.expected, cached = done.len(), "planned");
                self.handle.update(|s| s.notes.extend(notes));
                self.handle.update(|s| {
                    s.state = JobState::Running;
                    s.frames_total = frames_total;
                    s.stats.add(&stats);
                    s.shards = shards
                        .iter()
                        .map(|sh| row(sh.index, ShardState::Pending, sh.cost.frames))
                        .chain(done.iter().map(|r| ShardRow {
                            peer: Some(r.peer.clone()),
                            ..row(r.index, ShardState::Cached, 0)
                        }))
                        .collect();
                    s.shards.sort_by_key(|r| r.index);
                    s.stats.cache_hits += done.len() as u64;
                });
                for r in done {
                    self.results.insert(r.index, r);
                }
                if self.workers.is_empty() && !shards.is_empty() {
                    return self.fail("no worker to run shards".into(), ctx);
                }
                for shard in shards {
                    self.dispatch(shard, ctx);
                }
                self.maybe_finish(ctx);
            }
        }
    }

    fn dispatch(&mut self, shard: ShardSpec, ctx: &mut Context<Self>) {
        let worker = self.workers[self.next_worker % self.workers.len()].clone();
        self.next_worker += 1;
        let observer: Arc<dyn ShardObserver> = Arc::new(Observer(self.handle.clone()));
        let fut = worker.send(RunShard {
            shard: shard.clone(),
            observer,
        });
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let res =
                res.unwrap_or_else(|e| Err(ShardError::retryable(format!("worker gone: {e}"))));
            act.on_result(shard, res, ctx)
        }));
    }

    fn on_result(
        &mut self,
        shard: ShardSpec,
        res: Result<ShardResult, ShardError>,
        ctx: &mut Context<Self>,
    ) {
        if self.failed {
            return;
        }
        match res {
            Ok(r) => {
                if self.results.contains_key(&r.index) {
                    tracing::debug!(shard = r.index, "dropping duplicate result");
                    return;
                }
                self.handle.update(|s| {
                    s.stats.add(&r.stats);
                    if let Some(row) = s.shards.iter_mut().find(|x| x.index == r.index) {
                        row.state = ShardState::Done;
                        row.frames_done = row.frames;
                        row.millis = r.stats.wall_ms;
                    }
                    s.frames_done = s.shards.iter().map(|x| x.frames_done).sum();
                });
                self.results.insert(r.index, r);
                self.maybe_finish(ctx);
            }
            Err(e) => {
                let retries = self.handle.update(|s| {
                    s.shards
                        .iter_mut()
                        .find(|x| x.index == shard.index)
                        .map(|row| {
                            row.retries += 1;
                            row.frames_done = 0;
                            row.state = ShardState::Pending;
                            row.retries
                        })
                });
                match retries {
                    Some(n) if e.retryable && n <= MAX_RETRIES => {
                        tracing::warn!(job = %self.job, shard = shard.index, error = %e, "retrying shard");
                        self.dispatch(shard, ctx);
                    }
                    _ => {
                        self.handle.update(|s| {
                            if let Some(row) = s.shards.iter_mut().find(|x| x.index == shard.index)
                            {
                                row.state = ShardState::Failed;
                            }
                        });
                        self.fail(e.message, ctx);
                    }
                }
            }
        }
    }

    fn maybe_finish(&mut self, ctx: &mut Context<Self>) {
        if self.results.len() < self.expected || self.driver.is_none() {
            return;
        }
        let Some(mut driver) = self.driver.take() else {
            return;
        };
        self.handle.update(|s| s.state = JobState::Finishing);
        let results: Vec<ShardResult> = std::mem::take(&mut self.results).into_values().collect();
        let fut = tokio::task::spawn_blocking(move || driver.finish(results));
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| {
            let res: Result<(JobResult, WorkStats), JobError> =
                res.unwrap_or_else(|e| Err(JobError(format!("finishing the job crashed: {e}"))));
            match res {
                Ok((result, stats)) => {
                    tracing::info!(job = %act.job, "job done");
                    act.handle.complete(Ok(result), stats);
                    ctx.stop();
                }
                Err(e) => act.fail(e.0, ctx),
            }
        }));
    }

    fn fail(&mut self, error: String, ctx: &mut Context<Self>) {
        if self.failed {
            return;
        }
        self.failed = true;
        tracing::warn!(job = %self.job, %error, "job failed");
        self.handle.complete(Err(error), WorkStats::default());
        ctx.stop();
    }
}

fn row(index: u32, state: ShardState, frames: u64) -> ShardRow {
    ShardRow {
        index,
        state,
        peer: None,
        frames,
        frames_done: 0,
        millis: 0,
        retries: 0,
    }
}

struct Observer(JobHandle);

impl ShardObserver for Observer {
    fn started(&self, index: u32, peer: &str) {
        self.0.update(|s| {
            if let Some(row) = s.shards.iter_mut().find(|x| x.index == index) {
                row.state = ShardState::Running;
                row.peer = Some(peer.to_string());
            }
        });
    }

    fn progress(&self, index: u32, frames_done: u64) {
        self.0.update(|s| {
            if let Some(row) = s.shards.iter_mut().find(|x| x.index == index) {
                row.frames_done = frames_done.min(row.frames);
            }
            s.frames_done = s.shards.iter().map(|x| x.frames_done).sum();
        });
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(mut driver) = self.driver.take() else {
            return;
        };
        let job = self.job;
        let fut = tokio::task::spawn_blocking(move || {
            let plan = driver.plan(job);
            (driver, plan)
        });
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok((driver, plan)) => {
                act.driver = Some(driver);
                act.on_plan(plan, ctx);
            }
            Err(e) => act.fail(format!("planning crashed: {e}"), ctx),
        }));
    }
}
