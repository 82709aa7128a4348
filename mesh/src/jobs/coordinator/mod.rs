//! The coordinator actor: one per job.
//!
//! On start it asks the [`JobDriver`] for a plan (on the blocking pool). Its shards become the
//! lots of an [`Auction`]; the bidders are this node's worker and every live peer in the
//! mesh (from the peer table: slots, memory). Each round awards lots to bidders with free
//! slots (earliest estimated finish; see [`crate::sched::auction`]); as shards finish the speeds are
//! corrected from what was observed and the rest is auctioned again, so faster boxes take
//! more. A shard on a peer runs through [`crate::remote`]. Results and progress go to the
//! job's [`JobHandle`]; a shard whose failure is retryable goes back up for auction (up to
//! [`MAX_RETRIES`] times), and a peer that was lost takes no further shards of this job. When
//! every shard is in, the driver assembles the result. The first non-retryable failure fails
//! the job, unless the driver takes the loss ([`JobDriver::shard_failed`]: a job of many files
//! fails that one file); then the stage ends without that shard. A driver with items (files)
//! has them copied into the status after every answer and every tick.
//!
//! Every start of a shard somewhere is a *run* (an award, or a speculative copy), kept in
//! `running` under its own id; a result is used only while its run is still there, so the
//! result of a run that was given up is dropped.
//!
//! - **Leases.** A run on a peer holds a lease of [`MeshLink::lease`] (default [`LEASE`]; see
//!   [`Coordinator::with_lease`]). The runner's progress heartbeats ([`Heartbeat`], every 2 s)
//!   renew it and move the shard's `frames_done`; a lease not renewed in time is lost like a
//!   closed connection: the run is given up, the shard put up again, the peer takes no more of
//!   the job. A heartbeat for a run that is no longer wanted is answered `false` (stop).
//! - **Speculation.** When no shard waits for an award and a bidder has a free slot, the shard
//!   in flight with the latest expected finish (from its progress rate) gets a copy on the idle
//!   bidder that would finish it first, if that is clearly sooner ([`crate::sched::tail`]);
//!   at most one copy per shard,
//!   never on the bidder already running it. The first result wins; the other run is
//!   cancelled (its token, or `CancelShard` to its peer), and its failure is nobody's fault.
//!
//! ```text
//!   JobBoard ─start─▶ Coordinator ─RunShard{cancel token}─▶ local Worker
//!                        │  ▲ ─run_on─▶ peer (remote/)   ◀─ CancelShard
//!                        │  └── Heartbeat (via Coordinators, from the ShardHost) ── lease
//!                        └─ tick (500 ms): expired leases, awards, speculative copies
//! ```
//!
//! In: [`Heartbeat`] (leases), the answers of its runs (`RunShard` on the local worker,
//! [`remote::run_on`](crate::remote::run_on) on peers). Out: `RunShard`; `CallForBids`,
//! `Prefetch` and `CancelShard` to peers; the job's status through its [`JobHandle`].
//!
//! - `run`: a run of a shard, its progress, where it runs.
//! - `bids`: the call for bids, the bidders, each round of awards, inputs sent ahead.
//! - `running`: starting and giving up runs; a result, a failure.
//! - `leases`: heartbeats, the tick that finds lost leases.
//! - `speculation`: copies of slow shards, estimates from progress.
//! - `table`: the rows of the shard table, a shard as a lot.
//!
//! Here: the actor, its plan and stages (`on_plan`, `start_stage`, `next_stage`), the
//! driver's finish and the job's failure.
//!
//! [`Heartbeat`]: crate::remote::Heartbeat

mod bids;
mod leases;
mod run;
mod running;
mod speculation;
mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use actix::prelude::*;
use libp2p::PeerId;
use rendermesh_protocol::{
    JobId, JobState, ShardResult, ShardRow, ShardSpec, ShardState, WorkStats,
};

use self::run::{Run, RunId, Target};
use self::table::{lot_of, row};
use crate::exec::{Finish, JobDriver, JobError, Plan, Stage, Worker};
use crate::jobs::handle::JobHandle;
use crate::remote::MeshLink;
use crate::sched::auction::{Auction, Bidder, Lot};

/// How long a peer has to answer a call for bids.
const BID_TIMEOUT: Duration = Duration::from_secs(5);
/// Shard specs per call-for-bids request (a request frame stays far below its limit).
const BID_BATCH: usize = 1000;
/// How often one shard is retried before the job fails.
pub const MAX_RETRIES: u32 = 2;
/// Assumed link speed to a peer for the transfer part of its bids (bytes/s).
const LINK_BYTES_PER_S: f64 = 100e6;
/// Starting speed of every bidder (work units per second per slot); observed runs correct it.
const START_SPEED: f64 = 10.0;
/// Default lease of a run on a peer: lost when no heartbeat renewed it for this long. Four
/// heartbeats (every 2 s): a frozen or cut-off peer's shard moves within 10 s, and a busy
/// peer's heartbeat, sent from its event loop rather than from the encode, may come late.
pub const LEASE: Duration = Duration::from_secs(8);
/// How often leases are checked and speculative copies considered.
const TICK: Duration = Duration::from_millis(500);
/// A run is judged by its progress only once it has run this long (seconds).
const SPECULATE_AFTER_S: f64 = 1.0;
/// A `CancelShard` to a peer not answered within this time is given up (the runner also learns
/// from its next heartbeat).
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Coordinates one job.
pub struct Coordinator {
    job: JobId,
    driver: Option<Box<dyn JobDriver>>,
    workers: Vec<(Addr<Worker>, usize)>,
    link: Option<MeshLink>,
    handle: JobHandle,
    results: BTreeMap<u32, ShardResult>,
    /// Shards of this stage that failed for good and whose loss the driver took.
    given_up: BTreeSet<u32>,
    expected: usize,
    failed: bool,
    /// Stopped because its node stops: what the job made so far stays for a resume.
    node_stopping: bool,
    targets: Vec<Target>,
    bidders: Vec<Bidder>,
    auction: Auction,
    lots: BTreeMap<u32, Lot>,
    specs: BTreeMap<u32, ShardSpec>,
    /// Runs in flight, by run id (a shard may have two: an award and its copy).
    running: BTreeMap<RunId, Run>,
    next_run: RunId,
    /// Shards that got a speculative copy (at most one each).
    copied: BTreeSet<u32>,
    /// The stage running now (0 = the first) and every shard index of the stages so far.
    stage: u32,
    indices: BTreeSet<u32>,
    /// Peers that lost a shard of this job: they take no more of its shards, in any stage.
    lost: BTreeSet<PeerId>,
    lease: Duration,
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
            handle,
            results: BTreeMap::new(),
            given_up: BTreeSet::new(),
            expected: 0,
            failed: false,
            node_stopping: false,
            targets: Vec::new(),
            bidders: Vec::new(),
            auction: Auction::default(),
            lots: BTreeMap::new(),
            specs: BTreeMap::new(),
            running: BTreeMap::new(),
            next_run: 0,
            copied: BTreeSet::new(),
            stage: 0,
            indices: BTreeSet::new(),
            lost: BTreeSet::new(),
            lease: link.as_ref().map_or(LEASE, |l| l.lease),
            link,
            clock: Instant::now(),
        }
    }

    /// Lose a run on a peer whose heartbeats stopped for `lease` (default: the link's).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    fn now(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
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
            Ok(Plan::Shards(stage)) => {
                self.refresh_items();
                self.start_stage(stage, ctx)
            }
        }
    }

    /// Copy the driver's items into the status when they changed.
    pub(super) fn refresh_items(&mut self) {
        if let Some(items) = self.driver.as_mut().and_then(|d| d.items()) {
            self.handle.update(|s| s.items = items);
        }
    }

    /// Put a stage's shards up for auction (its answered shards count as done).
    fn start_stage(&mut self, stage: Stage, ctx: &mut Context<Self>) {
        let Stage {
            name,
            shards,
            done,
            frames_total,
            stats,
            notes,
        } = stage;
        // indices are unique within the job: a driver that reuses one would mix stages
        let indices: Vec<u32> = shards
            .iter()
            .map(|s| s.index)
            .chain(done.iter().map(|r| r.index))
            .collect();
        let unique: BTreeSet<u32> = indices.iter().copied().collect();
        if unique.len() != indices.len() || unique.iter().any(|i| self.indices.contains(i)) {
            self.fail(
                format!("stage {name:?} reuses a shard index of this job (a bug in its job kind)"),
                ctx,
            );
            return;
        }
        self.indices.extend(unique);
        self.expected = shards.len() + done.len();
        let stage_no = self.stage;
        tracing::info!(job = %self.job, stage = %name, shards = self.expected, cached = done.len(), "planned");
        self.handle.update(|s| {
            s.notes.extend(notes);
            s.state = JobState::Running;
            s.stage = stage_no;
            s.stage_name = name;
            s.frames_total += frames_total;
            s.stats.add(&stats);
            s.shards.extend(
                shards
                    .iter()
                    .map(|sh| row(sh.index, ShardState::Pending, sh.cost.units, stage_no))
                    .chain(done.iter().map(|r| ShardRow {
                        peer: Some(r.peer.clone()),
                        ..row(r.index, ShardState::Cached, 0, stage_no)
                    })),
            );
            s.shards.sort_by_key(|r| r.index);
            s.stats.cache_hits += done.len() as u64;
        });
        for r in done {
            self.results.insert(r.index, r);
        }
        if !shards.is_empty() {
            let lots: Vec<Lot> = shards.iter().map(lot_of).collect();
            for l in &lots {
                self.lots.insert(l.shard, l.clone());
            }
            self.auction = Auction::new(lots);
            for sh in shards {
                self.specs.insert(sh.index, sh);
            }
            self.call_for_bids(ctx);
        }
        self.maybe_finish(ctx);
    }

    /// The stage ended: forget its lots and bids; the next stage calls for bids anew (its
    /// shards are of other classes), leaving out the peers that lost a shard.
    fn next_stage(&mut self, plan: Plan, ctx: &mut Context<Self>) {
        for run in std::mem::take(&mut self.running).into_values() {
            run.cancel.cancel();
        }
        self.stage += 1;
        self.targets.clear();
        self.bidders.clear();
        self.auction = Auction::default();
        self.lots.clear();
        self.specs.clear();
        self.copied.clear();
        self.results.clear();
        self.given_up.clear();
        self.expected = 0;
        self.on_plan(Ok(plan), ctx);
    }

    fn maybe_finish(&mut self, ctx: &mut Context<Self>) {
        if self.results.len() + self.given_up.len() < self.expected || self.driver.is_none() {
            return;
        }
        let Some(mut driver) = self.driver.take() else {
            return;
        };
        self.handle.update(|s| s.state = JobState::Finishing);
        let results: Vec<ShardResult> = std::mem::take(&mut self.results).into_values().collect();
        let span = tracing::info_span!("finish", job = %self.job, stage = self.stage);
        let fut = tokio::task::spawn_blocking(move || {
            let _span = span.entered();
            let finished = driver.finish(results);
            (driver, finished)
        });
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| {
            let (driver, res) = match res {
                Ok((driver, res)) => (Some(driver), res),
                Err(e) => (
                    None,
                    Err(JobError(format!("finishing the job crashed: {e}"))),
                ),
            };
            // the items as the stage (or job) ended
            act.driver = driver;
            act.refresh_items();
            let driver = act.driver.take();
            match res {
                Ok(Finish::Done(result, stats)) => {
                    tracing::info!(job = %act.job, "job done");
                    act.handle.complete(Ok(result), stats);
                    ctx.stop();
                }
                Ok(Finish::Next(plan)) => {
                    act.driver = driver;
                    tracing::info!(job = %act.job, stage = act.stage + 1, "next stage");
                    act.next_stage(plan, ctx);
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

/// Stop the job now (its node is stopping): it fails with the reason, its runs are cancelled.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct StopJob(pub String);

impl Handler<StopJob> for Coordinator {
    type Result = ();

    fn handle(&mut self, stop: StopJob, ctx: &mut Context<Self>) {
        // a user's cancel ended the handle first; otherwise the node is stopping
        self.node_stopping = self.handle.status().state != JobState::Cancelled;
        self.fail(stop.0, ctx);
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(link) = &self.link {
            link.coordinators
                .register(self.job, ctx.address().recipient());
        }
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
        let Some(mut driver) = self.driver.take() else {
            return;
        };
        let job = self.job;
        let span = tracing::info_span!("plan", %job);
        let fut = tokio::task::spawn_blocking(move || {
            let _span = span.entered();
            let plan = driver.plan(job);
            (driver, plan)
        });
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok((driver, plan)) => {
                act.driver = Some(driver);
                if act.handle.is_over() {
                    // cancelled while it planned
                    act.failed = true;
                    ctx.stop();
                    return;
                }
                act.on_plan(plan, ctx);
            }
            Err(e) => act.fail(format!("planning crashed: {e}"), ctx),
        }));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // runs still going are not wanted any more: local ones stop at their next frame,
        // peers learn it from the answer to their next heartbeat
        if let Some(link) = &self.link {
            link.coordinators.unregister(self.job);
        }
        for run in self.running.values() {
            run.cancel.cancel();
        }
        // cancelled or failed for good: nothing will resume it, so what it holds goes
        let state = self.handle.status().state;
        let abandoned =
            state == JobState::Cancelled || (state == JobState::Failed && !self.node_stopping);
        if abandoned {
            if let Some(mut driver) = self.driver.take() {
                tokio::task::spawn_blocking(move || driver.abandon());
            }
        }
    }
}
