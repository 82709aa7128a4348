//! The coordinator actor: one per job.
//!
//! On start it asks the [`JobDriver`] for a plan (on the blocking pool). Its shards become the
//! lots of an [`Auction`]; the bidders are this node's worker and every live peer in the
//! mesh (from the peer table: slots, memory). Each round awards lots to bidders with free
//! slots (earliest estimated finish; see [`crate::auction`]); as shards finish the speeds are
//! corrected from what was observed and the rest is auctioned again, so faster boxes take
//! more. A shard on a peer runs through [`crate::remote`]. Results and progress go to the
//! job's [`JobHandle`]; a shard whose failure is retryable goes back up for auction (up to
//! [`MAX_RETRIES`] times), and a peer that was lost takes no further shards of this job. When
//! every shard is in, the driver assembles the result. The first non-retryable failure fails
//! the job.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use libp2p::PeerId;
use rendermesh_protocol::{
    JobId, JobResult, JobState, ShardResult, ShardRow, ShardSpec, ShardState, WorkStats,
};

use crate::auction::{Auction, Bidder, Lot};
use crate::board::JobHandle;
use crate::executor::{JobDriver, JobError, Plan, ShardError};
use crate::remote::{self, MeshLink};
use crate::worker::{RunShard, ShardObserver, Worker};

/// How often one shard is retried before the job fails.
pub const MAX_RETRIES: u32 = 2;
/// Assumed link speed to a peer for the transfer part of its bids (bytes/s).
const LINK_BYTES_PER_S: f64 = 100e6;
/// Starting speed of every bidder (work units per second per slot); observed runs correct it.
const START_SPEED: f64 = 10.0;

/// Where a bidder runs shards.
#[derive(Clone)]
enum Target {
    Local(Addr<Worker>),
    Remote { peer: PeerId, name: String },
}

/// Coordinates one job.
pub struct Coordinator {
    job: JobId,
    driver: Option<Box<dyn JobDriver>>,
    workers: Vec<(Addr<Worker>, usize)>,
    link: Option<MeshLink>,
    handle: JobHandle,
    results: BTreeMap<u32, ShardResult>,
    expected: usize,
    failed: bool,
    targets: Vec<Target>,
    bidders: Vec<Bidder>,
    auction: Auction,
    lots: BTreeMap<u32, Lot>,
    specs: BTreeMap<u32, ShardSpec>,
    /// Shard → (bidder, estimated finish, started).
    running: BTreeMap<u32, (usize, f64, Instant)>,
    clock: Instant,
}

impl Coordinator {
    /// `workers`: this node's workers and their slots; `link`: the mesh, when there is one.
    pub fn new(
        job: JobId,
        driver: Box<dyn JobDriver>,
        workers: Vec<(Addr<Worker>, usize)>,
        link: Option<MeshLink>,
        handle: JobHandle,
    ) -> Self {
        Self {
            job,
            driver: Some(driver),
            workers,
            link,
            handle,
            results: BTreeMap::new(),
            expected: 0,
            failed: false,
            targets: Vec::new(),
            bidders: Vec::new(),
            auction: Auction::default(),
            lots: BTreeMap::new(),
            specs: BTreeMap::new(),
            running: BTreeMap::new(),
            clock: Instant::now(),
        }
    }

    fn now(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }

    /// This node's workers and the live peers, as bidders.
    fn gather_bidders(&mut self) {
        for (addr, slots) in &self.workers {
            self.bidders.push(Bidder {
                id: self.targets.len(),
                slots: *slots as u32,
                running: Vec::new(),
                speed: START_SPEED,
                free_mem: u64::MAX,
                bytes_per_s: 0.0,
            });
            self.targets.push(Target::Local(addr.clone()));
        }
        let Some(link) = &self.link else { return };
        for p in link.peers.rows() {
            let Ok(peer) = p.peer_id.parse::<PeerId>() else {
                continue;
            };
            if p.slots == 0 {
                continue;
            }
            self.bidders.push(Bidder {
                id: self.targets.len(),
                slots: p.slots,
                running: Vec::new(),
                speed: START_SPEED,
                free_mem: match p.shard_ram_bytes {
                    0 => p.caps.ram_available_bytes,
                    limit => limit.min(p.caps.ram_available_bytes),
                },
                bytes_per_s: LINK_BYTES_PER_S,
            });
            self.targets.push(Target::Remote {
                peer,
                name: p.name.clone(),
            });
        }
    }

    /// Award what should start now; fail the job when shards are left that nobody can take.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.failed {
            return;
        }
        let now = self.now();
        let awards = self.auction.round(now, &mut self.bidders);
        for a in awards {
            let Some(spec) = self.specs.get(&a.shard).cloned() else {
                continue;
            };
            self.running
                .insert(a.shard, (a.bidder, a.est_finish, Instant::now()));
            self.dispatch(spec, a.bidder, ctx);
        }
        if self.running.is_empty() && self.auction.pending() > 0 {
            let stuck = self.auction.unplaceable(&self.bidders);
            let what = if stuck.is_empty() {
                "no node is left to run them".to_string()
            } else {
                format!("no node meets their requirements (shards {stuck:?})")
            };
            self.fail(
                format!("{} shard(s) cannot run: {what}", self.auction.pending()),
                ctx,
            );
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
                if !shards.is_empty() {
                    self.gather_bidders();
                    let lots: Vec<Lot> = shards.iter().map(lot_of).collect();
                    for l in &lots {
                        self.lots.insert(l.shard, l.clone());
                    }
                    self.auction = Auction::new(lots);
                    for sh in shards {
                        self.specs.insert(sh.index, sh);
                    }
                    tracing::info!(job = %self.job, bidders = self.bidders.len(), "auctioning shards");
                    self.schedule(ctx);
                }
                self.maybe_finish(ctx);
            }
        }
    }

    fn dispatch(&mut self, shard: ShardSpec, bidder: usize, ctx: &mut Context<Self>) {
        let observer: Arc<dyn ShardObserver> = Arc::new(Observer(self.handle.clone()));
        match self.targets[bidder].clone() {
            Target::Local(worker) => {
                let fut = worker.send(RunShard {
                    shard: shard.clone(),
                    observer,
                });
                ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
                    let res = res.unwrap_or_else(|e| {
                        Err(ShardError::retryable(format!("worker gone: {e}")))
                    });
                    act.on_result(shard, bidder, res, ctx)
                }));
            }
            Target::Remote { peer, name } => {
                let Some(link) = self.link.clone() else {
                    return;
                };
                observer.started(shard.index, &name);
                tracing::info!(job = %self.job, shard = shard.index, peer = %name, "shard awarded to a peer");
                let spec = shard.clone();
                let fut = async move { remote::run_on(&link, peer, spec).await };
                ctx.spawn(
                    fut.into_actor(self)
                        .map(move |res, act, ctx| act.on_result(shard, bidder, res, ctx)),
                );
            }
        }
    }

    /// A bidder finished (or lost) a shard: free its slot, learn its speed.
    fn release(&mut self, shard: u32, ok: bool) -> Option<usize> {
        let (bidder, est, started) = self.running.remove(&shard)?;
        let b = &mut self.bidders[bidder];
        if let Some(i) = b.running.iter().position(|&e| e == est) {
            b.running.remove(i);
        }
        if ok {
            if let Some(l) = self.lots.get(&shard) {
                b.observe(l.work, started.elapsed().as_secs_f64());
            }
        }
        Some(bidder)
    }

    fn on_result(
        &mut self,
        shard: ShardSpec,
        bidder: usize,
        res: Result<ShardResult, ShardError>,
        ctx: &mut Context<Self>,
    ) {
        if self.failed {
            return;
        }
        self.release(shard.index, res.is_ok());
        match res {
            Ok(r) => {
                if self.results.contains_key(&r.index) {
                    tracing::debug!(shard = r.index, "dropping duplicate result");
                    return;
                }
                // remembered before it shows as done, so nobody sees "done" that a crash loses
                if let Some(d) = self.driver.as_mut() {
                    d.shard_done(&r);
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
                self.schedule(ctx);
                self.maybe_finish(ctx);
            }
            Err(e) => {
                if e.retryable {
                    if let Target::Remote { name, .. } = &self.targets[bidder] {
                        // a peer that lost a shard takes no more of this job's shards
                        tracing::warn!(job = %self.job, shard = shard.index, peer = %name, error = %e.message, "peer lost a shard; putting it up again");
                        self.bidders[bidder].slots = 0;
                    }
                }
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
                        if let Some(l) = self.lots.get(&shard.index) {
                            self.auction.requeue(l.clone());
                        }
                        self.schedule(ctx);
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

/// A shard as an auction lot: work in frames × megapixels.
fn lot_of(s: &ShardSpec) -> Lot {
    let mpix = (s.cost.width as f64 * s.cost.height as f64 / 1e6).max(0.01);
    Lot {
        shard: s.index,
        work: (s.cost.frames.max(1) as f64 * mpix).max(1e-3),
        input_bytes: s.cost.bytes,
        min_mem: s.cost.ram_estimate(),
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
