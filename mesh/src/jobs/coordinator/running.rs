//! Runs in flight: starting one on the local worker (`RunShard`, with an [`Observer`] of
//! its progress) or on a peer ([`remote::run_on`]); giving one up (its token, `CancelShard`
//! to its peer); and what its answer does: the first result of a shard wins, a failure puts
//! the shard up again (up to [`MAX_RETRIES`] times) or fails the job.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use actix::prelude::*;
use rendermesh_protocol::{Request, ShardResult, ShardSpec, ShardState};

use super::run::{Run, RunId, RunProgress, Target};
use super::table::{add_note, show_progress};
use super::{Coordinator, CANCEL_TIMEOUT, MAX_RETRIES, SPECULATE_AFTER_S};
use crate::exec::{CancelToken, RunShard, ShardError, ShardObserver};
use crate::jobs::handle::JobHandle;
use crate::remote;

impl Coordinator {
    /// Start a run of `shard` on `bidder` (its slot is already taken, `est` entered).
    pub(super) fn start_run(
        &mut self,
        shard: ShardSpec,
        bidder: usize,
        est: f64,
        copy: bool,
        ctx: &mut Context<Self>,
    ) {
        let id = self.next_run;
        self.next_run += 1;
        let index = shard.index;
        let progress = Arc::new(RunProgress::new());
        let cancel = CancelToken::default();
        let name = Arc::new(OnceLock::new());
        let task = match self.targets[bidder].clone() {
            Target::Local(worker) => {
                let observer = Arc::new(Observer {
                    handle: self.handle.clone(),
                    progress: progress.clone(),
                    cancel: cancel.clone(),
                    name: name.clone(),
                    copy,
                });
                let fut = worker.send(RunShard {
                    shard,
                    observer,
                    cancel: cancel.clone(),
                });
                ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
                    let res = res.unwrap_or_else(|e| {
                        Err(ShardError::retryable(format!("worker gone: {e}")))
                    });
                    act.on_result(id, res, ctx)
                }))
            }
            Target::Remote {
                peer,
                name: peer_name,
            } => {
                let Some(link) = self.link.clone() else {
                    return;
                };
                let _ = name.set(peer_name.clone());
                if copy {
                    tracing::info!(job = %self.job, shard = index, peer = %peer_name, "speculative copy sent to a peer");
                    self.handle.update(|s| {
                        if let Some(row) = s.shards.iter_mut().find(|x| x.index == index) {
                            add_note(row, format!("copy on {peer_name}"));
                        }
                    });
                } else {
                    tracing::info!(job = %self.job, shard = index, peer = %peer_name, "shard awarded to a peer");
                    self.handle.update(|s| {
                        if let Some(row) = s.shards.iter_mut().find(|x| x.index == index) {
                            row.state = ShardState::Running;
                            row.peer = Some(peer_name.clone());
                        }
                    });
                }
                let fut = async move { remote::run_on(&link, peer, shard).await };
                ctx.spawn(
                    fut.into_actor(self)
                        .map(move |res, act, ctx| act.on_result(id, res, ctx)),
                )
            }
        };
        self.running.insert(
            id,
            Run {
                shard: index,
                bidder,
                est,
                progress,
                cancel,
                name,
                renewed: Instant::now(),
                copy,
                task: Some(task),
            },
        );
    }

    /// Give a run's slot back; learn its bidder's speed from a finished run (or the progress
    /// of a stopped one).
    pub(super) fn free_slot(&mut self, run: &Run, finished: bool) {
        let b = &mut self.bidders[run.bidder];
        if let Some(i) = b.running.iter().position(|&e| e == run.est) {
            b.running.remove(i);
        }
        let Some(l) = self.lots.get(&run.shard) else {
            return;
        };
        let seconds = run.progress.since.elapsed().as_secs_f64();
        if finished {
            b.observe(l.work, seconds);
        } else if seconds >= SPECULATE_AFTER_S {
            let frames = self.specs.get(&run.shard).map_or(0, |s| s.cost.units);
            let done = run.progress.frames.load(Ordering::Relaxed).min(frames);
            if done > 0 {
                b.observe(l.work * done as f64 / frames as f64, seconds);
            }
        }
    }

    /// Give up run `id`: free its slot, stop it (its token; `CancelShard` to its peer) and
    /// drop whatever it answers later.
    pub(super) fn stop_run(&mut self, id: RunId, ctx: &mut Context<Self>) -> Option<Run> {
        let mut run = self.running.remove(&id)?;
        self.free_slot(&run, false);
        run.cancel.cancel();
        if let Some(task) = run.task.take() {
            ctx.cancel_future(task);
        }
        if let (Target::Remote { peer, .. }, Some(link)) =
            (&self.targets[run.bidder], self.link.clone())
        {
            let (peer, job, index) = (*peer, self.job, run.shard);
            // not tied to this actor: the job may end (and the actor stop) right after the
            // winning result, and the cancel must still go out; it ends within CANCEL_TIMEOUT
            let tasks = link.tasks.clone();
            tasks.spawn("cancel", async move {
                let cancel = link.net.request(peer, Request::CancelShard { job, index });
                match tokio::time::timeout(CANCEL_TIMEOUT, cancel).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(%job, shard = index, %peer, error = %e, "cancel failed")
                    }
                    Err(_) => tracing::debug!(%job, shard = index, %peer, "cancel unanswered"),
                }
            });
        }
        Some(run)
    }

    pub(super) fn on_result(
        &mut self,
        id: RunId,
        res: Result<ShardResult, ShardError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(run) = self.running.remove(&id) else {
            tracing::debug!(job = %self.job, run = id, "dropping the answer of a run given up");
            return;
        };
        self.free_slot(&run, res.is_ok());
        if self.failed {
            return;
        }
        match res {
            Ok(r) => self.shard_done(run, r, ctx),
            Err(e) => self.run_failed(run, e, ctx),
        }
    }

    pub(super) fn shard_done(&mut self, run: Run, r: ShardResult, ctx: &mut Context<Self>) {
        if self.results.contains_key(&run.shard) {
            tracing::debug!(shard = run.shard, "dropping duplicate result");
            return;
        }
        // the first result wins: the other copy, if any, is stopped
        let others: Vec<RunId> = self
            .running
            .iter()
            .filter(|(_, x)| x.shard == run.shard)
            .map(|(&k, _)| k)
            .collect();
        let mut stopped = Vec::new();
        for k in others {
            if let Some(o) = self.stop_run(k, ctx) {
                tracing::info!(job = %self.job, shard = run.shard, winner = %r.peer, cancelled = %o.name(), "the other run of the shard is cancelled");
                stopped.push(o.name());
            }
        }
        let note = match (run.copy, stopped.is_empty()) {
            (true, false) => Some(format!("copy won; run on {} cancelled", stopped.join(", "))),
            (true, true) => Some("copy won".to_string()),
            (false, false) => Some(format!("copy on {} cancelled", stopped.join(", "))),
            (false, true) => None,
        };
        // remembered before it shows as done, so nobody sees "done" that a crash loses
        if let Some(d) = self.driver.as_mut() {
            d.shard_done(&r);
        }
        self.refresh_items();
        let end_ms = (self.now() * 1000.0) as u64;
        let start_ms = run
            .progress
            .since
            .saturating_duration_since(self.clock)
            .as_millis() as u64;
        self.handle.update(|s| {
            s.stats.add(&r.stats);
            if let Some(row) = s.shards.iter_mut().find(|x| x.index == r.index) {
                row.state = ShardState::Done;
                row.peer = Some(r.peer.clone());
                row.frames_done = row.frames;
                row.millis = r.stats.wall_ms;
                row.start_ms = Some(start_ms);
                row.end_ms = Some(end_ms);
                if let Some(n) = note {
                    add_note(row, n);
                }
            }
            s.frames_done = s.shards.iter().map(|x| x.frames_done).sum();
        });
        self.results.insert(r.index, r);
        self.schedule(ctx);
        self.maybe_finish(ctx);
    }

    pub(super) fn run_failed(&mut self, run: Run, e: ShardError, ctx: &mut Context<Self>) {
        let shard = run.shard;
        // a run stopped by its runner while we still wanted it is worth another try
        let retryable = e.is_retryable() || e.is_cancelled();
        if retryable {
            if let Target::Remote { name, peer } = &self.targets[run.bidder] {
                // a peer that lost a shard takes no more of this job's shards
                tracing::warn!(job = %self.job, shard, peer = %name, kind = ?e.kind, error = %e.message, "peer lost a shard; putting it up again");
                self.bidders[run.bidder].slots = 0;
                self.lost.insert(*peer);
            }
        }
        if let Some(other) = self.running.values().find(|x| x.shard == shard) {
            // the other copy goes on; this failure costs nothing
            tracing::info!(job = %self.job, shard, failed = %run.name(), still_running = %other.name(), error = %e, "one run of the shard failed; its other run goes on");
            let (failed, still) = (run.name(), other.name());
            self.handle.update(|s| {
                if let Some(row) = s.shards.iter_mut().find(|x| x.index == shard) {
                    row.state = ShardState::Running;
                    row.peer = Some(still);
                    add_note(row, format!("run on {failed} failed"));
                }
            });
            return;
        }
        let retries = self.handle.update(|s| {
            s.shards.iter_mut().find(|x| x.index == shard).map(|row| {
                row.retries += 1;
                row.frames_done = 0;
                row.state = ShardState::Pending;
                row.retries
            })
        });
        match retries {
            Some(n) if retryable && n <= MAX_RETRIES => {
                tracing::warn!(job = %self.job, shard, error = %e, "retrying shard");
                if let Some(l) = self.lots.get(&shard) {
                    self.auction.requeue(l.clone());
                }
                self.schedule(ctx);
            }
            _ => {
                let taken = self
                    .driver
                    .as_mut()
                    .is_some_and(|d| d.shard_failed(shard, &e));
                self.handle.update(|s| {
                    if let Some(row) = s.shards.iter_mut().find(|x| x.index == shard) {
                        row.state = ShardState::Failed;
                        if taken {
                            add_note(row, e.message.clone());
                        }
                    }
                });
                if !taken {
                    self.fail(e.message, ctx);
                    return;
                }
                tracing::warn!(job = %self.job, shard, error = %e, "shard failed; the job goes on without it");
                self.given_up.insert(shard);
                self.refresh_items();
                self.schedule(ctx);
                self.maybe_finish(ctx);
            }
        }
    }
}

/// Reports of a local run: into its progress and the shard table (unless it was given up).
struct Observer {
    handle: JobHandle,
    progress: Arc<RunProgress>,
    cancel: CancelToken,
    name: Arc<OnceLock<String>>,
    copy: bool,
}

impl ShardObserver for Observer {
    fn started(&self, index: u32, peer: &str) {
        let _ = self.name.set(peer.to_string());
        if self.cancel.is_cancelled() {
            return;
        }
        self.handle.update(|s| {
            if let Some(row) = s.shards.iter_mut().find(|x| x.index == index) {
                if self.copy {
                    add_note(row, format!("copy on {peer}"));
                } else {
                    row.state = ShardState::Running;
                    row.peer = Some(peer.to_string());
                }
            }
        });
    }

    fn progress(&self, index: u32, frames_done: u64) {
        self.progress.set(frames_done);
        if self.cancel.is_cancelled() {
            return;
        }
        self.handle.update(|s| show_progress(s, index, frames_done));
    }
}
